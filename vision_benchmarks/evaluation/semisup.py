"""The semi-supervised experiment of SimCLRv2 (Chen et al. 2020b, Table 1): its arms
(supervised from scratch, fine-tuned, distilled), the labelled subsets they share, and one
(arm, label fraction, seed) cell trained and evaluated (:meth:`Experiment.run`), resumable from
its record. The command line is :mod:`vision_benchmarks.semisup`; the report,
:mod:`vision_benchmarks.evaluation.semisup_report`."""


from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from core_ssl.checkpoint import load_checkpoint, save_checkpoint
from core_ssl.cli import UsageError
from core_ssl.data import ImageSet
from core_ssl.device import resolve_bf16, resolve_device
from core_ssl.heads import LinearClassifier
from core_ssl.logger import RunLogger
from core_ssl.run import write_json

from vision_benchmarks.config import PretrainConfig
from vision_benchmarks.methods import build_backbone_encoder
from vision_benchmarks.evaluation.protocols import balanced_label_subset, distill, finetune
from vision_benchmarks.pretrained import load_source
from vision_benchmarks.datasets import fixed_subset, load_run_split

SCRATCH = "supervised"


@dataclass
class SemisupConfig:
    """The semi-supervised comparison of SimCLRv2 at small scale: supervised from scratch,
    fine-tuned and distilled arms, at each label fraction and seed."""

    runs: list[str] = field(default_factory=list, metadata={"help": "pre-trained arms, NAME=PATH each: a run folder or an encoder weights file", "nargs": "*", "metavar": "NAME=PATH"})
    fractions: list[float] = field(default_factory=lambda: [0.01, 0.1], metadata={"help": "label fractions", "gt": 0, "max": 1})
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"help": "seeds (label subset and training)", "min": 0})
    out: Path = field(default=Path("runs/semisup"), metadata={"help": "folder of the cells and results", "nonempty": True})
    distill: list[str] | None = field(default=None, metadata={"help": "runs to distil after fine-tuning (default: the simclrv2 ones)", "nargs": "*", "metavar": "NAME"})
    scratch: bool = field(default=True, metadata={"help": "include the supervised-from-scratch arm"})
    epochs: int | None = field(default=None, metadata={"help": "fine-tuning epochs (default 60 at <= 1%% labels, else 30)", "min": 1})
    scratch_epochs: int | None = field(default=None, metadata={"help": "supervised-from-scratch epochs (default: --epochs)", "min": 1})
    distill_epochs: int = field(default=20, metadata={"help": "distillation epochs on all training images", "min": 1})
    batch_size: int = field(default=256, metadata={"help": "fine-tuning and distillation batch size", "min": 1})
    lr: float = field(default=0.05, metadata={"help": "peak learning rate (SGD nesterov, warm-up cosine)", "gt": 0})
    weight_decay: float = field(default=5e-4, metadata={"help": "fine-tuning weight decay", "min": 0})
    dataset: str | None = field(default=None, metadata={"help": "dataset when no run is given (default cifar10)"})
    data_root: Path | None = field(default=None, metadata={"help": "folder holding the datasets"})
    train_images: int | None = field(default=None, metadata={"help": "use a fixed random subset of this many training images as the training set (default all)", "min": 1})
    test_images: int | None = field(default=None, metadata={"help": "test on a fixed random subset (default all)", "min": 1})
    bf16: str = field(default="auto", metadata={"help": "bf16 autocast", "choices": ["auto", "on", "off"]})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})


def check_arms(cfg: SemisupConfig) -> None:
    """Refuse a command line that leaves no arm to run (the check across flags)."""
    if not cfg.runs and not cfg.scratch:
        raise UsageError("no arm to run: --no-scratch and no --runs", "give --runs NAME=PATH")


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

    def __init__(self, cfg: SemisupConfig) -> None:
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        self.bf16 = resolve_bf16(cfg.bf16, self.device)
        self.sources: dict[str, Source] = {}
        for name, path in parse_runs(cfg.runs).items():
            source, source_cfg = load_source(path, self.device, cfg.data_root)
            self.sources[name] = Source(source.backbone(), source.backbone_dim, source_cfg)
        configs = [s.cfg for s in self.sources.values()]
        datasets = {c.dataset for c in configs}
        if len(datasets) > 1 or (cfg.dataset and datasets and datasets != {cfg.dataset}):
            raise UsageError(f"the runs were pre-trained on {sorted(datasets)}"
                             + (f" and --dataset is {cfg.dataset}" if cfg.dataset else ""),
                             "compare runs of one dataset")
        self.scratch_cfg = configs[0] if configs else PretrainConfig(dataset=cfg.dataset or "cifar10")
        dataset = self.scratch_cfg.dataset
        root = cfg.data_root or self.scratch_cfg.data_root
        self.train = fixed_subset(load_run_split(dataset, "train", root=root), cfg.train_images, 1)
        self.test = fixed_subset(load_run_split(dataset, "test", root=root), cfg.test_images, 2)
        self.arms = ([Arm(SCRATCH, "scratch")] if cfg.scratch else [])
        self.arms += [Arm(name, "finetune", name, s.cfg.method) for name, s in self.sources.items()]
        self.distilled = cfg.distill if cfg.distill is not None else [n for n, s in self.sources.items()
                                                                         if s.cfg.method == "simclrv2"]
        unknown = sorted(set(self.distilled) - set(self.sources))
        if unknown:
            raise UsageError(f"--distill names {unknown}, which --runs does not give", "use names from --runs")
        self.arms += [Arm(f"{name}-distilled", "distill", name, self.sources[name].cfg.method)
                      for name in self.distilled]

    def labelled(self, fraction: float, seed: int) -> ImageSet:
        """The class-balanced labelled subset, drawn once and kept as an index file."""
        index_file = self.cfg.out / "labels" / f"labels{fraction:g}_seed{seed}.json"
        return balanced_label_subset(self.train, fraction, seed, index_file=index_file)

    def _train(self, backbone: nn.Module, dim: int, labelled: ImageSet, epochs: int, seed: int,
               log: str) -> tuple[dict[str, float], nn.Module]:
        a = self.cfg
        with RunLogger(a.out / "logs" / log, tensorboard=False) as logger:
            return finetune(backbone, dim, labelled, self.test, self.device, epochs=epochs, batch_size=a.batch_size,
                            lr=a.lr, weight_decay=a.weight_decay, bf16=self.bf16, seed=seed, logger=logger)

    def run(self, arm: Arm, fraction: float, seed: int) -> dict[str, Any]:
        """One (arm, fraction, seed) cell, or its saved record."""
        path = self.cfg.out / "cells" / f"{arm.key}_{_tag(fraction, seed)}.json"
        if path.is_file():
            return json.loads(path.read_text())
        labelled = self.labelled(fraction, seed)
        epochs = self.cfg.epochs or default_epochs(fraction)
        record: dict[str, Any] = {"arm": arm.key, "kind": arm.kind, "method": arm.method, "fraction": fraction,
                                  "seed": seed, "labelled_images": len(labelled), "test_images": len(self.test)}
        if arm.kind == "scratch":
            torch.manual_seed(seed)
            encoder = build_backbone_encoder(self.scratch_cfg)
            scratch_epochs = self.cfg.scratch_epochs or epochs
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
            with RunLogger(self.cfg.out / "logs" / f"{arm.key}_{_tag(fraction, seed)}", tensorboard=False) as logger:
                result = distill(teacher, source.backbone, source.dim, self.train, self.test, self.device,
                                 epochs=self.cfg.distill_epochs, batch_size=self.cfg.batch_size, lr=self.cfg.lr,
                                 bf16=self.bf16, seed=seed, logger=logger)
            record.update(top1=result["top1"], epochs=self.cfg.distill_epochs, unlabelled_images=len(self.train))
        record.update(lr=self.cfg.lr, batch_size=self.cfg.batch_size)
        write_json(path, record)
        return record

    def _teacher_path(self, name: str, fraction: float, seed: int) -> Path:
        return self.cfg.out / "teachers" / f"{name}_{_tag(fraction, seed)}.pt"

    def _teacher(self, name: str, fraction: float, seed: int) -> nn.Module:
        """The fine-tuned network of ``name`` (from ``teachers/``, fine-tuned again if missing)."""
        path = self._teacher_path(name, fraction, seed)
        source = self.sources[name]
        if not path.is_file():
            (self.cfg.out / "cells" / f"{name}_{_tag(fraction, seed)}.json").unlink(missing_ok=True)
            self.run(Arm(name, "finetune", name, source.cfg.method), fraction, seed)
        model = nn.Sequential(copy.deepcopy(source.backbone), LinearClassifier(source.dim, self.train.num_classes))
        model.load_state_dict(load_checkpoint(path)["model"])
        return model.to(self.device)
