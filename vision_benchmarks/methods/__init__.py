"""The method registry: name -> class, the settings the methods declare, and their defaults.

==================  ===========================================  ==============
name                what differs                                 uses labels
==================  ===========================================  ==============
rotnet              4-way rotation classification                no
jigsaw              3x3 tiles, 100-permutation classification    no
                    (per-image standardised inputs)
context_encoder     inpainting of hidden regions (+ adversarial)  no
simclr              NT-Xent over two views                       no
simclrv2            SimCLR + 3-layer head, fine-tune from its    no
                    first layer
mocov1 / mocov2     momentum key encoder + queue                 no
pirl                memory bank + Jigsaw invariance, binary NCE  no
                    (per-image standardised inputs)
byol                predictor + EMA target, no negatives         no
supcon              supervised contrastive                       yes
supervised          cross-entropy, same encoder and views        yes
==================  ===========================================  ==============
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from vision_benchmarks.methods.base import Method, MethodConfig, Setting, build_backbone_encoder
from vision_benchmarks.methods.byol import BYOL
from vision_benchmarks.methods.context_encoder import ContextEncoder
from vision_benchmarks.methods.jigsaw import Jigsaw
from vision_benchmarks.methods.moco import MoCo, MoCoV2
from vision_benchmarks.methods.pirl import PIRL
from vision_benchmarks.methods.rotnet import RotNet
from vision_benchmarks.methods.simclr import SimCLR
from vision_benchmarks.methods.simclrv2 import SimCLRv2
from vision_benchmarks.methods.supcon import SupCon
from vision_benchmarks.methods.supervised import Supervised

METHODS: dict[str, type[Method]] = {cls.name: cls for cls in (
    SimCLR, SimCLRv2, SupCon, MoCo, MoCoV2, BYOL, PIRL, RotNet, Jigsaw, ContextEncoder, Supervised)}
"""The registry, name -> class: a new method is its module and its class in this tuple. Its
settings become flags and config fields by themselves (:func:`method_settings`)."""

__all__ = ["METHODS", "Method", "Setting", "build_backbone_encoder", "build_method", "fit_to_training_set",
           "method_settings", "resolve_method_defaults", "setting_help"]


def method_settings(methods: Mapping[str, type[Method]] | None = None) -> dict[str, Setting]:
    """Every setting of ``methods`` (default: the registry), name -> :class:`Setting`, in order.

    Raises:
        TypeError: two methods declare one name differently (one of them must reuse the
            other's declaration, as PIRL reuses Jigsaw's ``permutations``).
    """
    merged: dict[str, Setting] = {}
    owners: dict[str, str] = {}
    for method in (METHODS if methods is None else methods).values():
        for name, setting in method.all_settings().items():
            if name in merged and merged[name] != setting:
                raise TypeError(f"the setting {name!r} is declared differently by {owners[name]} and "
                                f"{method.__name__}; declare it once and reuse the declaration")
            merged.setdefault(name, setting)
            owners.setdefault(name, method.__name__)
    return merged


def setting_help(name: str, setting: Setting, methods: Mapping[str, type[Method]] | None = None) -> str:
    """The flag's help: the setting's text, then the published value of each of ``methods``
    (default: the registry) that has one."""
    values = [f"{method.name} {method.paper_defaults[name]}" for method in (METHODS if methods is None else methods).values()
              if name in method.paper_defaults]
    return f"{setting.help}; None = the method's value ({', '.join(values)})" if values else setting.help


LR_PER_256 = {"sgd": 0.06, "lars": 1.0}
"""The optimisers whose default learning rate scales linearly with the batch: their rate at batch 256."""


def resolve_method_defaults(cfg: MethodConfig) -> MethodConfig:
    """``cfg`` with every method field left at None set to the method's published value, and the
    optimiser's lr and weight decay filled in (sgd: 0.06 x batch/256 and 5e-4, the MoCo CIFAR
    recipe; lars: 1.0 x batch/256 and 1e-4, the official SimCLR code's CIFAR-10 command with its
    linear scaling; adamw: 2e-3 and 1e-4)."""
    if cfg.method not in METHODS:
        raise ValueError(f"unknown method {cfg.method!r}; choose one of {', '.join(METHODS)}")
    filled = {name: value for name, value in METHODS[cfg.method].paper_defaults.items()
              if getattr(cfg, name) is None}
    if cfg.lr is None:
        filled["lr"] = LR_PER_256[cfg.optimizer] * cfg.batch_size / 256 if cfg.optimizer in LR_PER_256 else 2e-3
    if cfg.weight_decay is None:
        filled["weight_decay"] = 5e-4 if cfg.optimizer == "sgd" else 1e-4
    return dataclasses.replace(cfg, **filled)


def build_method(cfg: MethodConfig, num_classes: int, num_train_images: int) -> Method:
    """The method named by ``cfg.method``, built from the resolved config."""
    cfg = resolve_method_defaults(cfg)
    return METHODS[cfg.method](cfg, num_classes, num_train_images)


def fit_to_training_set(cfg: MethodConfig, num_train_images: int) -> MethodConfig:
    """``cfg`` resolved, then adjusted to a training set of ``num_train_images`` images by the
    method (``Method.fit_to_training_set``: MoCo caps its queue, with a warning). Pre-training
    applies it before building the method and saving ``config.json``; evaluation rebuilds the
    method from that saved config, so it is not applied twice."""
    cfg = resolve_method_defaults(cfg)
    return METHODS[cfg.method].fit_to_training_set(cfg, num_train_images)
