"""Export a trained generator as one safetensors file that ``translate`` (and anyone) can load.

    python -m cut_translation.export --checkpoint runs/cut/catdog-64/best.pt --output cut-catdog-64.safetensors

The file holds the generator's weights (fp16 by default: half the size, e.g. about 16 MB for
ngf 64 with 6 residual blocks; ``--no-fp16`` keeps fp32) and, in the safetensors metadata
(string to string), everything needed to rebuild it:

- ``format``: ``cut_translation.generator/1``;
- ``architecture``: JSON ``{"in_channels", "out_channels", "ngf", "n_blocks", "nce_layers"}``,
  the arguments of :class:`cut_translation.networks.ResnetGenerator`;
- ``settings``: the full :class:`cut_translation.model.CUTSettings` as JSON;
- ``run``: the run's data description (``data``, ``size``, ``holdout``, ``seed``) as JSON;
- ``dtype``: ``float16`` or ``float32``;
- ``check`` (with ``--check-images N``): JSON ``{"images", "content", "change"}`` measured with the
  weights as stored, on the first N held-out A images of the run (:func:`held_out_check`), so a
  copy of the file can be verified by measuring them again.

:func:`cut_translation.translate.load_generator` reads it back (fp16 weights are converted to
fp32) and ``python -m cut_translation.translate --checkpoint FILE.safetensors`` translates with it.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from core_ssl.checkpoint import export_weights
from core_ssl.cli import UsageError, run_command
from core_ssl.config import parse_config
from cut_translation.model import CUTSettings

__all__ = ["GENERATOR_FORMAT", "generator_metadata", "export_generator", "stored_tensors", "held_out_check", "ExportConfig", "main"]

GENERATOR_FORMAT = "cut_translation.generator/1"
_DTYPES = {torch.float16: "float16", torch.float32: "float32"}


def generator_metadata(settings: CUTSettings, run: dict | None = None,
                       dtype: torch.dtype = torch.float32, check: dict | None = None) -> dict[str, str]:
    """The safetensors metadata of an exported generator (see the module docstring)."""
    architecture = {"in_channels": settings.in_channels, "out_channels": settings.in_channels, "ngf": settings.ngf,
                    "n_blocks": settings.n_blocks, "nce_layers": list(settings.nce_layers)}
    return {"format": GENERATOR_FORMAT, "architecture": json.dumps(architecture),
            "settings": json.dumps(settings.to_dict()), "run": json.dumps(run or {}), "dtype": _DTYPES[dtype],
            **({} if check is None else {"check": json.dumps(check)})}


def export_generator(generator: nn.Module | dict[str, torch.Tensor], settings: CUTSettings, path: str | Path,
                     run: dict | None = None, dtype: torch.dtype = torch.float32, check: dict | None = None) -> Path:
    """Write ``generator`` (a module or its state dict) to ``path`` as safetensors, its floating
    tensors cast to ``dtype`` (float32 or float16), with :func:`generator_metadata`."""
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be torch.float16 or torch.float32, got {dtype}")
    state = generator.state_dict() if isinstance(generator, nn.Module) else generator
    return export_weights(stored_tensors(state, dtype), path, metadata=generator_metadata(settings, run, dtype, check))


def stored_tensors(state: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """``state`` as an exported file holds it: floating tensors cast to ``dtype``, others as they are."""
    return {name: t.to(dtype) if t.is_floating_point() else t for name, t in state.items()}


def held_out_check(model, run: dict, images: int = 16) -> dict:
    """What ``model`` (a :class:`cut_translation.translate.LoadedGenerator`) does to the first
    ``images`` held-out A images of ``run`` (its ``data``, ``size``, ``holdout`` and ``seed``,
    read again with :func:`cut_translation.data.load_unpaired`), on uint8 outputs::

        content = mean_i edge_correlation(x_i, G(x_i))      (cut_translation.content)
        change  = mean over pixels of |G(x) - x| / 255

    Raises:
        ValueError: ``run`` lacks one of those keys (the checkpoint predates them).
    """
    from cut_translation.content import edge_correlation
    from cut_translation.data import load_unpaired, to_model_range, to_uint8

    missing = [key for key in ("data", "size", "holdout", "seed") if key not in run]
    if missing:
        raise ValueError(f"the checkpoint's run description lacks {missing}: its held-out images cannot be "
                         "found again; export without --check-images")
    data = load_unpaired(run["data"], size=run["size"], holdout=run["holdout"], seed=run["seed"])
    inputs = data.test_a[:images]
    outputs = to_uint8(model.translate(to_model_range(inputs)))
    change = (outputs.float() - inputs.float()).abs().mean().item() / 255.0
    return {"images": len(inputs), "content": float(edge_correlation(inputs, outputs).mean()), "change": change}


@dataclass
class ExportConfig:
    """Write a run's generator as a safetensors file with its architecture in the metadata."""

    checkpoint: Path | None = field(default=None, metadata={"help": "a run's best.pt, checkpoint.pt or generator*.safetensors"})
    output: Path | None = field(default=None, metadata={"help": "the .safetensors file to write; None = <checkpoint stem>_generator.safetensors beside it"})
    fp16: bool = field(default=True, metadata={"help": "store the weights in fp16 (--no-fp16: fp32)"})
    check_images: int = field(default=0, metadata={"help": "also store the content and change of the stored weights on this many held-out A images (0: none)", "min": 0})


def main(argv: list[str] | None = None) -> Path:
    from cut_translation.translate import load_generator

    cfg = parse_config(ExportConfig, argv)
    if cfg.checkpoint is None:
        raise UsageError("--checkpoint is required", "give a run's best.pt, checkpoint.pt or generator*.safetensors")
    model, run = load_generator(cfg.checkpoint)
    output = Path(cfg.output) if cfg.output is not None else \
        Path(cfg.checkpoint).with_name(f"{Path(cfg.checkpoint).stem}_generator.safetensors")
    if output.suffix != ".safetensors":
        raise UsageError(f"--output {output} must end in .safetensors (translate recognises the file by it)", "give a name ending in .safetensors")
    dtype = torch.float16 if cfg.fp16 else torch.float32
    check = None
    if cfg.check_images > 0:  # measured with the weights as they will be stored (fp16 rounding included)
        stored = copy.deepcopy(model)  # load_state_dict copies the rounded values into its fp32 parameters
        stored.generator.load_state_dict(stored_tensors(model.generator.state_dict(), dtype))
        check = held_out_check(stored, run, cfg.check_images)
        print(f"held-out check on {check['images']} A images: content {check['content']:.4f}, "
              f"change {check['change']:.4f}")
    path = export_generator(model.generator, model.settings, output, run, dtype, check)
    parameters = sum(p.numel() for p in model.generator.parameters())
    print(f"wrote {path}: {parameters / 1e6:.2f} M parameters, {path.stat().st_size / 2**20:.1f} MiB "
          f"({'fp16' if cfg.fp16 else 'fp32'})")
    return path


if __name__ == "__main__":
    run_command(main)
