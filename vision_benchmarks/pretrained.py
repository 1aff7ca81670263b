"""One home for loading pre-trained encoders: a run folder's method, or an encoder weights file.

- :func:`load_pretrained`: the method of a ``vision_benchmarks.pretrain`` run folder with the
  weights of its checkpoint (``checkpoint.pt``, or ``last.pt`` of older runs);
- :func:`open_weights`: an encoder weights file (``python -m vision_benchmarks.weights``) as a
  :class:`PretrainedBackbone` with the training config stored in it;
- :func:`load_source`: either, by what the path is.

The evaluation protocols, the robustness study, the ablations and the weights export all load
through here; this module imports none of them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core_ssl import checkpoint
from core_ssl.config import load_config
from core_ssl.run import CHECKPOINT_FILE, find_checkpoint
from core_ssl.weights import load_encoder_weights

from vision_benchmarks.config import PretrainConfig
from vision_benchmarks.datasets import load_run_split
from vision_benchmarks.methods import Method, build_method


def load_pretrained(run: Path, device: torch.device, data_root: Path | None = None) -> tuple[Method, PretrainConfig]:
    """The method of a run folder with the weights of its checkpoint (``checkpoint.pt``, or ``last.pt`` of older runs)."""
    cfg = load_config(PretrainConfig, run)
    if data_root is not None:
        cfg.data_root = data_root
    state = checkpoint.load_checkpoint(find_checkpoint(run) or run / CHECKPOINT_FILE, map_location="cpu")
    bank_rows = state["method"].get("bank.bank")  # PIRL's memory bank has one row per training image
    num_train = bank_rows.shape[0] if bank_rows is not None else 1
    num_classes = len(load_run_split(cfg.dataset, "test", root=cfg.data_root).classes)
    method = build_method(cfg, num_classes, num_train)
    method.load_state_dict(state["method"])
    return method.to(device), cfg


class PretrainedBackbone:
    """What the evaluation protocols read from a pre-trained source, for a weights file: the
    network (``backbone()``, with the input normalisation built in) and its feature size."""

    def __init__(self, network: nn.Module, backbone_dim: int) -> None:
        self.network = network
        self.backbone_dim = backbone_dim

    def backbone(self) -> nn.Module:
        return self.network


def config_from_info(info: dict[str, Any]) -> PretrainConfig:
    """The training config stored in a weights file's ``info`` (fields this version does not
    know are dropped; a file without one gets the defaults with its method, dataset, encoder,
    width and image size)."""
    known = {f.name for f in dataclasses.fields(PretrainConfig)}
    values = dict(info.get("config") or {})
    for name in ("method", "dataset", "encoder", "width", "image_size"):
        if name in info:
            values.setdefault(name, info[name])
    return dataclasses.replace(PretrainConfig(), **{k: v for k, v in values.items() if k in known})


def open_weights(path: str | Path, device: torch.device,
                 data_root: Path | None = None) -> tuple[PretrainedBackbone, PretrainConfig]:
    """An encoder weights file as (backbone source, training config) for the protocols."""
    weights = load_encoder_weights(path, device)
    cfg = config_from_info(weights.info)
    if data_root is not None:
        cfg = dataclasses.replace(cfg, data_root=data_root)
    return PretrainedBackbone(weights.network, weights.feature_dim), cfg


def load_source(path: str | Path, device: torch.device,
                data_root: Path | None = None) -> tuple[Method | PretrainedBackbone, PretrainConfig]:
    """A pre-trained backbone from a run folder (:func:`load_pretrained`)
    or from an encoder weights file (:func:`open_weights`)."""
    path = Path(path)
    if path.is_file():
        return open_weights(path, device, data_root)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is neither a run folder nor an encoder weights file: check the path")
    return load_pretrained(path, device, data_root)
