"""Encoder weights that a user can load without the run (or the method code) that trained them.

An *encoder weights file* is a safetensors file of a feature network's state dict, fp16 or
fp32, whose metadata says how to rebuild the network and how to check the rebuilt copy:

=====================  ========================================================================
metadata key           value (strings; JSON where structured)
=====================  ========================================================================
``format``             ``core_ssl.encoder_weights/1``
``architecture``       JSON ``{"encoder": <build_encoder name>, "encoder_kwargs": {...},
                       "head": [[in, out, batch_norm], ...]}``: the encoder, then the head
                       blocks ``Linear(in, out) [-> BatchNorm1d(out)] -> ReLU`` kept after it
                       (SimCLRv2's "middle of the head"; ``[]`` for none)
``input_normalization`` ``none`` (uint8 or [0, 1] float images, as the encoders take them) or
                       ``per_image`` (:func:`core_ssl.augment.standardize_images` first)
``feature_dim``        size of the features the network returns
``dtype``              ``float16`` or ``float32``: how the floating-point tensors are stored
``info``               JSON: where the weights come from (method, dataset, image size, the
                       training config, ...), shown to the user, not needed to rebuild
``knn_check``          JSON, optional: a weighted kNN top-1 measured when the file was written
=====================  ========================================================================

The rebuilt network is :class:`EncoderNetwork`, ``head(encoder(normalize(x)))``, for uint8
(0..255) or float [0, 1] images (B, C, H, W); load it with :func:`load_encoder_weights`::

    weights = load_encoder_weights("docs/weights/vision/simclr.safetensors")
    features = weights.network.eval()(images)          # (B, weights.feature_dim)

**The kNN check.** ``knn_check`` holds ``{"dataset", "bank": {"split", "indices"},
"queries": {"split", "indices"}, "k", "temperature", "top1"}``: the weighted kNN top-1
(:func:`core_ssl.features.knn_evaluation`) of the queries' features against the labelled bank's,
measured on the weights *as stored* (rounded to fp16 first when the file is fp16), so
:func:`verify_knn_check` on a correctly loaded file measures the same number again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from core_ssl.augment import standardize_images, to_float_image
from core_ssl.checkpoint import CheckpointError, export_weights, load_state, load_weights, read_safetensors_metadata
from core_ssl.encoders import build_encoder
from core_ssl.features import knn_evaluation
from core_ssl.heads import linear_block

__all__ = ["WEIGHTS_FORMAT", "INPUT_NORMALIZATIONS", "EncoderNetwork", "EncoderWeights", "check_images",
           "describe", "knn_check_top1", "load_encoder_weights", "read_weights_metadata",
           "save_encoder_weights", "verify_knn_check"]

WEIGHTS_FORMAT = "core_ssl.encoder_weights/1"
_DTYPES = {"float16": torch.float16, "float32": torch.float32}


def _unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 / 255; float images as float32 (taken to be in [0, 1] already)."""
    return to_float_image(images) if images.dtype == torch.uint8 else images.float()


INPUT_NORMALIZATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "none": _unit_range, "per_image": standardize_images}
"""What the encoder expects before its first layer, by name (the training method's choice)."""


class EncoderNetwork(nn.Module):
    """``head(encoder(normalize(x)))``: an encoder from :func:`core_ssl.encoders.build_encoder`,
    optional ``Linear -> [BN] -> ReLU`` head blocks, and the input normalisation it was trained
    with, rebuilt from an ``architecture`` dict (see the module docstring).

    State dict keys: ``encoder.*`` and ``head.<block>.<layer>.*`` (the layout of
    :meth:`core_ssl.heads.MLPHead.truncated`).
    """

    def __init__(self, architecture: dict[str, Any], input_normalization: str = "none") -> None:
        super().__init__()
        if input_normalization not in INPUT_NORMALIZATIONS:
            raise ValueError(f"unknown input normalisation {input_normalization!r}; "
                             f"known: {', '.join(INPUT_NORMALIZATIONS)}")
        try:
            self.encoder = build_encoder(architecture["encoder"], **architecture.get("encoder_kwargs", {}))
        except KeyError as err:
            raise ValueError(f"architecture {architecture} names no encoder ({err})") from err
        blocks = []
        previous = self.encoder.feature_dim
        for in_dim, out_dim, batch_norm in architecture.get("head", []):
            if in_dim != previous:
                raise ValueError(f"head block {in_dim} -> {out_dim} does not follow features of size {previous}")
            blocks.append(linear_block(in_dim, out_dim, batch_norm))
            previous = out_dim
        self.head = nn.Sequential(*blocks)
        self.feature_dim: int = previous
        self.architecture = {"encoder": architecture["encoder"],
                             "encoder_kwargs": dict(architecture.get("encoder_kwargs", {})),
                             "head": [list(block) for block in architecture.get("head", [])]}
        self.input_normalization = input_normalization
        self.normalize = INPUT_NORMALIZATIONS[input_normalization]

    @staticmethod
    def head_blocks(head: nn.Sequential) -> list[list[Any]]:
        """``[[in, out, batch_norm], ...]`` of a head made of ``Linear -> [BN] -> ReLU`` blocks
        (e.g. ``MLPHead.truncated(k)``); anything else is refused with the block named."""
        blocks = []
        for index, block in enumerate(head):
            kinds = [type(layer) for layer in block] if isinstance(block, nn.Sequential) else [type(block)]
            if kinds not in ([nn.Linear, nn.BatchNorm1d, nn.ReLU], [nn.Linear, nn.ReLU]):
                raise ValueError(f"head block {index} is {kinds}; only Linear -> [BatchNorm1d] -> ReLU blocks "
                                 "can be stored in an encoder weights file")
            linear = block[0]
            blocks.append([linear.in_features, linear.out_features, kinds[1] is nn.BatchNorm1d])
        return blocks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.normalize(x)))


@dataclass
class EncoderWeights:
    """What :func:`load_encoder_weights` returns: the network (eval mode, fp32) and the metadata."""

    network: EncoderNetwork
    path: Path
    dtype: str
    info: dict[str, Any] = field(default_factory=dict)
    knn_check: dict[str, Any] | None = None

    @property
    def feature_dim(self) -> int:
        return self.network.feature_dim

    @property
    def input_normalization(self) -> str:
        return self.network.input_normalization


def _rounded_state(network: nn.Module, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The state dict on the CPU with floating-point tensors stored as ``dtype``."""
    return {name: (t.detach().to("cpu", dtype) if t.is_floating_point() else t.detach().cpu())
            for name, t in network.state_dict().items()}


def save_encoder_weights(network: EncoderNetwork, path: str | Path, info: dict[str, Any] | None = None,
                         knn_check: dict[str, Any] | None = None,
                         dtype: torch.dtype = torch.float16) -> Path:
    """Write ``network`` as an encoder weights file (atomically); ``dtype`` float16 (half the
    size) or float32. Returns the path."""
    names = {v: k for k, v in _DTYPES.items()}
    if dtype not in names:
        raise ValueError(f"dtype must be torch.float16 or torch.float32, got {dtype}")
    metadata = {"format": WEIGHTS_FORMAT, "architecture": json.dumps(network.architecture),
                "input_normalization": network.input_normalization, "feature_dim": str(network.feature_dim),
                "dtype": names[dtype], "info": json.dumps(info or {})}
    if knn_check is not None:
        metadata["knn_check"] = json.dumps(knn_check)
    return export_weights(_rounded_state(network, dtype), path, metadata)


def read_weights_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of an encoder weights file, without reading its tensors."""
    try:
        metadata = read_safetensors_metadata(path)
    except CheckpointError as err:
        raise CheckpointError(f"{err}: give an encoder weights file") from err
    if metadata.get("format") != WEIGHTS_FORMAT:
        raise CheckpointError(f"{path} is not an encoder weights file (format {metadata.get('format')!r}, expected "
                              f"{WEIGHTS_FORMAT!r}); a run's backbone.safetensors holds weights only: export it "
                              "with python -m vision_benchmarks.weights --run RUN --out FILE")
    return metadata


def load_encoder_weights(path: str | Path, device: str | torch.device = "cpu") -> EncoderWeights:
    """Rebuild the network stored in an encoder weights file: architecture and normalisation
    from the metadata, weights converted to float32, in eval mode on ``device``."""
    path = Path(path)
    metadata = read_weights_metadata(path)
    network = EncoderNetwork(json.loads(metadata["architecture"]), metadata["input_normalization"])
    state = {name: (t.float() if t.is_floating_point() else t) for name, t in load_weights(path).items()}
    missing, unexpected = load_state(network, state, path, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{path} does not match the architecture in its metadata (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]}): the file is damaged or was written by other code")
    if network.feature_dim != int(metadata["feature_dim"]):
        raise CheckpointError(f"{path} states {metadata['feature_dim']} features, its network gives "
                              f"{network.feature_dim}: the file is damaged")
    knn_check = json.loads(metadata["knn_check"]) if "knn_check" in metadata else None
    return EncoderWeights(network.to(device).eval(), path, metadata["dtype"], json.loads(metadata.get("info", "{}")),
                          knn_check)


def check_images(size: int, count: int, seed: int) -> list[int]:
    """The sorted indices of a fixed random subset of ``count`` of ``size`` images (all when
    ``count >= size``): ``randperm(size)`` from a generator seeded with ``seed``."""
    if count >= size:
        return list(range(size))
    return sorted(torch.randperm(size, generator=torch.Generator().manual_seed(seed))[:count].tolist())


def knn_check_top1(network: nn.Module, bank_images: torch.Tensor, bank_labels: torch.Tensor,
                   query_images: torch.Tensor, query_labels: torch.Tensor, num_classes: int, k: int = 200,
                   temperature: float = 0.1, device: str | torch.device = "cpu") -> float:
    """Weighted kNN top-1 (:func:`core_ssl.features.knn_evaluation`: cosine, ``k`` clipped to
    the bank, fp32 features) of the queries' features against the bank's."""
    return knn_evaluation(network, bank_images, bank_labels, query_images, query_labels, num_classes, device,
                          k=k, temperature=temperature, batch_size=512, channels_last=False).top1


def verify_knn_check(weights: EncoderWeights, root: str | Path | None = None,
                     device: str | torch.device = "cpu") -> tuple[float, float]:
    """(stored, measured): the file's kNN top-1 and the same measurement on the loaded network,
    its bank and query images read with :func:`core_ssl.data.load_dataset` (``root`` as there)."""
    from core_ssl.data import load_dataset

    check = weights.knn_check
    if check is None:
        raise ValueError(f"{weights.path} stores no kNN check: export it again to add one")
    parts = []
    for role in ("bank", "queries"):
        data = load_dataset(check["dataset"], check[role]["split"], root=root)
        index = torch.tensor(check[role]["indices"], dtype=torch.int64)
        if len(index) and int(index.max()) >= len(data):
            raise ValueError(f"the kNN check of {weights.path} indexes {check['dataset']} {check[role]['split']} "
                             f"beyond its {len(data)} images: another copy of the dataset is in use")
        parts.append((data.images[index], data.labels[index], data.num_classes))
    (bank_x, bank_y, classes), (query_x, query_y, _) = parts
    measured = knn_check_top1(weights.network, bank_x, bank_y, query_x, query_y, classes, k=check["k"],
                              temperature=check["temperature"], device=device)
    return float(check["top1"]), measured


def describe(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """One row per weights file (path, size in MB, dtype, feature size, normalisation, info,
    stored kNN top-1), read from the metadata only: for listing what ships."""
    rows = []
    for path in paths:
        metadata = read_weights_metadata(path)
        check = json.loads(metadata["knn_check"]) if "knn_check" in metadata else None
        rows.append({"path": str(path), "megabytes": round(Path(path).stat().st_size / 2**20, 2),
                     "dtype": metadata["dtype"], "feature_dim": int(metadata["feature_dim"]),
                     "input_normalization": metadata["input_normalization"],
                     "info": json.loads(metadata.get("info", "{}")),
                     "knn_check_top1": None if check is None else check["top1"]})
    return rows
