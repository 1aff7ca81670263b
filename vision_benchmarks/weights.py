"""Encoder weights files of vision runs: export a run's backbone; open one for evaluation.

    python -m vision_benchmarks.weights --run runs/simclr --out docs/weights/vision/simclr.safetensors
    python -m vision_benchmarks.evaluate --weights docs/weights/vision/simclr.safetensors --protocol linear

The export writes :meth:`Method.backbone` of the run (the encoder; SimCLRv2's encoder and the
first block of its head) as a :mod:`core_ssl.weights` file: fp16 by default (a width-32
ConvNet is under 1 MB), the method's input normalisation and the architecture in the metadata,
``info`` = method, dataset, image size, encoder, width, the run's resolved config and its
summary. It then loads the file back as a user would and stores the weighted kNN top-1 of
those loaded weights (k = 200, t = 0.1) on fixed subsets of the run's dataset
(``--check-bank`` training images as the labelled bank, ``--check-queries`` test images,
drawn with ``--check-seed``) as ``knn_check``: :func:`core_ssl.weights.verify_knn_check`
measures it again after loading. Before anything is written, the rebuilt network must give
the run's backbone features to float rounding on a batch of images.

Loading a weights file back for the evaluation protocols lives in
:mod:`vision_benchmarks.pretrained` (``open_weights``, ``load_source``).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from core_ssl.cli import run_command
from core_ssl.config import config_to_dict, parse_config, validate_config
from core_ssl.device import resolve_device
from core_ssl.weights import (EncoderNetwork, check_images, knn_check_top1, load_encoder_weights,
                              save_encoder_weights)

from vision_benchmarks.methods import Method
from vision_benchmarks.datasets import load_run_split
from vision_benchmarks.pretrained import load_pretrained


@dataclass
class ExportConfig:
    """Export a pre-training run's backbone as a small encoder weights file (safetensors) that
    evaluate --weights and core_ssl.weights.load_encoder_weights load without the run."""

    run: Path = field(default=Path("runs/pretrain"), metadata={"help": "run folder written by vision_benchmarks.pretrain"})
    out: Path | None = field(default=None, metadata={"help": "weights file to write (default: <run>/<method>.safetensors)"})
    fp16: bool = field(default=True, metadata={"help": "store the weights in fp16 (--no-fp16: fp32, twice the size)"})
    check_bank: int = field(default=2000, metadata={"help": "kNN check: labelled bank of this many training images", "min": 1})
    check_queries: int = field(default=1000, metadata={"help": "kNN check: this many test images classified", "min": 1})
    check_seed: int = field(default=0, metadata={"help": "kNN check: seed of the two fixed image subsets", "min": 0})
    data_root: Path | None = field(default=None, metadata={"help": "folder holding the datasets (default: the run's, then $SSL_DATA_DIR or ../shared/data)"})
    device: str = field(default="cpu", metadata={"help": "cpu, cuda or auto (the check's features)"})


def encoder_network(method: Method) -> EncoderNetwork:
    """:meth:`Method.backbone` of ``method`` as a :class:`core_ssl.weights.EncoderNetwork` with
    the same weights: the encoder, the head blocks its feature network keeps (SimCLRv2), and
    the method's input normalisation."""
    cfg = method.cfg
    kwargs: dict[str, Any] = {"width": cfg.width}
    if cfg.encoder != "convnet":
        kwargs["cifar_stem"] = cfg.cifar_stem
    features = method.feature_network()
    if features is method.encoder:
        head = nn.Sequential()
    elif isinstance(features, nn.Sequential) and len(features) == 2 and features[0] is method.encoder:
        head = features[1]
    else:
        raise ValueError(f"{cfg.method}'s feature network is neither its encoder nor the encoder followed by "
                         "head blocks; it cannot be stored as an encoder weights file")
    architecture = {"encoder": cfg.encoder, "encoder_kwargs": kwargs, "head": EncoderNetwork.head_blocks(head)}
    network = EncoderNetwork(architecture, method.input_normalization)
    network.encoder.load_state_dict(method.encoder.state_dict())
    network.head.load_state_dict(head.state_dict())
    return network


@torch.no_grad()
def _check_same_features(network: nn.Module, backbone: nn.Module, images: torch.Tensor) -> None:
    """The rebuilt network must give the backbone's features (eval mode, fp32)."""
    modes = network.training, backbone.training
    network.eval(), backbone.eval()
    try:
        ours, theirs = network(images), backbone(images)
    finally:
        network.train(modes[0]), backbone.train(modes[1])
    if ours.shape != theirs.shape or not torch.allclose(ours, theirs, atol=1e-4, rtol=1e-4):
        raise RuntimeError("the exported network does not reproduce the run's backbone features; "
                           "this is a bug in vision_benchmarks.weights.encoder_network")


def export_run(ecfg: ExportConfig) -> dict[str, Any]:
    """Write the run's backbone as an encoder weights file with its kNN check (see the module
    docstring); returns ``{"path", "megabytes", "dtype", "knn_check"}``."""
    validate_config(ecfg)  # also when called with a config built in code
    method, cfg = load_pretrained(ecfg.run, torch.device("cpu"), ecfg.data_root)
    network = encoder_network(method)
    train = load_run_split(cfg.dataset, "train", root=cfg.data_root)
    test = load_run_split(cfg.dataset, "test", root=cfg.data_root)
    _check_same_features(network, method.backbone(), train.images[:16])
    out = ecfg.out or ecfg.run / f"{cfg.method}.safetensors"
    summary_path = ecfg.run / "summary.json"
    info = {"method": cfg.method, "dataset": cfg.dataset, "image_size": cfg.image_size, "encoder": cfg.encoder,
            "width": cfg.width, "input_normalization": method.input_normalization,
            "config": {k: v for k, v in config_to_dict(cfg).items() if k not in ("out", "data_root", "resume")},
            "summary": json.loads(summary_path.read_text()) if summary_path.is_file() else None}
    dtype = torch.float16 if ecfg.fp16 else torch.float32
    save_encoder_weights(network, out, info, dtype=dtype)
    stored = load_encoder_weights(out)  # measure what a user loads: the rounded weights
    bank = check_images(len(train), ecfg.check_bank, ecfg.check_seed)
    queries = check_images(len(test), ecfg.check_queries, ecfg.check_seed + 1)
    device = resolve_device(ecfg.device)
    top1 = knn_check_top1(stored.network.to(device), train.images[bank], train.labels[bank], test.images[queries],
                          test.labels[queries], train.num_classes, device=device)
    check = {"dataset": cfg.dataset, "bank": {"split": "train", "indices": bank},
             "queries": {"split": "test", "indices": queries}, "k": 200, "temperature": 0.1, "top1": top1}
    save_encoder_weights(network, out, info, knn_check=check, dtype=dtype)
    result = {"path": str(out), "megabytes": round(out.stat().st_size / 2**20, 3),
              "dtype": "float16" if ecfg.fp16 else "float32", "knn_check": {k: v for k, v in check.items()
                                                                            if k not in ("bank", "queries")}}
    print(f"{cfg.method}: wrote {out} ({result['megabytes']} MB, {result['dtype']}); kNN top-1 {top1:.4f} on "
          f"{len(queries)} {cfg.dataset} test images against {len(bank)} training images")
    return result


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    return export_run(parse_config(ExportConfig, argv))


if __name__ == "__main__":
    run_command(main)
