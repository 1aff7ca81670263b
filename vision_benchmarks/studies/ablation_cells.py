"""The cells of SimCLR's ablations and how one is run: the settings each ablation varies
(:func:`augmentation_cells`, :func:`head_cells`, :func:`batch_cells`), and one (cell, seed)
pre-trained with :func:`vision_benchmarks.pretrain.main` and evaluated by a linear probe and a
weighted kNN (:func:`run_cell`). The command line is :mod:`vision_benchmarks.ablate`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import torch

from core_ssl import monitor
from core_ssl.cli import UsageError
from core_ssl.config import parse_config
from core_ssl.data import ImageSet
from core_ssl.device import resolve_bf16, resolve_device
from core_ssl.features import extract_features
from core_ssl.run import find_checkpoint, write_json

from vision_benchmarks import pretrain
from vision_benchmarks.config import PRESETS, PretrainConfig
from vision_benchmarks.methods import resolve_method_defaults
from vision_benchmarks.evaluation.protocols import linear_probe
from vision_benchmarks.datasets import fixed_subset, load_run_split
from vision_benchmarks.pretrained import load_pretrained
from vision_benchmarks.studies.ablation_configs import (HEAD_LAYERS, AblationConfig, AugmentationsConfig, BatchConfig,
                                                        BudgetConfig, HeadConfig)

CELL_FILE = "cell.json"
PRESET_BATCH = 256  # the batch size the scaled learning rates start from (the cpu preset's)


@dataclass
class Cell:
    """One setting of an ablation: its name, the pre-training flags that make it, its parameters."""

    key: str
    flags: list[str]
    params: dict[str, Any] = field(default_factory=dict)


def augmentation_cells(transforms: Sequence[str], branches: str) -> list[Cell]:
    """Every ordered pair (first, second) of ``transforms``; first == second is the single one."""
    cells = []
    for first in transforms:
        for second in transforms:
            spec = first if first == second else f"{first},{second}"
            cells.append(Cell(first if first == second else f"{first}+{second}",
                              ["--views", spec, "--views-branches", branches],
                              {"first": first, "second": second, "branches": branches}))
    return cells


def head_cells(heads: Sequence[str], dims: Sequence[int]) -> list[Cell]:
    """``none`` once; ``linear`` and ``mlp`` at every output size in ``dims``."""
    cells = []
    for head in heads:
        if head == "none":
            cells.append(Cell("none", ["--proj-layers", "0"], {"head": "none", "dim": None}))
            continue
        for dim in dims:
            cells.append(Cell(f"{head}-{dim}", ["--proj-layers", str(HEAD_LAYERS[head]), "--proj-dim", str(dim)],
                              {"head": head, "dim": dim}))
    return cells


def scaled_lr(base_lr: float, batch_size: int, scaling: str) -> float:
    """``base_lr * (B / 256) ** p`` with p = 1/2 (sqrt), 1 (linear) or 0 (none)."""
    power = {"sqrt": 0.5, "linear": 1.0, "none": 0.0}[scaling]
    return base_lr * (batch_size / PRESET_BATCH) ** power


def batch_cells(batch_sizes: Sequence[int], epoch_grid: Sequence[int], base_lr: float, scaling: str) -> list[Cell]:
    """Every batch size x epochs, the learning rate scaled with the batch size."""
    cells = []
    for batch in batch_sizes:
        lr = scaled_lr(base_lr, batch, scaling)
        for epochs in epoch_grid:
            cells.append(Cell(f"b{batch}-e{epochs}", ["--batch-size", str(batch), "--epochs", str(epochs),
                                                      "--lr", repr(lr)],
                              {"batch_size": batch, "epochs": epochs, "lr": lr}))
    return cells


# flags each ablation sets itself: given again after "--" they would silently replace the cell's
_OWN_FLAGS = {"augmentations": {"--views", "--views-branches", "--method"},
              "head": {"--proj-layers", "--proj-dim", "--method"},
              "batch": {"--batch-size", "--epochs", "--minutes", "--lr", "--method"}}


def check_extra_flags(ablation: str, extra: Sequence[str]) -> None:
    """Refuse pre-training flags after ``--`` that the ablation varies or sets."""
    given = {flag.split("=")[0] for flag in extra}
    clashing = sorted(given & (_OWN_FLAGS[ablation] | {"--seed", "--run-dir", "--out", "--resume", "--preset"}))
    if clashing:
        raise UsageError(f"{' '.join(clashing)} after '--' would override what the {ablation} ablation sets",
                         "drop them: the ablation sets its cells' settings, --seeds and --out itself "
                         "(and --preset goes before '--')")


@lru_cache(maxsize=2)
def _splits(dataset: str, root: str | None) -> tuple[ImageSet, ImageSet]:
    return load_run_split(dataset, "train", root=root), load_run_split(dataset, "test", root=root)


def evaluate_cell(run: Path, device: torch.device, train_images: int | None, test_images: int | None,
                  seed: int) -> dict[str, float]:
    """Linear probe and weighted kNN (k = min(200, bank)) of a run's backbone on its dataset, the
    labelled set and the test set fixed random subsets of the given sizes (None = all)."""
    method, cfg = load_pretrained(run, device)
    train, test = _splits(cfg.dataset, None if cfg.data_root is None else str(cfg.data_root))
    train = fixed_subset(train, train_images, seed + 1)
    test = fixed_subset(test, test_images, seed + 2)
    bf16 = resolve_bf16(cfg.bf16, device)
    backbone = method.backbone()
    train_x = extract_features(backbone, train.images, device, bf16)
    test_x = extract_features(backbone, test.images, device, bf16)
    probe = linear_probe(train_x, train.labels, test_x, test.labels, train.num_classes, seed=seed)
    knn = monitor.knn_accuracy(train_x, train.labels, test_x, test.labels, train.num_classes, k=min(200, len(train)))
    return {"linear_top1": probe.top1, "knn_top1": knn, "l2": probe.l2, "labelled_images": len(train),
            "test_images": len(test)}


def cell_folder(out: Path, cell: Cell, seed: int) -> Path:
    """The run folder of one (cell, seed); its ``cell.json`` marks it evaluated."""
    return out / "cells" / f"{cell.key}-s{seed}"


def run_cell(ablation: str, cell: Cell, seed: int, cfg: AblationConfig, pretrain_flags: Sequence[str],
             budget: list[str]) -> dict[str, Any]:
    """Pre-train and evaluate one (cell, seed), or read its ``cell.json`` back when done; every
    pre-training gets ``pretrain_flags`` last (the flags after ``--``)."""
    run = cell_folder(cfg.out, cell, seed)
    done = run / CELL_FILE
    if done.is_file():
        return json.loads(done.read_text())
    flags = ["--preset", cfg.preset, "--method", "simclr", *cell.flags, *budget, "--seed", str(seed),
             "--run-dir", str(run), "--device", cfg.device, *pretrain_flags]
    if find_checkpoint(run) is not None:
        flags.append("--resume")
    summary = pretrain.main(flags)
    device = resolve_device(cfg.device)
    record = {"ablation": ablation, "cell": cell.key, "seed": seed, **cell.params,
              **evaluate_cell(run, device, cfg.eval_train_images, cfg.eval_test_images, seed),
              "steps": summary["steps"], "epochs_trained": summary["epochs"], "train_minutes": summary["train_minutes"],
              "run": str(run)}
    write_json(done, record)
    return record


def preset_lr(extra: Sequence[str], preset: str = "cpu") -> float:
    """The peak learning rate the preset (with the extra flags: the optimiser, say) gives SimCLR
    at batch 256, where every scaling rule starts."""
    cfg = parse_config(PretrainConfig, ["--preset", preset, "--method", "simclr", *extra,
                                        "--batch-size", str(PRESET_BATCH)], presets=PRESETS)
    return resolve_method_defaults(cfg).lr


def build_cells(ablation: str, cfg: AblationConfig, pretrain_flags: Sequence[str]) -> tuple[list[Cell], list[str]]:
    """The ablation's cells and the budget flags every cell gets (none for the batch ablation,
    whose cells set their own length)."""
    budget = [] if not isinstance(cfg, BudgetConfig) else (
        ["--minutes", str(cfg.minutes)] if cfg.minutes is not None else ["--epochs", str(cfg.epochs)])
    if isinstance(cfg, AugmentationsConfig):
        return augmentation_cells(cfg.transforms, cfg.branches), budget
    if isinstance(cfg, HeadConfig):
        return head_cells(cfg.heads, cfg.dims), budget
    if isinstance(cfg, BatchConfig):
        return batch_cells(cfg.batch_sizes, cfg.epoch_grid, preset_lr(pretrain_flags, cfg.preset), cfg.lr_scaling), budget
    raise ValueError(f"no cells for the {ablation} ablation's config {type(cfg).__name__}")
