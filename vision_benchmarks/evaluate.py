"""Evaluate a pre-trained run's backbone on the labelled train/test split of its dataset.

    python -m vision_benchmarks.evaluate --run runs/simclr --protocol linear
    python -m vision_benchmarks.evaluate --run runs/simclr --protocol knn
    python -m vision_benchmarks.evaluate --run runs/simclr --protocol finetune --epochs 10
    python -m vision_benchmarks.evaluate --run runs/simclr --protocol linear --label-fraction 0.01

Protocols (``vision_benchmarks.protocols``): ``linear`` = L-BFGS logistic regression on frozen
features computed once, L2 chosen on a held-out 10%; ``knn`` = weighted kNN, k = 200, t = 0.1;
``finetune`` = the whole backbone + a linear layer with SGD, optionally followed by SimCLRv2's
self-distillation on the unlabelled training images (``--distill-epochs``). ``--label-fraction`` trains the
classifier on a class-balanced share of the labels (the 1% / 10% semi-supervised protocol); the
kNN bank then holds only those images. ``linear+knn`` runs both on one feature pass.
Writes ``<run>/eval_<protocol>[_labels<fraction>].json``
(and for fine-tuning the per-epoch log under ``<run>/eval_finetune*/``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from core_ssl import checkpoint
from core_ssl.config import load_config, parse_config
from core_ssl.data import load_dataset
from core_ssl.device import resolve_device
from core_ssl.logger import RunLogger

from vision_benchmarks.config import PretrainConfig
from vision_benchmarks.methods import Method, build_method
from vision_benchmarks.protocols import (balanced_label_subset, distill, extract_features, finetune,
                                         knn_top1, linear_probe)


@dataclass
class EvaluateConfig:
    """Evaluate a pre-training run with a linear probe, a kNN classifier or fine-tuning."""

    run: Path = field(default=Path("runs/pretrain"), metadata={"help": "run folder written by vision_benchmarks.pretrain"})
    protocol: str = field(default="linear", metadata={"help": "evaluation protocol (linear+knn: both from one feature pass)", "choices": ["linear", "knn", "linear+knn", "finetune"]})
    label_fraction: float = field(default=1.0, metadata={"help": "share of the training labels used (0.01 and 0.1 for the semi-supervised protocol)"})
    epochs: int = field(default=10, metadata={"help": "fine-tuning epochs"})
    batch_size: int = field(default=256, metadata={"help": "fine-tuning batch size"})
    lr: float = field(default=0.05, metadata={"help": "fine-tuning peak learning rate (SGD, nesterov)"})
    weight_decay: float = field(default=5e-4, metadata={"help": "fine-tuning weight decay"})
    distill_epochs: int = field(default=0, metadata={"help": "finetune: then distil the fine-tuned network into a fresh copy of the backbone on all (unlabelled) training images for this many epochs (SimCLRv2)"})
    data_root: Path | None = field(default=None, metadata={"help": "folder holding the datasets (default: the run's, then $SSL_DATA_DIR or ../shared/data)"})
    bf16: bool | None = field(default=None, metadata={"help": "bf16 autocast for the backbone; None = as in pre-training"})
    device: str = field(default="auto", metadata={"help": "auto, cpu, cuda or cuda:N"})
    seed: int = field(default=0, metadata={"help": "seed of the label subset, the probe's validation split and fine-tuning"})


def load_pretrained(run: Path, device: torch.device, data_root: Path | None = None) -> tuple[Method, PretrainConfig]:
    """The method of a run folder with the weights of its ``last.pt``."""
    cfg = load_config(PretrainConfig, run)
    if data_root is not None:
        cfg.data_root = data_root
    state = checkpoint.load_checkpoint(run / "last.pt", map_location="cpu")
    bank_rows = state["method"].get("bank.bank")  # PIRL's memory bank has one row per training image
    num_train = bank_rows.shape[0] if bank_rows is not None else 1
    num_classes = len(load_dataset(cfg.dataset, "test", root=cfg.data_root).classes)
    method = build_method(cfg, num_classes, num_train)
    method.load_state_dict(state["method"])
    return method.to(device), cfg


def evaluate(ecfg: EvaluateConfig) -> dict[str, Any]:
    """Run one protocol on one run folder; returns (and writes) its record (for ``linear+knn``
    a dict ``{"linear": record, "knn": record}``)."""
    device = resolve_device(ecfg.device)
    method, cfg = load_pretrained(ecfg.run, device, ecfg.data_root)
    bf16 = cfg.bf16 if ecfg.bf16 is None else ecfg.bf16
    train = load_dataset(cfg.dataset, "train", root=cfg.data_root)
    test = load_dataset(cfg.dataset, "test", root=cfg.data_root)
    labelled = balanced_label_subset(train, ecfg.label_fraction, ecfg.seed)
    backbone = method.backbone()
    suffix = "" if ecfg.label_fraction == 1 else f"_labels{ecfg.label_fraction:g}"
    common: dict[str, Any] = {"run": str(ecfg.run), "method": cfg.method, "encoder": cfg.encoder,
                              "label_fraction": ecfg.label_fraction, "labelled_images": len(labelled),
                              "test_images": len(test)}
    records: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    if ecfg.protocol == "finetune":
        with RunLogger(ecfg.run / f"eval_finetune{suffix}") as logger:
            result, teacher = finetune(backbone, method.backbone_dim, labelled, test, device, epochs=ecfg.epochs,
                                       batch_size=ecfg.batch_size, lr=ecfg.lr, weight_decay=ecfg.weight_decay,
                                       bf16=bf16, seed=ecfg.seed, logger=logger)
            records["finetune"] = dict(top1=result["top1"], epochs=ecfg.epochs, lr=ecfg.lr)
            if ecfg.distill_epochs > 0:
                student = distill(teacher, backbone, method.backbone_dim, train, test, device,
                                  epochs=ecfg.distill_epochs, batch_size=ecfg.batch_size, lr=ecfg.lr,
                                  bf16=bf16, seed=ecfg.seed, logger=logger)
                records["finetune"].update(distilled_top1=student["top1"], distill_epochs=ecfg.distill_epochs)
    else:
        train_features = extract_features(backbone, labelled.images, device, bf16)
        test_features = extract_features(backbone, test.images, device, bf16)
        if ecfg.protocol in ("linear", "linear+knn"):
            probe = linear_probe(train_features, labelled.labels, test_features, test.labels,
                                 train.num_classes, seed=ecfg.seed)
            records["linear"] = dict(top1=probe.top1, l2=probe.l2,
                                     validation_top1={str(k): v for k, v in probe.validation.items()})
        if ecfg.protocol in ("knn", "linear+knn"):
            records["knn"] = dict(top1=knn_top1(train_features, labelled.labels, test_features, test.labels,
                                                train.num_classes), k=200, temperature=0.1)
    seconds = round(time.perf_counter() - started, 1)
    for protocol, record in records.items():
        record.update(common, protocol=protocol, seconds=seconds)
        (ecfg.run / f"eval_{protocol}{suffix}.json").write_text(json.dumps(record, indent=2) + "\n")
        print(f"{cfg.method} {protocol}{suffix}: top-1 {record['top1']:.4f}")
    return records[ecfg.protocol] if len(records) == 1 else records


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    return evaluate(parse_config(EvaluateConfig, argv))


if __name__ == "__main__":
    main()
