"""SimCLR's ablations at the ``cpu`` preset: augmentation pairs (Chen et al. 2020, Figure 5),
projection heads (Figure 8), batch size x training length (Figure 9).

    python -m vision_benchmarks.ablate augmentations --epochs 10 --out runs/ablate/augmentations
    python -m vision_benchmarks.ablate head --epochs 10 --out runs/ablate/head
    python -m vision_benchmarks.ablate batch --out runs/ablate/batch
    python -m vision_benchmarks.ablate augmentations --transforms crop color --epochs 1 -- --train-images 2000

Every cell is one SimCLR pre-training, run by :func:`vision_benchmarks.pretrain.main` with the
flags a user would type (``--preset cpu --method simclr``, the cell's settings, the budget,
``--seed``, then the flags after ``--``), followed by the linear probe and the weighted kNN of
its encoder on its dataset (``--eval-train-images`` / ``--eval-test-images`` fixed random
subsets; default all):

- ``augmentations``: for every ordered pair (t1, t2) of ``--transforms``, views made of t1 then
  t2 (``--views t1,t2``; the diagonal is t1 alone); ``--branches one`` (the paper's asymmetric
  setting: the other view is the image itself) or ``both``. Heat map of the linear top-1, rows
  = the first transformation, columns = the second.
- ``head``: ``--heads none linear mlp`` across the projection output sizes ``--dims``
  (``--proj-layers 0 / 1 / 2`` with ``--proj-dim d``). ``none`` has no output size (the loss
  sits on the encoder's features) and is one cell, drawn as a horizontal line.
- ``batch``: every ``--batch-sizes`` x ``--epoch-grid`` cell, the learning rate scaled from the
  preset's (set for batch 256) by ``--lr-scaling``: ``sqrt`` (default; the usual rule for
  AdamW, the cpu preset's optimiser), ``linear`` (the paper's rule for LARS / SGD) or ``none``.

Writes into ``--out``: ``cells/<cell>-s<seed>/`` (the pre-training run folder, and its
``cell.json`` once evaluated), ``results.json`` (every cell and, per setting, the mean over
seeds with its 95% t interval when there are two or more), ``results.md`` and
``<ablation>.png``, and ``claims.md``: the paper's conclusions judged on the cells with two
seeds or more (:mod:`vision_benchmarks.ablation_claims`). Resumable cell by cell: evaluated cells
are read back, an interrupted pre-training resumes from its checkpoint. ``--report-only``
rebuilds the report from the evaluated cells in ``--out`` and trains nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import torch

from core_ssl import monitor
from core_ssl.cli import UsageError, run_command
from core_ssl.config import parse_config
from core_ssl.data import ImageSet
from core_ssl.device import resolve_bf16, resolve_device
from core_ssl.features import extract_features
from core_ssl.run import find_checkpoint, write_json

from vision_benchmarks import pretrain
from vision_benchmarks.ablation_claims import judge_ablation
from vision_benchmarks.ablation_report import ABLATIONS, summarize, write_report
from vision_benchmarks.config import PRESETS, PretrainConfig
from vision_benchmarks.methods import resolve_method_defaults
from vision_benchmarks.protocols import linear_probe
from vision_benchmarks.transforms import BRANCHES, TRANSFORM_NAMES
from vision_benchmarks.datasets import load_run_split
from vision_benchmarks.pretrained import load_pretrained

CELL_FILE = "cell.json"
HEAD_LAYERS = {"none": 0, "linear": 1, "mlp": 2}
LR_SCALINGS = ("sqrt", "linear", "none")
PRESET_BATCH = 256  # the cpu preset's batch size, for which its learning rate is set


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
    clashing = sorted(given & (_OWN_FLAGS[ablation] | {"--seed", "--run-dir", "--out", "--resume"}))
    if clashing:
        raise UsageError(f"{' '.join(clashing)} after '--' would override what the {ablation} ablation sets",
                         "drop them: the ablation sets its cells' settings, --seeds and --out itself")


@lru_cache(maxsize=2)
def _splits(dataset: str, root: str | None) -> tuple[ImageSet, ImageSet]:
    return load_run_split(dataset, "train", root=root), load_run_split(dataset, "test", root=root)


def evaluate_cell(run: Path, device: torch.device, train_images: int | None, test_images: int | None,
                  seed: int) -> dict[str, float]:
    """Linear probe and weighted kNN (k = min(200, bank)) of a run's backbone on its dataset, the
    labelled set and the test set fixed random subsets of the given sizes (None = all)."""
    method, cfg = load_pretrained(run, device)
    train, test = _splits(cfg.dataset, None if cfg.data_root is None else str(cfg.data_root))
    train = pretrain.fixed_subset(train, train_images, seed + 1)
    test = pretrain.fixed_subset(test, test_images, seed + 2)
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


def run_cell(ablation: str, cell: Cell, seed: int, args: argparse.Namespace, budget: list[str]) -> dict[str, Any]:
    """Pre-train and evaluate one (cell, seed), or read its ``cell.json`` back when done."""
    run = cell_folder(args.out, cell, seed)
    done = run / CELL_FILE
    if done.is_file():
        return json.loads(done.read_text())
    flags = ["--preset", "cpu", "--method", "simclr", *cell.flags, *budget, "--seed", str(seed),
             "--run-dir", str(run), "--device", args.device, *args.pretrain_flags]
    if find_checkpoint(run) is not None:
        flags.append("--resume")
    summary = pretrain.main(flags)
    device = resolve_device(args.device)
    record = {"ablation": ablation, "cell": cell.key, "seed": seed, **cell.params,
              **evaluate_cell(run, device, args.eval_train_images, args.eval_test_images, seed),
              "steps": summary["steps"], "epochs_trained": summary["epochs"], "train_minutes": summary["train_minutes"],
              "run": str(run)}
    write_json(done, record)
    return record


def preset_lr(extra: Sequence[str]) -> float:
    """The peak learning rate the cpu preset (with the extra flags) gives SimCLR at its batch 256."""
    cfg = parse_config(PretrainConfig, ["--preset", "cpu", "--method", "simclr", *extra], presets=PRESETS)
    return resolve_method_defaults(cfg).lr


def build_cells(args: argparse.Namespace) -> tuple[list[Cell], list[str]]:
    """The ablation's cells and the budget flags every cell gets."""
    budget = [] if args.ablation == "batch" else (
        ["--minutes", str(args.minutes)] if args.minutes is not None else ["--epochs", str(args.epochs)])
    if args.ablation == "augmentations":
        return augmentation_cells(args.transforms, args.branches), budget
    if args.ablation == "head":
        return head_cells(args.heads, args.dims), budget
    return batch_cells(args.batch_sizes, args.epoch_grid, preset_lr(args.pretrain_flags), args.lr_scaling), budget


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m vision_benchmarks.ablate", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ablations = parser.add_subparsers(dest="ablation", required=True, metavar="{" + ",".join(ABLATIONS) + "}")
    for name, text in ABLATIONS.items():
        sub = ablations.add_parser(name, help=text, description=text,
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        sub.add_argument("--out", type=Path, default=Path(f"runs/ablate/{name}"), help="folder of the cells and results")
        sub.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds of every cell")
        sub.add_argument("--device", default="auto", help="auto, cpu or cuda")
        sub.add_argument("--report-only", action="store_true",
                         help="rebuild the report from the evaluated cells in --out; train nothing")
        sub.add_argument("--eval-train-images", type=_positive, default=None,
                         help="labelled images of the linear probe and the kNN bank (a fixed random subset; default all)")
        sub.add_argument("--eval-test-images", type=_positive, default=None,
                         help="test images (a fixed random subset; default all)")
        if name != "batch":
            budget = sub.add_mutually_exclusive_group()
            budget.add_argument("--epochs", type=_positive, default=10, help="pre-training epochs per cell")
            budget.add_argument("--minutes", type=float, default=None, help="pre-training minutes per cell instead")
        if name == "augmentations":
            sub.add_argument("--transforms", nargs="+", choices=TRANSFORM_NAMES, default=list(TRANSFORM_NAMES),
                             help="the transformations of the grid")
            sub.add_argument("--branches", choices=BRANCHES, default="one",
                             help="one: the pair makes one view, the other is the image (the paper); both: both views")
        elif name == "head":
            sub.add_argument("--heads", nargs="+", choices=list(HEAD_LAYERS), default=list(HEAD_LAYERS),
                             help="projection heads")
            sub.add_argument("--dims", type=_positive, nargs="+", default=[32, 64, 128, 256, 512],
                             help="projection output sizes (linear and mlp)")
        else:
            sub.add_argument("--batch-sizes", type=_positive, nargs="+", default=[64, 128, 256, 512, 1024],
                             help="batch sizes")
            sub.add_argument("--epoch-grid", type=_positive, nargs="+", default=[5, 10, 20, 40],
                             help="training lengths in epochs")
            sub.add_argument("--lr-scaling", choices=LR_SCALINGS, default="sqrt",
                             help="learning rate = preset lr x (batch / 256) ** (1/2, 1 or 0)")
        sub.add_argument("pretrain_flags", nargs="*", default=[],
                         help="flags for every pre-training run, after a '--' (e.g. -- --train-images 5000)")
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    check_extra_flags(args.ablation, args.pretrain_flags)
    if getattr(args, "minutes", None) is not None and not args.minutes > 0:
        raise UsageError(f"--minutes must be > 0, got {args.minutes}", "give a positive budget, or use --epochs")
    cells, budget = build_cells(args)
    args.out.mkdir(parents=True, exist_ok=True)
    records = []
    for seed in args.seeds:  # seed-major: every cell gets its first seed before any gets a second
        for cell in cells:
            if args.report_only:
                done = cell_folder(args.out, cell, seed) / CELL_FILE
                if done.is_file():
                    records.append(json.loads(done.read_text()))
                continue
            record = run_cell(args.ablation, cell, seed, args, budget)
            print(json.dumps({k: record[k] for k in ("cell", "seed", "linear_top1", "knn_top1")}), flush=True)
            records.append(record)
    if not records:
        raise UsageError(f"no evaluated cells of this ablation in {args.out / 'cells'}",
                         "run it without --report-only first, or point --out at its folder")
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    rows = summarize(records, [cell.key for cell in cells])
    result = {"ablation": args.ablation, "settings": settings, "budget": " ".join(budget) or "epochs of each cell",
              "rows": rows, "cells": records, "claims": judge_ablation(args.ablation, records)}
    write_report(result, args.out)
    return result


if __name__ == "__main__":
    run_command(main)
