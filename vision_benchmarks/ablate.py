"""SimCLR's ablations: augmentation pairs (Chen et al. 2020, Figure 5), projection heads
(Figure 8), batch size x training length (Figure 9), at the ``cpu`` preset (the small ConvNet)
or, with ``--preset paper``, ResNet-18 with the CIFAR stem.

    python -m vision_benchmarks.ablate augmentations --epochs 10 --out runs/ablate/augmentations
    python -m vision_benchmarks.ablate head --epochs 10 --out runs/ablate/head
    python -m vision_benchmarks.ablate batch --out runs/ablate/batch
    python -m vision_benchmarks.ablate augmentations --transforms crop color --epochs 1 -- --train-images 2000
    python -m vision_benchmarks.ablate batch --preset paper --batch-sizes 256 1024 --epoch-grid 100 \
        --lr-scaling linear --seeds 0 1 2 --device cuda -- --optimizer lars      # the paper's recipe

Every cell is one SimCLR pre-training, run by :func:`vision_benchmarks.pretrain.main` with the
flags a user would type (``--preset cpu --method simclr`` or ``--preset paper ...``, the cell's settings, the budget,
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
  one the preset and optimiser give batch 256 by ``--lr-scaling``: ``sqrt`` (default; the usual
  rule for AdamW, the cpu preset's optimiser), ``linear`` (the paper's rule for its LARS,
  ``-- --optimizer lars``) or ``none``.

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
from typing import Any, Sequence

from core_ssl.cli import UsageError, run_command
from core_ssl.config import config_to_dict, parse_config
from core_ssl.device import resolve_device

from vision_benchmarks.studies.ablation_cells import CELL_FILE, build_cells, cell_folder, check_extra_flags, run_cell
from vision_benchmarks.studies.ablation_claims import judge_ablation
from vision_benchmarks.studies.ablation_configs import ABLATION_CONFIGS, AblationConfig, BudgetConfig
from vision_benchmarks.studies.ablation_report import ABLATIONS, summarize, write_report

PROG = "python -m vision_benchmarks.ablate"
PASS_THROUGH = "--"
"""Everything after the first ``--`` goes to every pre-training run unchanged."""


def split_pass_through(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(the ablation's own arguments, the pre-training flags after the first ``--``)."""
    argv = list(argv)
    if PASS_THROUGH not in argv:
        return argv, []
    cut = argv.index(PASS_THROUGH)
    return argv[:cut], argv[cut + 1:]


def choose_ablation(own: Sequence[str]) -> tuple[str, list[str]]:
    """(the sub-command, its flags); ``--help`` before a sub-command lists them, a missing or
    unknown one exits 2 with argparse's message."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                     usage=f"{PROG} {{{','.join(ABLATIONS)}}} [flags] [-- pre-training flags]")
    parser.add_argument("ablation", choices=list(ABLATIONS), metavar="{" + ",".join(ABLATIONS) + "}",
                        help="; ".join(f"{name}: {text}" for name, text in ABLATIONS.items())
                        + f" (`{PROG} <ablation> --help` lists its flags)")
    rest = parser.add_argument("flags", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    rest.required = False  # the sub-command's flags are its parser's business; none is fine
    args = parser.parse_args(list(own))
    return args.ablation, args.flags


def _named(flags: Sequence[str], flag: str) -> bool:
    return any(item == flag or item.startswith(flag + "=") for item in flags)


def parse_command_line(argv: Sequence[str]) -> tuple[str, AblationConfig, list[str]]:
    """(the ablation, its validated config, the pre-training flags): every flag checked against
    its declared bounds (:func:`core_ssl.config.parse_config`), then across flags, then the
    device, all before anything is created.

    Raises:
        UsageError: a flag out of its bounds, ``--epochs`` with ``--minutes``, a pre-training
            flag after ``--`` that the ablation sets itself, or an unavailable ``--device``.
    """
    own, pretrain_flags = split_pass_through(argv)
    ablation, flags = choose_ablation(own)
    cfg = parse_config(ABLATION_CONFIGS[ablation], flags, description=ABLATIONS[ablation], prog=f"{PROG} {ablation}")
    if isinstance(cfg, BudgetConfig) and cfg.minutes is not None and _named(flags, "--epochs"):
        raise UsageError("--epochs and --minutes are two budgets for the same cells", "give one of them")
    check_extra_flags(ablation, pretrain_flags)
    resolve_device(cfg.device)
    return ablation, cfg, pretrain_flags


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ablation, cfg, pretrain_flags = parse_command_line(sys.argv[1:] if argv is None else argv)
    cells, budget = build_cells(ablation, cfg, pretrain_flags)
    cfg.out.mkdir(parents=True, exist_ok=True)
    records = []
    for seed in cfg.seeds:  # seed-major: every cell gets its first seed before any gets a second
        for cell in cells:
            if cfg.report_only:
                done = cell_folder(cfg.out, cell, seed) / CELL_FILE
                if done.is_file():
                    records.append(json.loads(done.read_text()))
                continue
            record = run_cell(ablation, cell, seed, cfg, pretrain_flags, budget)
            print(json.dumps({k: record[k] for k in ("cell", "seed", "linear_top1", "knn_top1")}), flush=True)
            records.append(record)
    if not records:
        raise UsageError(f"no evaluated cells of this ablation in {cfg.out / 'cells'}",
                         "run it without --report-only first, or point --out at its folder")
    settings = {"ablation": ablation, **config_to_dict(cfg), "pretrain_flags": pretrain_flags}
    rows = summarize(records, [cell.key for cell in cells])
    result = {"ablation": ablation, "settings": settings, "budget": " ".join(budget) or "epochs of each cell",
              "rows": rows, "cells": records, "claims": judge_ablation(ablation, records)}
    write_report(result, cfg.out)
    return result


if __name__ == "__main__":
    run_command(main)
