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
- ``NAME``: the run's backbone fine-tuned (:func:`vision_benchmarks.protocols.finetune`:
  backbone + linear layer, SGD nesterov, crop + flip). A SimCLRv2 backbone is its encoder
  plus the first layer of its 3-layer head: fine-tuning from the middle of the head;
- ``NAME-distilled`` for every run of ``--distill`` (default: those pre-trained with
  simclrv2): the fine-tuned network as teacher, a fresh copy of the pre-trained backbone as
  student, trained on all training images without their labels
  (:func:`vision_benchmarks.protocols.distill`, ``--distill-epochs``).

Every arm of one (fraction, seed) sees the same labelled images: the class-balanced subset of
:func:`vision_benchmarks.protocols.balanced_label_indices` (exactly ``round(f N / C)`` per
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
import copy
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from core_ssl.checkpoint import load_checkpoint, save_checkpoint
from core_ssl.cli import UsageError, run_command
from core_ssl.data import ImageSet
from core_ssl.device import resolve_bf16, resolve_device
from core_ssl.heads import LinearClassifier
from core_ssl.logger import RunLogger
from core_ssl.run import write_json

from vision_benchmarks.config import PretrainConfig
from vision_benchmarks.methods import build_backbone_encoder
from vision_benchmarks.pretrain import fixed_subset
from vision_benchmarks.protocols import balanced_label_subset, distill, finetune
from vision_benchmarks.semisup_report import summarize, write_report
from vision_benchmarks.pretrained import load_source
from vision_benchmarks.datasets import load_run_split

SCRATCH = "supervised"


@dataclass
class Arm:
    """One row of the table: ``kind`` scratch, finetune or distill; ``source`` the run's name."""

    key: str
    kind: str
    source: str | None = None
    method: str | None = None


@dataclass
class Source:
    """A pre-trained backbone and the training config it came with."""

    backbone: nn.Module
    dim: int
    cfg: PretrainConfig


def parse_runs(items: Sequence[str]) -> dict[str, Path]:
    """``["simclr=runs/a", ...]`` -> ``{"simclr": Path("runs/a"), ...}`` (names file-safe, unique)."""
    runs: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UsageError(f"--runs takes NAME=PATH items, got {item!r}", "e.g. --runs simclr=runs/simclr")
        if not name.replace("-", "").replace("_", "").isalnum() or name == SCRATCH or name in runs:
            raise UsageError(f"run name {name!r} must be unique, letters/digits/-/_ only and not {SCRATCH!r}",
                             "rename it")
        runs[name] = Path(path)
    return runs


def default_epochs(fraction: float) -> int:
    """SimCLRv2's fine-tuning length: 60 epochs at 1% of the labels or fewer, 30 above."""
    return 60 if fraction <= 0.01 else 30


def _tag(fraction: float, seed: int) -> str:
    return f"f{fraction:g}_s{seed}"


class Experiment:
    """The loaded data and backbones, and one method per arm kind."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.device = resolve_device(args.device)
        self.bf16 = resolve_bf16(args.bf16, self.device)
        self.sources: dict[str, Source] = {}
        for name, path in parse_runs(args.runs).items():
            source, cfg = load_source(path, self.device, args.data_root)
            self.sources[name] = Source(source.backbone(), source.backbone_dim, cfg)
        configs = [s.cfg for s in self.sources.values()]
        datasets = {c.dataset for c in configs}
        if len(datasets) > 1 or (args.dataset and datasets and datasets != {args.dataset}):
            raise UsageError(f"the runs were pre-trained on {sorted(datasets)}"
                             + (f" and --dataset is {args.dataset}" if args.dataset else ""),
                             "compare runs of one dataset")
        self.scratch_cfg = configs[0] if configs else PretrainConfig(dataset=args.dataset or "cifar10")
        dataset = self.scratch_cfg.dataset
        root = args.data_root or self.scratch_cfg.data_root
        self.train = fixed_subset(load_run_split(dataset, "train", root=root), args.train_images, 1)
        self.test = fixed_subset(load_run_split(dataset, "test", root=root), args.test_images, 2)
        self.arms = ([Arm(SCRATCH, "scratch")] if args.scratch else [])
        self.arms += [Arm(name, "finetune", name, s.cfg.method) for name, s in self.sources.items()]
        self.distilled = args.distill if args.distill is not None else [n for n, s in self.sources.items()
                                                                         if s.cfg.method == "simclrv2"]
        unknown = sorted(set(self.distilled) - set(self.sources))
        if unknown:
            raise UsageError(f"--distill names {unknown}, which --runs does not give", "use names from --runs")
        self.arms += [Arm(f"{name}-distilled", "distill", name, self.sources[name].cfg.method)
                      for name in self.distilled]

    def labelled(self, fraction: float, seed: int) -> ImageSet:
        """The class-balanced labelled subset, drawn once and kept as an index file."""
        index_file = self.args.out / "labels" / f"labels{fraction:g}_seed{seed}.json"
        return balanced_label_subset(self.train, fraction, seed, index_file=index_file)

    def _train(self, backbone: nn.Module, dim: int, labelled: ImageSet, epochs: int, seed: int,
               log: str) -> tuple[dict[str, float], nn.Module]:
        a = self.args
        with RunLogger(a.out / "logs" / log, tensorboard=False) as logger:
            return finetune(backbone, dim, labelled, self.test, self.device, epochs=epochs, batch_size=a.batch_size,
                            lr=a.lr, weight_decay=a.weight_decay, bf16=self.bf16, seed=seed, logger=logger)

    def run(self, arm: Arm, fraction: float, seed: int) -> dict[str, Any]:
        """One (arm, fraction, seed) cell, or its saved record."""
        path = self.args.out / "cells" / f"{arm.key}_{_tag(fraction, seed)}.json"
        if path.is_file():
            return json.loads(path.read_text())
        labelled = self.labelled(fraction, seed)
        epochs = self.args.epochs or default_epochs(fraction)
        record: dict[str, Any] = {"arm": arm.key, "kind": arm.kind, "method": arm.method, "fraction": fraction,
                                  "seed": seed, "labelled_images": len(labelled), "test_images": len(self.test)}
        if arm.kind == "scratch":
            torch.manual_seed(seed)
            encoder = build_backbone_encoder(self.scratch_cfg)
            scratch_epochs = self.args.scratch_epochs or epochs
            result, _ = self._train(encoder, encoder.feature_dim, labelled, scratch_epochs, seed,
                                    f"{arm.key}_{_tag(fraction, seed)}")
            record.update(top1=result["top1"], epochs=scratch_epochs)
        elif arm.kind == "finetune":
            source = self.sources[arm.source]
            result, model = self._train(source.backbone, source.dim, labelled, epochs, seed,
                                        f"{arm.key}_{_tag(fraction, seed)}")
            if arm.source in self.distilled:  # the teacher of the distilled arm
                save_checkpoint({"model": model.state_dict(), "top1": result["top1"]},
                                self._teacher_path(arm.source, fraction, seed))
            record.update(top1=result["top1"], epochs=epochs)
        else:
            source = self.sources[arm.source]
            teacher = self._teacher(arm.source, fraction, seed)
            with RunLogger(self.args.out / "logs" / f"{arm.key}_{_tag(fraction, seed)}", tensorboard=False) as logger:
                result = distill(teacher, source.backbone, source.dim, self.train, self.test, self.device,
                                 epochs=self.args.distill_epochs, batch_size=self.args.batch_size, lr=self.args.lr,
                                 bf16=self.bf16, seed=seed, logger=logger)
            record.update(top1=result["top1"], epochs=self.args.distill_epochs, unlabelled_images=len(self.train))
        record.update(lr=self.args.lr, batch_size=self.args.batch_size)
        write_json(path, record)
        return record

    def _teacher_path(self, name: str, fraction: float, seed: int) -> Path:
        return self.args.out / "teachers" / f"{name}_{_tag(fraction, seed)}.pt"

    def _teacher(self, name: str, fraction: float, seed: int) -> nn.Module:
        """The fine-tuned network of ``name`` (from ``teachers/``, fine-tuned again if missing)."""
        path = self._teacher_path(name, fraction, seed)
        source = self.sources[name]
        if not path.is_file():
            (self.args.out / "cells" / f"{name}_{_tag(fraction, seed)}.json").unlink(missing_ok=True)
            self.run(Arm(name, "finetune", name, source.cfg.method), fraction, seed)
        model = nn.Sequential(copy.deepcopy(source.backbone), LinearClassifier(source.dim, self.train.num_classes))
        model.load_state_dict(load_checkpoint(path)["model"])
        return model.to(self.device)


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
