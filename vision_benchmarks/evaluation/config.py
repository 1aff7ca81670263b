"""The configuration of ``python -m vision_benchmarks.evaluate``: one dataclass whose fields
declare their bounds (:mod:`core_ssl.config`), read by every protocol of
:mod:`vision_benchmarks.evaluation`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class EvaluateConfig:
    """Evaluate a pre-training run with a linear probe, a kNN classifier or fine-tuning, on its own
    dataset or others (transfer), or under common corruptions (robustness)."""

    run: Path = field(default=Path("runs/pretrain"), metadata={"help": "run folder written by vision_benchmarks.pretrain"})
    protocol: str | None = field(default=None, metadata={"help": "evaluation protocol (linear+knn: both from one feature pass; robustness: linear probe on corrupted CIFAR-10 test images); default linear, or linear+knn with --dataset", "choices": ["linear", "knn", "linear+knn", "finetune", "robustness"]})
    dataset: str | None = field(default=None, metadata={"help": "evaluate on this dataset instead of the run's own (transfer): a name (cifar10, cifar100, stl10, fashion-mnist, catdog) or a folder/.zip; repeat the flag or separate with commas for several"})
    test_fraction: float = field(default=0.2, metadata={"help": "transfer: share of every class held out as the test set when the dataset has no test/val folder", "gt": 0, "lt": 1})
    eval_split: str | None = field(default=None, metadata={"help": "transfer: held-out folder beside train/ (default: test, else val, valid, validation)"})
    strict: bool = field(default=False, metadata={"help": "stop at an unreadable image with an error naming it (default: skip it with a warning)"})
    baseline: Path | None = field(default=None, metadata={"help": "robustness: run folder of the reference model whose eval_robustness.json gives the mCE denominator"})
    corruptions: str = field(default="all", metadata={"help": "robustness: comma-separated corruption names, all (the 10 benchmark ones) or every (with the extras)"})
    corruption_images: int | None = field(default=None, metadata={"help": "robustness: corrupt only a fixed random subset of this many test images (None = all 10,000)", "min": 1})
    label_fraction: float = field(default=1.0, metadata={"help": "share of the training labels used (0.01 and 0.1 for the semi-supervised protocol)", "gt": 0, "max": 1})
    epochs: int = field(default=10, metadata={"help": "fine-tuning epochs", "min": 0})
    batch_size: int = field(default=256, metadata={"help": "fine-tuning batch size", "min": 1})
    lr: float = field(default=0.05, metadata={"help": "fine-tuning peak learning rate (SGD, nesterov)", "gt": 0})
    weight_decay: float = field(default=5e-4, metadata={"help": "fine-tuning weight decay", "min": 0})
    distill_epochs: int = field(default=0, metadata={"help": "finetune: then distil the fine-tuned network into a fresh copy of the backbone on all (unlabelled) training images for this many epochs (SimCLRv2)", "min": 0})
    data_root: Path | None = field(default=None, metadata={"help": "folder holding the datasets (default: the run's, then $SSL_DATA_DIR or ../shared/data)"})
    bf16: bool | None = field(default=None, metadata={"help": "bf16 autocast for the backbone; None = as in pre-training"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda or cuda:N"})
    seed: int = field(default=0, metadata={"help": "seed of the label subset, the probe's validation split and fine-tuning", "min": 0})
    weights: Path | None = field(default=None, metadata={"help": "evaluate this encoder weights file (python -m vision_benchmarks.weights) instead of --run"})
    out: Path | None = field(default=None, metadata={"help": "with --weights: folder for the results (default runs/eval-<file name>)"})
    label_index: Path | None = field(default=None, metadata={"help": "with --label-fraction: label index file to read, or to write when absent (default <results folder>/labels<fraction>_seed<seed>[_<dataset>].json)"})
