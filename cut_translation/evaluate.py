"""FID / KID of a translation model on held-out images, and the command that reports them.

:class:`TranslationEvaluator` holds the Inception network and the features of the held-out
domain-B images (computed once); ``evaluate(model)`` translates the held-out domain-A images
and compares them with domain B. :meth:`TranslationEvaluator.baseline` gives the same numbers
for the untranslated domain-A images: the "identity" baseline a translation must beat.
:meth:`TranslationEvaluator.domain_b_drift` translates the held-out B images and compares them
with themselves: 0 for a generator that leaves domain B untouched, so it measures what the
generator's own artefacts add to any FID it is scored on (not a strict bound, a scale for it).

Command line::

    python -m cut_translation.evaluate --checkpoint runs/cut/best.pt            # held-out split of its data
    python -m cut_translation.evaluate --fake translated/ --real dogs/          # two image folders

It prints one JSON object (and writes it to ``--output`` when given).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from core_ssl.checkpoint import CheckpointError, atomic_write
from core_ssl.config import parse_config
from core_ssl.data import IMAGE_SUFFIXES
from core_ssl.device import resolve_device
from cut_translation.data import UnpairedData, load_unpaired, to_model_range
from cut_translation.fid import InceptionFeatures, fid_kid
from cut_translation.translate import load_generator, read_images

__all__ = ["TranslationEvaluator", "EvaluateConfig", "main"]


class TranslationEvaluator:
    """FID / KID between translated held-out A images and held-out B images.

    Args:
        data: the unpaired data whose ``test_a`` / ``test_b`` are used.
        device: where Inception runs.
        max_images: use at most this many images of each domain (None: all).
        kid_subset_size: images per KID subset (100 random subsets; capped by the number of images).
    """

    def __init__(self, data: UnpairedData, device: str | torch.device = "cpu", max_images: int | None = None,
                 kid_subset_size: int = 100, batch_size: int = 32) -> None:
        limit = slice(None) if max_images is None else slice(0, max_images)
        self.test_a, self.test_b = data.test_a[limit], data.test_b[limit]
        if len(self.test_a) < 2 or len(self.test_b) < 2:
            raise ValueError(
                f"FID / KID need at least 2 held-out images per domain, have {len(self.test_a)} A and "
                f"{len(self.test_b)} B; raise --holdout (or add testA/ and testB/), or pass --eval-every 0"
            )
        self.batch_size, self.kid_subset_size = batch_size, kid_subset_size
        self.inception = InceptionFeatures(device)
        self.features_b = self.inception.extract(self.test_b, batch_size)

    def _compare(self, images: torch.Tensor) -> dict[str, float]:
        features = self.inception.extract(images, self.batch_size)
        return {**fid_kid(features, self.features_b, kid_subset_size=self.kid_subset_size), "images": len(images)}

    def baseline(self) -> dict[str, float]:
        """FID / KID of the untranslated held-out A images against held-out B."""
        return self._compare(self.test_a)

    def evaluate(self, model) -> dict[str, float]:
        """FID / KID of ``model.translate(held-out A)`` against held-out B."""
        translated = model.translate(to_model_range(self.test_a), batch_size=self.batch_size)
        return self._compare(translated)

    def domain_b_drift(self, model) -> dict[str, float]:
        """FID / KID of ``model.translate(held-out B)`` against held-out B itself."""
        translated = model.translate(to_model_range(self.test_b), batch_size=self.batch_size)
        return self._compare(translated)


@dataclass
class EvaluateConfig:
    """FID and KID of a CUT / FastCUT generator on held-out images, or of two image folders."""

    checkpoint: Path | None = field(default=None, metadata={"help": "checkpoint.pt / best.pt / .safetensors of a run"})
    data: str | None = field(default=None, metadata={"help": "unpaired data; None = the one the run trained on"})
    size: int | None = field(default=None, metadata={"help": "image size; None = the run's"})
    holdout: int | None = field(default=None, metadata={"help": "held-out images per domain; None = the run's"})
    seed: int | None = field(default=None, metadata={"help": "seed of the held-out draw; None = the run's"})
    max_images: int | None = field(default=None, metadata={"help": "use at most this many held-out images"})
    fake: Path | None = field(default=None, metadata={"help": "folder of generated images (with --real)"})
    real: Path | None = field(default=None, metadata={"help": "folder of real target-domain images (with --fake)"})
    kid_subset_size: int = field(default=100, metadata={"help": "images per KID subset (100 subsets)"})
    batch_size: int = field(default=32, metadata={"help": "images per Inception batch"})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda | cuda:N"})
    output: Path | None = field(default=None, metadata={"help": "also write the JSON result here"})


def _folder_images(folder: Path) -> torch.Tensor:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder of images")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(files) < 2:
        raise ValueError(f"{folder} holds {len(files)} image(s); FID / KID need at least 2")
    images = read_images(files, channels=3)
    return torch.stack([torch.nn.functional.interpolate(img[None].float(), size=(299, 299), mode="bilinear",
                                                        align_corners=False, antialias=True)[0]
                        for img in images]).round().clamp(0, 255).to(torch.uint8)


def evaluate(cfg: EvaluateConfig) -> dict:
    """Run the evaluation ``cfg`` describes and return the result dict."""
    device = resolve_device(cfg.device)
    if cfg.fake is not None or cfg.real is not None:
        if cfg.fake is None or cfg.real is None:
            raise ValueError("give both --fake and --real folders, or --checkpoint")
        inception = InceptionFeatures(device)
        fake = inception.extract(_folder_images(Path(cfg.fake)), cfg.batch_size)
        real = inception.extract(_folder_images(Path(cfg.real)), cfg.batch_size)
        return {"fake": str(cfg.fake), "real": str(cfg.real), "fake_images": len(fake), "real_images": len(real),
                **fid_kid(fake, real, kid_subset_size=cfg.kid_subset_size)}
    if cfg.checkpoint is None:
        raise ValueError("nothing to evaluate: pass --checkpoint (a run's best.pt / checkpoint.pt), or --fake and --real")
    model, run_data = load_generator(cfg.checkpoint, device)
    source = cfg.data or run_data.get("data")
    if source is None:
        raise ValueError(f"{cfg.checkpoint} does not say which data it was trained on: pass --data")
    data = load_unpaired(source, size=cfg.size or run_data.get("size", 256),
                         holdout=cfg.holdout if cfg.holdout is not None else run_data.get("holdout", 200),
                         channels=model.settings.in_channels,
                         seed=cfg.seed if cfg.seed is not None else run_data.get("seed", 0))
    evaluator = TranslationEvaluator(data, device, cfg.max_images, cfg.kid_subset_size, cfg.batch_size)
    return {"checkpoint": str(cfg.checkpoint), "data": str(source), "size": data.size,
            "translated": evaluator.evaluate(model), "identity_baseline": evaluator.baseline(),
            "domain_b_drift": evaluator.domain_b_drift(model)}


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(EvaluateConfig, argv)
    result = evaluate(cfg)
    text = json.dumps(result, indent=2)
    print(text)
    if cfg.output is not None:
        atomic_write(Path(cfg.output), lambda f: f.write((text + "\n").encode()))
    return result


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, ValueError, CheckpointError) as err:
        sys.exit(f"error: {err}")
