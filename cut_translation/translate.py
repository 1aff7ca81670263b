"""Translate one image or a folder of images with a trained generator; domain B is not needed.

    python -m cut_translation.translate --checkpoint runs/cut/best.pt --input cat.jpg --output out/
    python -m cut_translation.translate --checkpoint runs/cut/generator_best.safetensors --input cats/ --output out/
    python -m cut_translation.translate --checkpoint cut-catdog-64.safetensors --input cats/ --output out/  # exported, fp16

Each input is read as grey or colour to match the model, optionally resized to ``--size``, and
otherwise kept at its own size: sides that are not multiples of 4 are reflect-padded up to one
and cropped back after translation. Outputs are PNGs named like the inputs (sub-folders kept);
inputs that would share a name (``x.jpg`` and ``x.png``) keep their suffix (``x.jpg.png``,
``x.png.png``). An ``--output`` that is the input folder, or that would replace an input
file, is refused. Unreadable images are skipped and named at the end (the loaders do the same);
16-bit images are scaled to 8 bits, never clipped.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from core_ssl.checkpoint import CheckpointError, load_checkpoint, load_state, load_weights, read_safetensors_metadata
from core_ssl.cli import UsageError, run_command
from core_ssl.config import parse_config
from core_ssl.data import IMAGE_SUFFIXES, read_image_file, resize_images
from core_ssl.device import resolve_device
from core_ssl.logger import progress
from cut_translation.data import to_model_range, to_uint8
from cut_translation.model import CUTSettings, translate_batches
from cut_translation.networks import ResnetGenerator

__all__ = ["LoadedGenerator", "load_generator", "read_images", "output_paths", "translate_files", "TranslateConfig",
           "main"]
_ARCHITECTURE_KEYS = ("in_channels", "ngf", "n_blocks", "nce_layers")


@dataclass
class LoadedGenerator:
    """A trained generator with its settings; ``translate(x)`` maps [-1, 1] images to domain B."""

    generator: ResnetGenerator
    settings: CUTSettings

    def translate(self, images: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
        return translate_batches(self.generator, images, batch_size, self.settings.bf16)


def _read_safetensors(path: Path) -> tuple[dict, dict, dict[str, torch.Tensor]]:
    """Settings, run description and fp32 weights of a generator exported as safetensors
    (:mod:`cut_translation.export`, or the ``generator*.safetensors`` files training writes)."""
    weights = load_weights(path)
    metadata = read_safetensors_metadata(path)
    if "settings" in metadata:
        settings = json.loads(metadata["settings"])
    elif "architecture" in metadata:  # only what rebuilding the generator needs; the rest is default
        architecture = json.loads(metadata["architecture"])
        missing = [key for key in _ARCHITECTURE_KEYS if key not in architecture]
        if missing:
            raise CheckpointError(f"{path} is not a CUT generator: its architecture metadata has no {', '.join(missing)} "
                                  "(an encoder of vision_benchmarks?); give a run's generator*.safetensors, best.pt or "
                                  "checkpoint.pt, or a file written by cut_translation.export")
        settings = CUTSettings(in_channels=architecture["in_channels"], ngf=architecture["ngf"],
                               n_blocks=architecture["n_blocks"],
                               nce_layers=tuple(architecture["nce_layers"])).to_dict()
    else:
        raise ValueError(f"{path} has no 'settings' or 'architecture' metadata: it was not written by "
                         "cut_translation.train or cut_translation.export, so the generator cannot be rebuilt")
    weights = {name: t.float() if t.is_floating_point() else t for name, t in weights.items()}
    return settings, json.loads(metadata.get("run", "{}")), weights


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> tuple[LoadedGenerator, dict]:
    """The generator saved in a run's ``checkpoint.pt`` or ``best.pt``, or in a safetensors file
    (``generator*.safetensors`` written by training, or :func:`cut_translation.export.export_generator`'s
    output, fp16 or fp32), rebuilt from the settings stored with it.

    Returns it (fp32) with the run's data description (``{"data", "size", "holdout", "seed"}``,
    empty when unknown).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--checkpoint {path} does not exist: give a run's best.pt, checkpoint.pt or "
                                "a generator .safetensors file")
    if path.suffix == ".safetensors":
        settings, run, generator_state = _read_safetensors(path)
    else:
        state = load_checkpoint(path)
        if "model" in state:  # a full training checkpoint
            state = {**state["model"], "run": state.get("run", {})}
        if "settings" not in state or "generator" not in state:
            raise ValueError(f"{path} is not a cut_translation checkpoint (no 'settings' / 'generator' entries)")
        settings, run, generator_state = state["settings"], state.get("run", {}), state["generator"]
    settings = CUTSettings.from_dict(settings)
    generator = ResnetGenerator(settings.in_channels, settings.in_channels, settings.ngf, settings.n_blocks,
                                settings.nce_layers)
    load_state(generator, generator_state, path)
    return LoadedGenerator(generator.to(device).eval(), settings), dict(run or {})


def read_images(files: Sequence[Path], channels: int) -> list[torch.Tensor]:
    """Decode image files to uint8 (C, H, W) tensors with 1 (grey) or 3 (colour) channels
    (:func:`core_ssl.data.read_image_file`: 16-bit samples scaled, not clipped).

    Raises:
        ValueError: naming the first file that cannot be read.
    """
    return [read_image_file(file, channels) for file in files]


def _pad_to_multiple(x: torch.Tensor, multiple: int = 4) -> tuple[torch.Tensor, tuple[int, int]]:
    height, width = x.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    if pad_h or pad_w:
        mode = "reflect" if pad_h < height and pad_w < width else "replicate"
        x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
    return x, (height, width)


def list_inputs(source: Path) -> tuple[list[Path], Path]:
    """The image files to translate and the folder their output names are relative to."""
    if source.is_file():
        return [source], source.parent
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                       and not any(part.startswith(".") for part in p.relative_to(source).parts))
        if not files:
            raise ValueError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {source}")
        return files, source
    raise FileNotFoundError(f"--input {source} does not exist: give an image file or a folder of images")


def output_paths(files: Sequence[Path], root: Path, output: Path) -> list[Path]:
    """``output / <path relative to root>.png`` for each file, one distinct path per file: inputs
    that would share one (``x.jpg`` and ``x.png`` in one folder) keep their suffix (``x.jpg.png``).

    Raises:
        UsageError: ``output`` is the folder of the inputs, or a path would replace an input file.
    """
    relative = [file.relative_to(root) for file in files]
    stems = Counter(rel.with_suffix("") for rel in relative)
    targets = [output / (rel.with_suffix(".png") if stems[rel.with_suffix("")] == 1 else rel.with_name(rel.name + ".png"))
               for rel in relative]
    seen: Counter[Path] = Counter()
    for i, target in enumerate(targets):  # a clash left over (an input named x.jpg.png beside x.jpg): number it
        seen[target] += 1
        if seen[target] > 1:
            targets[i] = target.with_name(f"{target.stem}-{seen[target]}.png")
    inputs = {file.resolve() for file in files}
    if output.resolve() == root.resolve():
        raise UsageError(f"--output {output} is the folder of the input images: the translations would replace or "
                         "mix with them", "give another --output folder")
    replaced = [target for target in targets if target.resolve() in inputs]
    if replaced:
        raise UsageError(f"--output {output} would replace the input image {replaced[0]}", "give another --output folder")
    return targets


def translate_files(model: LoadedGenerator, files: Sequence[Path], root: Path, output: Path,
                    size: int | None = None, batch_size: int = 8) -> list[Path]:
    """Translate ``files`` and write them to :func:`output_paths`; returns the paths written.
    An image that cannot be read is skipped and named on stderr at the end; when none can be,
    a ``ValueError`` names the first."""
    targets = output_paths(files, root, output)
    output.mkdir(parents=True, exist_ok=True)
    written, skipped = [], []
    channels = model.settings.in_channels
    bar = progress(total=len(files), desc="translate", unit="img")
    for start in range(0, len(files), batch_size):
        for file, target in zip(files[start:start + batch_size], targets[start:start + batch_size]):
            bar.update()
            try:
                image = read_image_file(file, channels)
            except ValueError as err:
                skipped.append(str(err))
                continue
            if size is not None:
                image = resize_images(image[None], size)[0]
            padded, (height, width) = _pad_to_multiple(to_model_range(image[None]))
            translated = model.translate(padded, batch_size=1)[..., :height, :width]
            target.parent.mkdir(parents=True, exist_ok=True)
            array = to_uint8(translated[0]).permute(1, 2, 0).cpu().numpy()
            Image.fromarray(array[:, :, 0] if channels == 1 else array).save(target)
            written.append(target)
    bar.close()
    if skipped and not written:
        raise ValueError(f"no image could be translated: {skipped[0]}" + (f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else ""))
    if skipped:
        listed = "; ".join(skipped[:5]) + (f"; and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        print(f"skipped {len(skipped)} of {len(files)} image(s) that cannot be read: {listed}", file=sys.stderr)
    return written


@dataclass
class TranslateConfig:
    """Translate an image or a folder of images from domain A to domain B with a trained generator."""

    checkpoint: Path | None = field(default=None, metadata={"help": "a run's best.pt, checkpoint.pt, or a generator .safetensors (training's or cut_translation.export's)"})
    input: Path | None = field(default=None, metadata={"help": "an image file or a folder of images"})
    output: Path = field(default=Path("translated"), metadata={"help": "folder for the translated PNGs", "nonempty": True})
    size: int | None = field(default=None, metadata={"help": "resize inputs to size x size first; None = keep their size", "min": 4})
    batch_size: int = field(default=8, metadata={"help": "images decoded at a time", "min": 1})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda | cuda:N"})


def main(argv: list[str] | None = None) -> list[Path]:
    cfg = parse_config(TranslateConfig, argv)
    if cfg.checkpoint is None or cfg.input is None:
        raise UsageError("--checkpoint and --input are required", "see --help")
    device = resolve_device(cfg.device)
    if Path(cfg.output).exists() and not Path(cfg.output).is_dir():
        raise UsageError(f"--output {cfg.output} is a file, not a folder", "give a folder for the translated images")
    files, root = list_inputs(Path(cfg.input))
    output_paths(files, root, Path(cfg.output))  # refused before the model is loaded
    model, _ = load_generator(cfg.checkpoint, device)
    written = translate_files(model, files, root, Path(cfg.output), cfg.size, cfg.batch_size)
    print(f"wrote {len(written)} image(s) to {cfg.output}")
    return written


if __name__ == "__main__":
    run_command(main)
