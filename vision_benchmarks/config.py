"""The pre-training configuration: one dataclass, two presets, method defaults filled in last.

Order of precedence, lowest first: the dataclass defaults (sized for a CPU), the ``--preset``
(``cpu`` or ``paper``), the command-line flags, and finally, for every method-specific field
left at ``None``, the method's published setting (``Method.paper_defaults``, see
:func:`vision_benchmarks.methods.resolve_method_defaults`). The resolved config, with no
``None`` left in the method fields, is what is saved as ``config.json`` in the run folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

METHOD_NAMES = ("simclr", "simclrv2", "supcon", "mocov1", "mocov2", "byol", "pirl", "rotnet",
                "jigsaw", "context_encoder", "supervised")


@dataclass
class PretrainConfig:
    """Pre-train an image encoder with one self-supervised (or supervised) method."""

    method: str = field(default="simclr", metadata={"help": "pre-training method", "choices": list(METHOD_NAMES)})
    dataset: str = field(default="cifar10", metadata={"help": "dataset name (cifar10, cifar100, stl10, fashion-mnist) or a folder/.zip laid out <split>/<class>/<image>"})
    data_root: Path | None = field(default=None, metadata={"help": "folder holding the datasets (default: $SSL_DATA_DIR or ../shared/data)"})
    train_images: int | None = field(default=None, metadata={"help": "use only this many training images (a fixed random subset); None = all"})
    image_size: int = field(default=32, metadata={"help": "side of the (square) augmented views"})
    out: Path = field(default=Path("runs/pretrain"), metadata={"help": "run folder (config, logs, checkpoints, plots)",
                                                              "aliases": ["--run-dir"]})
    resume: bool = field(default=False, metadata={"help": "continue the run in the run folder from its checkpoint.pt; "
                                                         "flags given with it must match the saved config, except "
                                                         "--device, --data-root, --checkpoint-minutes and a longer "
                                                         "--epochs / --minutes"})

    # encoder
    encoder: str = field(default="convnet", metadata={"help": "encoder", "choices": ["convnet", "resnet18", "resnet50"]})
    width: int = field(default=32, metadata={"help": "ConvNet base width, or ResNet width multiplier"})
    cifar_stem: bool = field(default=True, metadata={"help": "ResNet: 3x3 stride-1 stem without max-pool"})

    # schedule and optimiser
    epochs: int = field(default=20, metadata={"help": "training epochs (ignored when --minutes is given)"})
    minutes: float | None = field(default=None, metadata={"help": "time budget for the training steps (evaluations excluded); replaces --epochs and drives the schedules"})
    batch_size: int = field(default=256, metadata={"help": "global batch size (images, before views); split over DDP processes"})
    optimizer: str = field(default="adamw", metadata={"help": "optimiser", "choices": ["sgd", "adamw"]})
    lr: float | None = field(default=None, metadata={"help": "peak learning rate; None = 0.06 x batch/256 for sgd, 2e-3 for adamw"})
    weight_decay: float | None = field(default=None, metadata={"help": "weight decay; None = 5e-4 for sgd, 1e-4 for adamw"})
    warmup_fraction: float = field(default=0.02, metadata={"help": "share of the run spent in linear learning-rate warm-up before the cosine decay"})

    # method settings: None = the method's published value
    temperature: float | None = field(default=None, metadata={"help": "contrastive temperature (SimCLR 0.5, SupCon 0.1, MoCo v1 0.07, v2 0.2, PIRL 0.07)"})
    proj_hidden: int | None = field(default=None, metadata={"help": "projection MLP hidden width (SimCLR: encoder width; BYOL 4096)"})
    proj_dim: int | None = field(default=None, metadata={"help": "projection output size (128; BYOL 256)"})
    color_strength: float | None = field(default=None, metadata={"help": "SimCLR colour-jitter strength s (0.5 on CIFAR, 1.0 on ImageNet)"})
    blur: bool | None = field(default=None, metadata={"help": "Gaussian blur in the views; None = on for images larger than 32 px (SimCLR omits it on CIFAR)"})
    views: str | None = field(default=None, metadata={"help": "SimCLR / SimCLRv2 / SupCon augmentation ablation (SimCLR Figure 5): the views are made of these one or two transformations, comma-separated, applied in order (crop, cutout, color, sobel, noise, blur, rotate; vision_benchmarks.transforms) instead of the method's policy; None = the method's policy"})
    views_branches: str = field(default="one", metadata={"help": "with --views: one = the transformations make the second view, the first is the image itself (the paper's asymmetric ablation); both = both views draw them independently", "choices": ["one", "both"]})
    proj_layers: int | None = field(default=None, metadata={"help": "SimCLR / SupCon projection head (SimCLR Figure 8): 0 = none (the loss on the encoder's features), 1 = linear, 2 = the MLP, n = n linear layers; None = 2"})
    aug_backend: str = field(default="auto", metadata={"help": "augmentation backend: native ops or kornia.augmentation modules (same distributions); auto = the device's default (docs/benchmarks.md)", "choices": ["auto", "native", "kornia"]})
    key_momentum: float | None = field(default=None, metadata={"help": "MoCo key-encoder momentum m (0.999)"})
    target_momentum: float | None = field(default=None, metadata={"help": "BYOL target EMA base tau, raised to 1 on a cosine (0.996)"})
    queue_size: int | None = field(default=None, metadata={"help": "MoCo queue length (65536); capped at a tenth of the training set (with a warning) so an image rarely meets its own earlier key as a negative"})
    shuffle_bn_splits: int | None = field(default=None, metadata={"help": "MoCo: the key batch is shuffled and normalised in this many groups (shuffling BN; 8 GPUs in MoCo)"})
    bank_negatives: int | None = field(default=None, metadata={"help": "PIRL: memory-bank negatives per step (32000)"})
    bank_momentum: float | None = field(default=None, metadata={"help": "PIRL memory-bank momentum (0.5)"})
    jigsaw_weight: float | None = field(default=None, metadata={"help": "PIRL: weight of the jigsaw term, 1 - weight on the image term (0.5)"})
    pirl_loss: str | None = field(default=None, metadata={"help": "PIRL loss: nce (the paper's binary NCE) or infonce (softmax over the positive and the bank negatives)", "choices": ["nce", "infonce"]})
    permutations: int | None = field(default=None, metadata={"help": "Jigsaw / PIRL: size of the maximal-Hamming permutation set (100)"})
    permutation_rule: str | None = field(default=None, metadata={"help": "Jigsaw / PIRL: greedy rule of the permutation set: average (Noroozi & Favaro's Algorithm 1) or minimum (max-min distance)", "choices": ["average", "minimum"]})
    mask: str | None = field(default=None, metadata={"help": "Context Encoder mask: random_block (1/4 of the image) or center", "choices": ["random_block", "center"]})
    adversarial_weight: float | None = field(default=None, metadata={"help": "Context Encoder adversarial weight (0.001; 0 turns the discriminator off)"})
    discriminator_lr: float | None = field(default=None, metadata={"help": "Context Encoder: the discriminator's Adam learning rate, betas (0.5, 0.999) (2e-4, the official code)"})

    # speed and monitoring
    bf16: str = field(default="auto", metadata={"help": "bf16 autocast for the networks (losses stay fp32): auto = on where the device runs bf16 natively (CUDA, CPUs with AVX512-BF16 or AMX; about 2x faster there, 10-80x slower where emulated) | on | off", "choices": ["auto", "on", "off"]})
    channels_last: bool = field(default=True, metadata={"help": "channels-last memory format for convolutions"})
    knn_every: int = field(default=1, metadata={"help": "online kNN + collapse monitors every this many epochs (0 = only at the end)"})
    knn_train_images: int | None = field(default=10000, metadata={"help": "labelled bank for the online kNN (None = the whole training set)"})
    knn_test_images: int | None = field(default=2000, metadata={"help": "test images for the online kNN (None = all)"})
    log_every: int = field(default=20, metadata={"help": "log training metrics every this many steps"})
    checkpoint_minutes: float = field(default=5.0, metadata={"help": "also checkpoint mid-epoch at this interval"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda or cuda:N"})
    seed: int = field(default=0, metadata={"help": "random seed (data order, augmentation, initialisation)"})


PRESETS: dict[str, dict] = {
    # Minutes per run on a 2-core CPU: the small ConvNet on 32x32 images.
    "cpu": dict(encoder="convnet", width=32, batch_size=256, optimizer="adamw", epochs=20,
                channels_last=True, proj_hidden=512, queue_size=4096, bank_negatives=4096,
                shuffle_bn_splits=4, key_momentum=0.99, knn_train_images=10000, knn_test_images=2000),
    # The SimCLR CIFAR-10 recipe scale: ResNet-18 with the CIFAR stem, batch 512, hundreds of epochs.
    "paper": dict(encoder="resnet18", width=1, cifar_stem=True, batch_size=512, optimizer="sgd", epochs=1000,
                  channels_last=True, knn_train_images=None, knn_test_images=None),
}
"""Named overrides for ``--preset``; method settings not named here keep their paper values."""
