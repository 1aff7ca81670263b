"""The semi-supervised comparison of SimCLRv2 (Chen et al. 2020b, Table 1 / Figure 1 at small
scale): top-1 with 1% and 10% of the labels for a network trained from scratch, SimCLR
fine-tuned, SimCLRv2 fine-tuned from the middle of its head, and SimCLRv2 after distillation.

    python -m vision_benchmarks.semisup --runs simclr=runs/simclr simclrv2=runs/simclrv2 \\
        --fractions 0.01 0.1 --seeds 0 1 2 --out runs/semisup
    python -m vision_benchmarks.semisup --runs simclr=docs/weights/vision/simclr.safetensors ...   # shipped weights

``--runs NAME=PATH``: a pre-training run folder or an encoder weights file
(:mod:`vision_benchmarks.weights`) per pre-trained arm. Arms, per label fraction and seed:

- ``supervised``: the encoder of the runs' architecture, randomly initialised (seeded), trained
  on the labelled images only (``--scratch-epochs``; ``--no-scratch`` leaves it out);
- ``NAME``: the run's backbone fine-tuned (:func:`vision_benchmarks.evaluation.protocols.finetune`:
  backbone + linear layer, SGD nesterov, crop + flip). A SimCLRv2 backbone is its encoder
  plus the first layer of its 3-layer head: fine-tuning from the middle of the head;
- ``NAME-distilled`` for every run of ``--distill`` (default: those pre-trained with
  simclrv2): the fine-tuned network as teacher, a fresh copy of the pre-trained backbone as
  student, trained on all training images without their labels
  (:func:`vision_benchmarks.evaluation.protocols.distill`, ``--distill-epochs``).

Every arm of one (fraction, seed) sees the same labelled images: the class-balanced subset of
:func:`vision_benchmarks.evaluation.protocols.balanced_label_indices` (exactly ``round(f N / C)`` per
class), saved as the index file ``<out>/labels/labels<f>_seed<s>.json`` and read back from it.
Fine-tuning epochs default to the paper's: 60 at 1% of the labels or fewer, 30 above.

Writes into ``--out``: ``cells/<arm>_f<f>_s<s>.json`` (one per arm, fraction and seed: the
test top-1 and the settings), ``teachers/`` (the fine-tuned networks that distillation starts
from), ``logs/`` (per-epoch test top-1), ``results.json`` and ``results.md``: per arm and
fraction the mean over seeds with its 95% Student-t interval (:func:`core_ssl.stats.t_interval`),
the per-seed values, and whether the paper's ordering (supervised < SimCLR < SimCLRv2 <
SimCLRv2 distilled) holds at this scale, by the means and by paired 95% intervals of the
per-seed differences. Resumable cell by cell.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from core_ssl.cli import UsageError, run_command

from vision_benchmarks.evaluation.semisup import Experiment
from vision_benchmarks.evaluation.semisup_report import summarize, write_report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m vision_benchmarks.semisup", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--runs", nargs="*", default=[], metavar="NAME=PATH",
                        help="pre-trained arms: a run folder or an encoder weights file each")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.01, 0.1], help="label fractions")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (label subset and training)")
    parser.add_argument("--out", type=Path, default=Path("runs/semisup"), help="folder of the cells and results")
    parser.add_argument("--distill", nargs="*", default=None, metavar="NAME",
                        help="runs to distil after fine-tuning (default: the simclrv2 ones)")
    parser.add_argument("--scratch", action=argparse.BooleanOptionalAction, default=True,
                        help="include the supervised-from-scratch arm")
    parser.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs (default 60 at <= 1%% labels, else 30)")
    parser.add_argument("--scratch-epochs", type=int, default=None, help="supervised-from-scratch epochs (default: --epochs)")
    parser.add_argument("--distill-epochs", type=int, default=20, help="distillation epochs on all training images")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=0.05, help="peak learning rate (SGD nesterov, warm-up cosine)")
    parser.add_argument("--weight-decay", type=float, default=5e-4, help="fine-tuning weight decay")
    parser.add_argument("--dataset", default=None, help="dataset when no run is given (default cifar10)")
    parser.add_argument("--data-root", type=Path, default=None, help="folder holding the datasets")
    parser.add_argument("--train-images", type=int, default=None,
                        help="use a fixed random subset of this many training images as the training set (default all)")
    parser.add_argument("--test-images", type=int, default=None, help="test on a fixed random subset (default all)")
    parser.add_argument("--bf16", choices=["auto", "on", "off"], default="auto", help="bf16 autocast")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    return parser


def validate(args: argparse.Namespace) -> None:
    """Refuse settings that cannot work before any training starts."""
    bad = [f for f in args.fractions if not 0 < f <= 1]
    if bad:
        raise UsageError(f"--fractions must lie in (0, 1], got {bad}", "e.g. --fractions 0.01 0.1")
    for name in ("epochs", "scratch_epochs", "distill_epochs", "batch_size", "train_images", "test_images"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1, got {value}", "give a positive number")
    if not args.lr > 0:
        raise UsageError(f"--lr must be > 0, got {args.lr}", "give a positive learning rate")
    if not args.weight_decay >= 0:
        raise UsageError(f"--weight-decay must be >= 0, got {args.weight_decay}", "give 0 or more")
    if any(seed < 0 for seed in args.seeds):
        raise UsageError(f"--seeds must be >= 0, got {args.seeds}", "give seeds 0 or more")
    if not args.runs and not args.scratch:
        raise UsageError("no arm to run: --no-scratch and no --runs", "give --runs NAME=PATH")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    validate(args)
    experiment = Experiment(args)
    records = []
    for seed in args.seeds:  # seed-major: every arm and fraction gets its first seed before a second
        for fraction in args.fractions:
            for arm in experiment.arms:
                record = experiment.run(arm, fraction, seed)
                print(json.dumps({k: record[k] for k in ("arm", "fraction", "seed", "top1")}), flush=True)
                records.append(record)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    settings["dataset"] = experiment.scratch_cfg.dataset
    result = summarize(records, experiment.arms, args.fractions, settings)
    write_report(result, args.out)
    return result


if __name__ == "__main__":
    run_command(main)
