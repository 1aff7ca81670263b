"""The pre-training configuration: one dataclass, two presets, method defaults filled in last.

``PretrainConfig`` holds the general fields declared here (data, encoder, schedule, speed and
monitoring) and, between them, one field per setting of the registered methods: each method
declares its own settings with its class (``Method.settings``, see
:mod:`vision_benchmarks.methods.base`), so adding a method never touches this file. Every
field is a flag (``--queue-size``) and a key of ``config.json``.

Order of precedence, lowest first: the dataclass defaults (sized for a CPU), the ``--preset``
(``cpu`` or ``paper``), the command-line flags, and finally, for every method setting left at
``None``, the method's published value (``Method.paper_defaults``, see
:func:`vision_benchmarks.methods.resolve_method_defaults`). The resolved config, with no
``None`` left in the method's settings, is what is saved as ``config.json`` in the run folder.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from vision_benchmarks.methods import METHODS, Method, method_settings, setting_help


@dataclass
class _GeneralFields:
    """The fields before the method settings."""

    method: str = field(default="simclr", metadata={"help": "pre-training method"})  # choices: the registry
    dataset: str = field(default="cifar10", metadata={"help": "dataset name (cifar10, cifar100, stl10, fashion-mnist) or a folder/.zip laid out <split>/<class>/<image>"})
    data_root: Path | None = field(default=None, metadata={"help": "folder holding the datasets (default: $SSL_DATA_DIR or ../shared/data)"})
    train_images: int | None = field(default=None, metadata={"help": "use only this many training images (a fixed random subset); None = all", "min": 1})
    image_size: int = field(default=32, metadata={"help": "side of the (square) augmented views", "min": 8})
    out: Path = field(default=Path("runs/pretrain"), metadata={"help": "run folder (config, logs, checkpoints, plots)",
                                                              "aliases": ["--run-dir"], "nonempty": True})
    resume: bool = field(default=False, metadata={"help": "continue the run in the run folder from its checkpoint.pt; "
                                                         "flags given with it must match the saved config, except "
                                                         "--device, --data-root, --checkpoint-minutes and a longer "
                                                         "--epochs / --minutes"})

    # encoder
    encoder: str = field(default="convnet", metadata={"help": "encoder", "choices": ["convnet", "resnet18", "resnet50"]})
    width: int = field(default=32, metadata={"help": "ConvNet base width, or ResNet width multiplier", "min": 1})
    cifar_stem: bool = field(default=True, metadata={"help": "ResNet: 3x3 stride-1 stem without max-pool"})

    # schedule and optimiser
    epochs: int = field(default=20, metadata={"help": "training epochs (ignored when --minutes is given)", "min": 0})
    minutes: float | None = field(default=None, metadata={"help": "time budget for the training steps (evaluations excluded); replaces --epochs and drives the schedules", "min": 0})
    batch_size: int = field(default=256, metadata={"help": "global batch size (images, before views); split over DDP processes", "min": 1})
    optimizer: str = field(default="adamw", metadata={"help": "optimiser (lars: SGD with momentum and SimCLR's layer-wise trust ratio, core_ssl.lars)", "choices": ["sgd", "adamw", "lars"]})
    lr: float | None = field(default=None, metadata={"help": "peak learning rate; None = 0.06 x batch/256 for sgd, 1.0 x batch/256 for lars, 2e-3 for adamw", "gt": 0})
    weight_decay: float | None = field(default=None, metadata={"help": "weight decay; None = 5e-4 for sgd, 1e-4 for lars and adamw", "min": 0})
    warmup_fraction: float = field(default=0.02, metadata={"help": "share of the run spent in linear learning-rate warm-up before the cosine decay", "min": 0, "lt": 1})


@dataclass
class _RuntimeFields:
    """The fields after the method settings."""

    aug_backend: str = field(default="auto", metadata={"help": "augmentation backend: native ops or kornia.augmentation modules (same distributions); auto = the device's default (docs/benchmarks.md)", "choices": ["auto", "native", "kornia"]})
    bf16: str = field(default="auto", metadata={"help": "bf16 autocast for the networks (losses stay fp32): auto = on where the device runs bf16 natively (CUDA, CPUs with AVX512-BF16 or AMX; about 2x faster there, 10-80x slower where emulated) | on | off", "choices": ["auto", "on", "off"]})
    channels_last: bool = field(default=True, metadata={"help": "channels-last memory format for convolutions"})
    compile: bool = field(default=False, metadata={"help": "compile the encoder with torch.compile (fused kernels around its convolutions, batch norms and activations; the first steps then take a minute or more to compile). Speed only: the same maths up to float rounding, and it may change on --resume"})
    knn_every: int = field(default=1, metadata={"help": "online kNN + collapse monitors every this many epochs (0 = only at the end)", "min": 0})
    knn_train_images: int | None = field(default=10000, metadata={"help": "labelled bank for the online kNN (None = the whole training set)", "min": 1})
    knn_test_images: int | None = field(default=2000, metadata={"help": "test images for the online kNN (None = all)", "min": 1})
    log_every: int = field(default=20, metadata={"help": "log training metrics every this many steps", "min": 1})
    checkpoint_minutes: float = field(default=5.0, metadata={"help": "also checkpoint mid-epoch at this interval (minutes)", "min": 0})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda or cuda:N"})
    strict: bool = field(default=False, metadata={"help": "stop at the first unreadable image of a folder or zip "
                                                         "dataset instead of skipping it with a warning that names it"})
    seed: int = field(default=0, metadata={"help": "random seed (data order, augmentation, initialisation)", "min": 0})


def _fields(cls: type) -> list[tuple[str, typing.Any, typing.Any]]:
    """``(name, type, field)`` of a dataclass, for :func:`dataclasses.make_dataclass`."""
    hints = typing.get_type_hints(cls)
    return [(f.name, hints[f.name], field(default=f.default, metadata=f.metadata)) for f in dataclasses.fields(cls)]


def _setting_fields(methods: Mapping[str, type[Method]]) -> list[tuple[str, typing.Any, typing.Any]]:
    """One field per setting of ``methods``: its type (``| None`` when its default is None), its
    default and its help with every method's published value."""
    fields = []
    for name, setting in method_settings(methods).items():
        kind = setting.kind if setting.default is not None else setting.kind | None
        metadata = {"help": setting_help(name, setting, methods), **dict(setting.bounds)}
        if setting.choices is not None:
            metadata["choices"] = list(setting.choices)
        fields.append((name, kind, field(default=setting.default, metadata=metadata)))
    return fields


def build_pretrain_config(methods: Mapping[str, type[Method]]) -> type:
    """The config dataclass of a method registry: the general fields, then every method setting
    (:func:`vision_benchmarks.methods.method_settings`), then the runtime fields; ``--method``
    chooses among ``methods``."""
    general = [(name, kind, field(default=f.default, metadata={**f.metadata, "choices": list(methods)}))
               if name == "method" else (name, kind, f) for name, kind, f in _fields(_GeneralFields)]
    return dataclasses.make_dataclass(
        "PretrainConfig", [*general, *_setting_fields(methods), *_fields(_RuntimeFields)],
        namespace={"__module__": __name__,
                   "__doc__": "Pre-train an image encoder with one self-supervised (or supervised) method."})


PretrainConfig = build_pretrain_config(METHODS)
"""The config of ``python -m vision_benchmarks.pretrain`` (see the module docstring)."""


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
