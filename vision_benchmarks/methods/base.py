"""The shared machinery every method stands on (solo-learn's ``BaseMethod``, without Lightning).

A method is an ``nn.Module`` whose ``forward(images, labels, indices)`` *is* its training step:
it augments the uint8 batch on the batch's device, runs its networks and returns a dict with
the ``loss`` (and optionally ``embeddings`` = two views' projections for the collapse
monitors, plus any scalars worth logging). Because the step is ``forward``, one DDP wrapper
around the method synchronises every gradient, whatever networks the method holds.

What the base provides, once for all methods:

- the encoder (``build_encoder`` from the config) and :meth:`encode` (channels-last input);
- :meth:`augment`: a batched core_ssl policy run outside autocast with the method's generator;
- :meth:`trainable_parameters` for the optimiser and :meth:`auxiliary_optimizers` for
  anything a method steps itself (the Context Encoder's discriminator);
- :meth:`after_optimizer_step`: the hook for momentum / EMA updates, given the run's progress;
- :meth:`backbone`: the network whose features the evaluation protocols use, with the
  method's input normalisation built in (below);
- ``settings`` and ``paper_defaults``: the method's own settings (below) and the published
  values of the settings it reads;
- :meth:`fit_to_training_set`: config changes a training set's size forces (MoCo's queue).

**One input normalisation per method.** ``input_normalization`` declares what the encoder
sees in training: ``"none"`` (float images in [0, 1], every method but two) or
``"per_image"`` (:func:`core_ssl.augment.standardize_images`: each image, or each Jigsaw tile,
to zero mean and unit variance per channel; Jigsaw and PIRL). :meth:`normalize_input` applies
it: the training step passes every encoder input through it, and :meth:`backbone` wraps the
feature network in it, so feature extraction, the linear probe, kNN and fine-tuning feed the
encoder exactly what it was trained on (uint8 or [0, 1] images in, normalised inside).

**Settings live with the method.** A setting is a field of the pre-training config: the flag
``--<name>`` and the key ``<name>`` of ``config.json``. A method class declares the settings it
introduces in ``settings`` (name -> :class:`Setting`: type, help, choices) and the values it
uses by default in ``paper_defaults``; the base declares the settings several methods share
(temperature, projection sizes, colour strength, blur). ``vision_benchmarks.config`` builds
``PretrainConfig`` from the registered methods' settings, so a new method is one module plus
its line in the registry (``vision_benchmarks.methods``), whatever settings it brings.

``self.cfg`` is completed at construction with every setting the method derives (the head's
hidden width when left unset, whether blur is used), so the saved ``config.json`` states it.

The training loop itself (optimiser, schedules, bf16 autocast, online kNN, logging,
checkpoints, DDP) is :mod:`vision_benchmarks.pretrain`, readable top to bottom.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch
from torch import nn

from core_ssl import distributed
from core_ssl.augment import SimCLRAugment, simclr_augment
from core_ssl.encoders import build_encoder
from core_ssl.weights import INPUT_NORMALIZATIONS  # the normalisations a method may declare, by name

MethodConfig = Any
"""What a method is built from: a :class:`vision_benchmarks.config.PretrainConfig`. That class is
generated from the methods' declared settings, so the methods name it by this alias instead of
importing it: the package's import graph stays acyclic, annotations included."""


@dataclasses.dataclass(frozen=True)
class Setting:
    """A method setting: the config field ``<name>``, flag ``--<name>`` (underscores as dashes).

    ``kind`` is its type (int, float, str or bool), ``help`` the flag's help text, ``choices``
    the values allowed (None = any). ``default`` is the config's default: None (the usual) means
    "the method's published value", filled in from the method's ``paper_defaults`` by
    :func:`vision_benchmarks.methods.resolve_method_defaults`. ``bounds`` are the field's
    declared bounds (``(("gt", 0),)``: ``min`` / ``max`` / ``gt`` / ``lt`` of
    :func:`core_ssl.config.validate_config`), checked before a run starts.
    """

    kind: type
    help: str
    choices: tuple[Any, ...] | None = None
    default: Any = None
    bounds: tuple[tuple[str, Any], ...] = ()


def build_backbone_encoder(cfg: MethodConfig) -> nn.Module:
    """The encoder named in the config: ``convnet`` (width w -> 8w features) or a ResNet."""
    if cfg.encoder == "convnet":
        return build_encoder("convnet", width=cfg.width)
    return build_encoder(cfg.encoder, cifar_stem=cfg.cifar_stem, width=cfg.width)


class NormalizedInput(nn.Module):
    """``network(normalize(x))`` for uint8 or [0, 1] float images ``x``: a backbone with its
    method's input normalisation built in (the evaluation protocols call it on raw images)."""

    def __init__(self, network: nn.Module, normalize: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.network = network
        self.normalize = normalize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(self.normalize(x))


class Method(nn.Module):
    """Base of every pre-training method; see the module docstring for the contract.

    Args:
        cfg: the resolved config (method fields filled in by the method's paper defaults).
        num_classes: classes of the dataset (used by label-using methods).
        num_train_images: size of the training set (PIRL's memory bank has one row per image).
    """

    name: ClassVar[str] = ""
    uses_labels: ClassVar[bool] = False
    settings: ClassVar[dict[str, Setting]] = {
        "temperature": Setting(float, "contrastive temperature", bounds=(("gt", 0),)),
        "proj_hidden": Setting(int, "projection MLP hidden width (SimCLR, SimCLRv2, SupCon, MoCo v2: the encoder's "
                                    "width when unset)", bounds=(("min", 1),)),
        "proj_dim": Setting(int, "projection output size", bounds=(("min", 1),)),
        "color_strength": Setting(float, "SimCLR colour-jitter strength s (0.5 on CIFAR, 1.0 on ImageNet)",
                                  bounds=(("min", 0),)),
        "blur": Setting(bool, "Gaussian blur in the views; None = on for images larger than 32 px (SimCLR omits "
                              "it on CIFAR)"),
    }
    """Settings this class introduces (the base: those several methods read); see the module docstring."""
    paper_defaults: ClassVar[dict[str, Any]] = {}
    """The method's published value of settings it reads, used where the config leaves them None."""
    input_normalization: ClassVar[str] = "none"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        unknown = sorted(set(cls.paper_defaults) - set(cls.all_settings()))
        if unknown:
            raise TypeError(f"{cls.__name__}.paper_defaults sets {unknown}, which no class of it declares; "
                            f"declare them in {cls.__name__}.settings")

    @classmethod
    def all_settings(cls) -> dict[str, Setting]:
        """The settings of this class and of every base class (name -> :class:`Setting`)."""
        merged: dict[str, Setting] = {}
        for klass in reversed(cls.__mro__):
            merged.update(vars(klass).get("settings", {}))
        return merged

    def __init__(self, cfg: MethodConfig, num_classes: int, num_train_images: int) -> None:
        super().__init__()
        if self.input_normalization not in INPUT_NORMALIZATIONS:
            raise ValueError(f"{type(self).__name__}.input_normalization must be one of "
                             f"{tuple(INPUT_NORMALIZATIONS)}, got {self.input_normalization!r}")
        self.cfg = cfg
        self.num_classes = num_classes
        self.num_train_images = num_train_images
        self.encoder = build_backbone_encoder(cfg)
        self.feature_dim: int = self.encoder.feature_dim
        self.cfg = dataclasses.replace(cfg, **self.derived_settings())
        self.generator: torch.Generator | None = None

    @classmethod
    def fit_to_training_set(cls, cfg: MethodConfig, num_train_images: int) -> MethodConfig:
        """``cfg`` adjusted to a training set of ``num_train_images`` (default: unchanged)."""
        return cfg

    def derived_settings(self) -> dict[str, Any]:
        """Config fields left unset that the method fills from the encoder or the image size."""
        return {"blur": self.use_blur}

    # --- shared helpers -------------------------------------------------------------------

    @property
    def use_blur(self) -> bool:
        """Blur in the views: as configured, else only above 32 px (SimCLR's CIFAR recipe)."""
        return self.cfg.blur if self.cfg.blur is not None else self.cfg.image_size > 32

    def simclr_policy(self) -> SimCLRAugment:
        """SimCLR's views at the configured size and colour strength."""
        return simclr_augment(self.cfg.image_size, color_strength=self.cfg.color_strength or 0.5,
                              blur=self.use_blur)

    def augment(self, policy: SimCLRAugment, images: torch.Tensor) -> torch.Tensor:
        """``policy(images)`` in float32 (autocast off), drawn from the method's generator, on
        the configured augmentation backend (``--aug-backend``)."""
        with torch.autocast(device_type=images.device.type, enabled=False):
            return policy(images, self.generator, backend=self.cfg.aug_backend)

    def normalize_input(self, images: torch.Tensor) -> torch.Tensor:
        """The method's one input normalisation (``input_normalization``), for uint8 or [0, 1]
        float images (..., C, H, W): ``"none"`` -> float32 in [0, 1], ``"per_image"`` ->
        :func:`core_ssl.augment.standardize_images`. Training and evaluation both use it."""
        return INPUT_NORMALIZATIONS[self.input_normalization](images)

    def encode(self, images: torch.Tensor, encoder: nn.Module | None = None) -> torch.Tensor:
        """Encoder features (B, feature_dim) of ``normalize_input(views)``, channels-last when
        configured; ``encoder``: another network on the same input (BYOL's online and target
        networks, MoCo's query and key networks), so every method formats its input here once."""
        images = self.normalize_input(images)
        if self.cfg.channels_last and images.dim() == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        return (encoder or self.encoder)(images)

    def random_permutation(self, n: int) -> torch.Tensor:
        """``randperm(n)`` from the method's generator (on the generator's device)."""
        device = self.generator.device if self.generator is not None else None
        return torch.randperm(n, generator=self.generator, device=device)

    @property
    def gather_distributed(self) -> bool:
        """Gather negatives across processes (True under torchrun)."""
        return distributed.world_size() > 1

    # --- what a method may override --------------------------------------------------------

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None,
                indices: torch.Tensor) -> dict[str, Any]:
        """One training step's loss: uint8 images (B, C, H, W), labels (B,), dataset indices (B,)."""
        raise NotImplementedError

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters of the main optimiser (default: every one that requires a gradient)."""
        return [p for p in self.parameters() if p.requires_grad]

    def auxiliary_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Optimisers the method steps itself inside ``forward``; saved in checkpoints."""
        return {}

    @torch.no_grad()
    def after_optimizer_step(self, progress: float) -> None:
        """Called after every optimiser step; ``progress`` in [0, 1] is the share of the run done."""

    def feature_network(self) -> nn.Module:
        """The network whose output is the representation (default: the encoder)."""
        return self.encoder

    def backbone(self) -> nn.Module:
        """What the evaluation protocols read: :meth:`feature_network` fed ``normalize_input``
        of its input (the network itself when the normalisation is ``"none"``: the encoders map
        uint8 to [0, 1] themselves)."""
        network = self.feature_network()
        if self.input_normalization == "none":
            return network
        return NormalizedInput(network, INPUT_NORMALIZATIONS[self.input_normalization])

    @property
    def backbone_dim(self) -> int:
        """Output size of :meth:`backbone`."""
        return self.feature_dim
