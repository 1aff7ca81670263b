"""The configuration of each of SimCLR's ablations (``python -m vision_benchmarks.ablate <ablation>``):
one dataclass per ablation, every field a flag whose bounds are declared (:mod:`core_ssl.config`),
so that a flag that cannot work is refused before any folder is created.

The fields shared by every ablation come first (:class:`AblationConfig`), then the pre-training
budget of the ablations that do not vary it (:class:`BudgetConfig`), then the ablation's own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vision_benchmarks.methods.transforms import BRANCHES, TRANSFORM_NAMES

HEAD_LAYERS = {"none": 0, "linear": 1, "mlp": 2}
"""Projection heads by name: their number of linear layers (``--proj-layers``)."""

LR_SCALINGS = ("sqrt", "linear", "none")
"""How the batch ablation scales the preset's learning rate with the batch size."""


@dataclass
class AblationConfig:
    """The flags of every ablation: where its cells go, their seeds, the device, the evaluation."""

    out: Path = field(default=Path("runs/ablate"), metadata={"help": "folder of the cells and results", "nonempty": True})
    seeds: list[int] = field(default_factory=lambda: [0], metadata={"help": "seeds of every cell", "min": 0})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})
    preset: str = field(default="cpu", metadata={"help": "the pre-training preset of every cell: cpu (the small ConvNet) or paper (ResNet-18, CIFAR stem)", "choices": ["cpu", "paper"]})
    report_only: bool = field(default=False, metadata={"help": "rebuild the report from the evaluated cells in --out; train nothing"})
    eval_train_images: int | None = field(default=None, metadata={"help": "labelled images of the linear probe and the kNN bank (a fixed random subset; default all)", "min": 1})
    eval_test_images: int | None = field(default=None, metadata={"help": "test images (a fixed random subset; default all)", "min": 1})


@dataclass
class BudgetConfig(AblationConfig):
    """An ablation whose cells share one pre-training budget: epochs, or minutes instead."""

    epochs: int = field(default=10, metadata={"help": "pre-training epochs per cell", "min": 1})
    minutes: float | None = field(default=None, metadata={"help": "pre-training minutes per cell instead", "gt": 0})


@dataclass
class AugmentationsConfig(BudgetConfig):
    """Augmentation pairs (Figure 5): every ordered pair of ``--transforms``."""

    out: Path = field(default=Path("runs/ablate/augmentations"), metadata={"help": "folder of the cells and results", "nonempty": True})
    transforms: list[str] = field(default_factory=lambda: list(TRANSFORM_NAMES), metadata={"help": "the transformations of the grid", "choices": list(TRANSFORM_NAMES)})
    branches: str = field(default="one", metadata={"help": "one: the pair makes one view, the other is the image (the paper); both: both views", "choices": list(BRANCHES)})


@dataclass
class HeadConfig(BudgetConfig):
    """Projection heads (Figure 8): ``--heads`` across the output sizes ``--dims``."""

    out: Path = field(default=Path("runs/ablate/head"), metadata={"help": "folder of the cells and results", "nonempty": True})
    heads: list[str] = field(default_factory=lambda: list(HEAD_LAYERS), metadata={"help": "projection heads", "choices": list(HEAD_LAYERS)})
    dims: list[int] = field(default_factory=lambda: [32, 64, 128, 256, 512], metadata={"help": "projection output sizes (linear and mlp)", "min": 1})


@dataclass
class BatchConfig(AblationConfig):
    """Batch size x training length (Figure 9): every ``--batch-sizes`` x ``--epoch-grid`` cell."""

    out: Path = field(default=Path("runs/ablate/batch"), metadata={"help": "folder of the cells and results", "nonempty": True})
    batch_sizes: list[int] = field(default_factory=lambda: [64, 128, 256, 512, 1024], metadata={"help": "batch sizes", "min": 1})
    epoch_grid: list[int] = field(default_factory=lambda: [5, 10, 20, 40], metadata={"help": "training lengths in epochs", "min": 1})
    lr_scaling: str = field(default="sqrt", metadata={"help": "learning rate = preset lr x (batch / 256) ** (1/2, 1 or 0)", "choices": list(LR_SCALINGS)})


ABLATION_CONFIGS: dict[str, type[AblationConfig]] = {
    "augmentations": AugmentationsConfig, "head": HeadConfig, "batch": BatchConfig}
"""The config of each ablation, by its sub-command."""
