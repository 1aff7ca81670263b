"""Evaluation of a translation model on held-out images, and the command that reports it.

:class:`TranslationEvaluator` holds the feature network (the FID InceptionV3) and, computed once
(and cached in a file when asked), the features of the held-out A and B images and of a sample
of training images of both domains. ``evaluate(model)`` translates the held-out A images, rounds
them to uint8 (as real images are) and reports, each with a 95% bootstrap interval over the
held-out images (the same images and resamples for every model):

- ``fid``, ``kid``: against held-out B (:mod:`cut_translation.intervals`);
- ``fid_gain``, ``kid_gain``: the paired improvement over the identity baseline (the
  untranslated A images), ``FID(identity) - FID(translated)``: > 0 means closer to B;
- ``domain_share``: the share of translations a logistic regression fitted on *training*
  features of both domains takes for domain B (:mod:`cut_translation.domain_classifier`);
- ``content``: the edge correlation of each input and its translation (:mod:`cut_translation.content`).

:meth:`TranslationEvaluator.baseline` gives the same numbers for the identity mapping (the floor
of ``domain_share``, the ceiling of ``content``) plus the other ends of both scales:
``domain_share_real_b`` (real held-out B images: the classifier's ceiling), ``content_unrelated``
(each A image against an unrelated B image: the floor) and the classifier's held-out balanced
accuracy. :meth:`TranslationEvaluator.domain_b_drift` translates the held-out B images and
compares them with themselves: 0 for a generator that leaves domain B untouched, so it measures
what the generator's own artefacts add to any FID it is scored on (a scale, not a strict bound).

Command line::

    python -m cut_translation.evaluate --checkpoint runs/cut/best.pt            # held-out split of its data
    python -m cut_translation.evaluate --fake translated/ --real dogs/          # two image folders

It prints one JSON object (and writes it to ``--output`` when given).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from core_ssl.checkpoint import atomic_write, load_checkpoint, save_checkpoint
from core_ssl.cli import run_command
from core_ssl.config import parse_config
from core_ssl.data import IMAGE_SUFFIXES, resize_images
from core_ssl.device import resolve_device
from cut_translation.content import content_interval
from cut_translation.data import UnpairedData, load_unpaired, to_model_range, to_uint8
from cut_translation.domain_classifier import DomainClassifier
from cut_translation.fid import InceptionFeatures
from cut_translation.intervals import FID_INTERVAL_NOTE, distance_intervals, flatten
from cut_translation.translate import load_generator, read_images

__all__ = ["TranslationEvaluator", "EvaluateConfig", "evaluate", "main"]

FeatureFn = Callable[[torch.Tensor], torch.Tensor]


class TranslationEvaluator:
    """FID / KID (with paired gains over the identity), domain-B share and content, each with a
    bootstrap interval, of translated held-out A images (see the module docstring).

    Args:
        data: the unpaired data; ``test_a`` / ``test_b`` are scored, ``train_a`` / ``train_b``
            fit the domain classifier.
        device: where Inception runs.
        max_images: use at most this many held-out images; both domains always use the same
            number n = min(|test A|, |test B|, max_images), because FID's bias depends on n.
        batch_size: images per feature-network batch.
        classifier_images: training images per domain (a seeded random sample, resized to
            ``data.size``) for the domain classifier; 0: no classifier.
        bootstrap_reps: bootstrap replicates of every interval.
        seed: seeds the classifier sample, its validation split and the bootstrap.
        features: uint8 (N, C, H, W) images -> (N, D) features; None: the FID InceptionV3.
        cache: a file keeping the real images' features between runs of the same evaluation
            (reused only when ``cache_key`` and the counts match).
    """

    def __init__(self, data: UnpairedData, device: str | torch.device = "cpu", max_images: int | None = None,
                 batch_size: int = 32, classifier_images: int = 400, bootstrap_reps: int = 1000, seed: int = 0,
                 features: FeatureFn | None = None, cache: str | Path | None = None,
                 cache_key: dict | None = None) -> None:
        n = min(len(data.test_a), len(data.test_b), max_images if max_images is not None else len(data.test_a))
        if n < 2:
            raise ValueError(
                f"the evaluation needs at least 2 held-out images per domain, have {len(data.test_a)} A and "
                f"{len(data.test_b)} B (max_images={max_images}); raise --holdout (or add testA/ and testB/), "
                "or pass --eval-every 0"
            )
        self.test_a, self.test_b = data.test_a[:n], data.test_b[:n]
        self.reps, self.seed, self.batch_size = bootstrap_reps, seed, batch_size
        self._identity_fids: dict = {}  # FID(identity, B) per bootstrap resample, shared by every evaluation
        if features is None:
            inception = InceptionFeatures(device)
            features = lambda images: inception.extract(images, batch_size)  # noqa: E731
        self.features = features
        real = self._real_features(data, classifier_images, seed, cache, cache_key)
        self.features_a, self.features_b = real["test_a"], real["test_b"]
        self.classifier = (DomainClassifier(real["train_a"], real["train_b"], seed=seed)
                           if classifier_images > 0 else None)

    def _real_features(self, data: UnpairedData, classifier_images: int, seed: int, cache: str | Path | None,
                       cache_key: dict | None) -> dict[str, torch.Tensor]:
        key = json.dumps({"key": cache_key or {}, "images": len(self.test_a), "classifier_images": classifier_images,
                          "seed": seed}, sort_keys=True)
        if cache is not None and Path(cache).is_file():
            stored = load_checkpoint(cache)
            if stored.get("key") == key:
                return stored["features"]
        generator = torch.Generator().manual_seed(seed)
        real = {"test_a": self.features(self.test_a), "test_b": self.features(self.test_b)}
        for name, images in (("train_a", data.train_a), ("train_b", data.train_b)):
            pick = torch.randperm(len(images), generator=generator)[:classifier_images]
            real[name] = (self.features(resize_images(images[pick], data.size)) if classifier_images > 0
                          else torch.empty(0, real["test_a"].shape[1], dtype=torch.float64))
        if cache is not None:
            save_checkpoint({"key": key, "features": real}, cache)
        return real

    def _translate(self, model, images: torch.Tensor) -> torch.Tensor:
        return to_uint8(model.translate(to_model_range(images), batch_size=self.batch_size))

    def _score(self, images: torch.Tensor, features: torch.Tensor, against_identity: bool) -> dict[str, float]:
        reference = self.features_a if against_identity else None
        metrics = flatten(distance_intervals(features, self.features_b, reference, self.reps, seed=self.seed,
                                             reference_cache=self._identity_fids))
        if self.classifier is not None:
            metrics.update(flatten({"domain_share": self.classifier.share_b(features, self.reps, seed=self.seed)}))
        metrics.update(flatten({"content": content_interval(self.test_a, images, self.reps, seed=self.seed)}))
        return {**metrics, "images": len(images)}

    def baseline(self) -> dict[str, float]:
        """The identity mapping's numbers (untranslated held-out A against held-out B; its gains
        are 0), and the other ends of the scales: ``domain_share_real_b``, ``content_unrelated``,
        ``classifier_accuracy``."""
        metrics = self._score(self.test_a, self.features_a, against_identity=False)
        for key in ("fid_gain", "kid_gain"):  # the identity's gain over itself is exactly 0
            metrics.update({key: 0.0, f"{key}_low": 0.0, f"{key}_high": 0.0})
        if self.classifier is not None:
            metrics.update(flatten({"domain_share_real_b": self.classifier.share_b(self.features_b, self.reps,
                                                                                   seed=self.seed)}))
            metrics["classifier_accuracy"] = self.classifier.balanced_accuracy(self.features_a, self.features_b)
        metrics.update(flatten({"content_unrelated": content_interval(self.test_a, self.test_b, self.reps,
                                                                      seed=self.seed)}))
        return metrics

    def evaluate(self, model) -> dict[str, float]:
        """All measures of ``model.translate(held-out A)``, rounded to uint8."""
        translated = self._translate(model, self.test_a)
        return self._score(translated, self.features(translated), against_identity=True)

    def domain_b_drift(self, model) -> dict[str, float]:
        """FID / KID (with intervals) of ``model.translate(held-out B)`` against held-out B itself."""
        translated = self._translate(model, self.test_b)
        features = self.features(translated)
        return {**flatten(distance_intervals(features, self.features_b, reps=self.reps, seed=self.seed)),
                "images": len(translated)}


@dataclass
class EvaluateConfig:
    """FID / KID, domain-B share and content of a CUT / FastCUT generator on held-out images (or FID / KID of two folders)."""

    checkpoint: Path | None = field(default=None, metadata={"help": "checkpoint.pt / best.pt / .safetensors of a run"})
    data: str | None = field(default=None, metadata={"help": "unpaired data; None = the one the run trained on"})
    size: int | None = field(default=None, metadata={"help": "image size; None = the run's", "min": 32})
    holdout: int | None = field(default=None, metadata={"help": "held-out images per domain; None = the run's", "min": 0})
    seed: int | None = field(default=None, metadata={"help": "seed of the held-out draw; None = the run's", "min": 0})
    max_images: int | None = field(default=None, metadata={"help": "use at most this many held-out images", "min": 2})
    fake: Path | None = field(default=None, metadata={"help": "folder of generated images (with --real)"})
    real: Path | None = field(default=None, metadata={"help": "folder of real target-domain images (with --fake)"})
    classifier_images: int = field(default=400, metadata={"help": "training images per domain for the domain classifier (0: none)", "min": 0})
    bootstrap_reps: int = field(default=1000, metadata={"help": "bootstrap replicates per interval", "min": 1})
    batch_size: int = field(default=32, metadata={"help": "images per Inception batch", "min": 1})
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
        fake_images, real_images = _folder_images(Path(cfg.fake)), _folder_images(Path(cfg.real))
        n = min(len(fake_images), len(real_images), cfg.max_images or len(fake_images))
        inception = InceptionFeatures(device)
        fake = inception.extract(fake_images[:n], cfg.batch_size)
        real = inception.extract(real_images[:n], cfg.batch_size)
        return {"fake": str(cfg.fake), "real": str(cfg.real), "images": n,
                **flatten(distance_intervals(fake, real, reps=cfg.bootstrap_reps)), "fid_interval": FID_INTERVAL_NOTE}
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
    evaluator = TranslationEvaluator(data, device, cfg.max_images, cfg.batch_size, cfg.classifier_images,
                                     cfg.bootstrap_reps)
    return {"checkpoint": str(cfg.checkpoint), "data": str(source), "size": data.size,
            "translated": evaluator.evaluate(model), "identity_baseline": evaluator.baseline(),
            "domain_b_drift": evaluator.domain_b_drift(model), "fid_interval": FID_INTERVAL_NOTE}


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(EvaluateConfig, argv)
    result = evaluate(cfg)
    text = json.dumps(result, indent=2)
    print(text)
    if cfg.output is not None:
        atomic_write(Path(cfg.output), lambda f: f.write((text + "\n").encode()))
    return result


if __name__ == "__main__":
    run_command(main)
