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
seeds or more (:mod:`vision_benchmarks.studies.ablation_claims`). Resumable cell by cell: evaluated cells
are read back, an interrupted pre-training resumes from its checkpoint. ``--report-only``
rebuilds the report from the evaluated cells in ``--out`` and trains nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from core_ssl.cli import UsageError, run_command

from vision_benchmarks.methods.transforms import BRANCHES, TRANSFORM_NAMES
from vision_benchmarks.studies.ablation_cells import (CELL_FILE, HEAD_LAYERS, LR_SCALINGS, build_cells, cell_folder,
                                                      check_extra_flags, run_cell)
from vision_benchmarks.studies.ablation_claims import judge_ablation
from vision_benchmarks.studies.ablation_report import ABLATIONS, summarize, write_report


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
