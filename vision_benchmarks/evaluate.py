"""Evaluate a pre-trained run's backbone on its own dataset, on other datasets (transfer), or
under corruptions (robustness).

    python -m vision_benchmarks.evaluate --run runs/simclr --protocol linear
    python -m vision_benchmarks.evaluate --run runs/simclr --protocol knn
    python -m vision_benchmarks.evaluate --run runs/simclr --protocol finetune --epochs 10
    python -m vision_benchmarks.evaluate --run runs/simclr --protocol linear --label-fraction 0.01
    python -m vision_benchmarks.evaluate --run runs/simclr --dataset fashion-mnist --dataset catdog
    python -m vision_benchmarks.evaluate --run runs/simclr --dataset path/to/photos.zip --protocol finetune
    python -m vision_benchmarks.evaluate --run runs/simclr --protocol robustness --baseline runs/supervised
    python -m vision_benchmarks.evaluate --weights docs/weights/vision/simclr.safetensors --protocol linear+knn

Protocols (``vision_benchmarks.protocols``): ``linear`` = L-BFGS logistic regression on frozen
features computed once, L2 chosen on a held-out 10%; ``knn`` = weighted kNN, k = 200, t = 0.1;
``finetune`` = the whole backbone + a linear layer with SGD, optionally followed by SimCLRv2's
self-distillation on the unlabelled training images (``--distill-epochs``). ``--label-fraction`` trains the
classifier on a class-balanced share of the labels (the 1% / 10% semi-supervised protocol); the
kNN bank then holds only those images, and the subset is kept as a label index file
(``<run>/labels<fraction>_seed<seed>[_<dataset>].json``, or ``--label-index``) that later
evaluations read back. ``linear+knn`` runs both on one feature pass. ``--weights FILE``
evaluates an encoder weights file (:mod:`vision_benchmarks.weights`) instead of a run folder;
its results go to ``--out``.
Writes ``<run>/eval_<protocol>[_labels<fraction>].json``
(and for fine-tuning the per-epoch log under ``<run>/eval_finetune*/``).

``--dataset D`` (repeatable, or comma-separated) runs the protocols (default ``linear+knn``) on
other datasets (:mod:`vision_benchmarks.transfer`: named sets, ``catdog``, or any folder / zip
laid out ``train/`` + ``val/`` or ``test/``, or one folder of class sub-folders split by a
seeded fraction), every image resized once to the run's ``image_size`` and converted to the
encoder's channels; it writes ``<run>/eval_transfer_<dataset>[_labels<fraction>].{json,csv}``
and prints a table. ``--protocol robustness`` (:mod:`vision_benchmarks.robustness`) measures the
linear probe's accuracy on corrupted CIFAR-10 test images (CIFAR-10-C style).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from core_ssl import monitor
from core_ssl.cli import UsageError, run_command
from core_ssl.config import parse_config
from core_ssl.data import ImageSet
from core_ssl.device import resolve_bf16, resolve_device
from core_ssl.features import extract_features
from core_ssl.logger import RunLogger

from vision_benchmarks.config import PretrainConfig
from vision_benchmarks.methods import Method
from vision_benchmarks.protocols import balanced_label_subset, distill, finetune, linear_probe
from vision_benchmarks.transfer import TransferData, encoder_input_channels, load_transfer_data
from vision_benchmarks.pretrained import PretrainedBackbone, load_pretrained, open_weights
from vision_benchmarks.datasets import load_run_split


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


def load_evaluated(ecfg: EvaluateConfig, device: torch.device) -> tuple[Method | PretrainedBackbone, PretrainConfig]:
    """What ``--weights`` names (an encoder weights file) or else the ``--run`` folder's method."""
    if ecfg.weights is not None:
        return open_weights(ecfg.weights, device, ecfg.data_root)
    return load_pretrained(ecfg.run, device, ecfg.data_root)


def label_index_file(ecfg: EvaluateConfig, tag: str | None = None) -> Path | None:
    """The label index file of a ``--label-fraction`` below 1 (None at 1): ``--label-index``,
    else ``<results folder>/labels<fraction>_seed<seed>[_<tag>].json``."""
    if ecfg.label_fraction == 1:
        return None
    if ecfg.label_index is not None:
        return ecfg.label_index
    return ecfg.run / f"labels{ecfg.label_fraction:g}_seed{ecfg.seed}{'' if tag is None else '_' + tag}.json"


def run_protocols(ecfg: EvaluateConfig, method: Method | PretrainedBackbone, train: ImageSet, test: ImageSet,
                  device: torch.device, bf16: bool, protocol: str, finetune_dir: Path,
                  label_index: Path | None = None) -> dict[str, dict[str, Any]]:
    """The protocol(s) on one train/test pair: ``{protocol: record}`` with the test top-1 and the
    protocol's settings. The backbone is :meth:`Method.backbone`, which applies the method's
    own input normalisation to the uint8 images. The labelled subset is read from (or saved to)
    ``label_index`` when given.

    Raises:
        ValueError: the training images hold fewer than two classes (every prediction would be
            right by construction, and the top-1 of 1.0 would mean nothing).
    """
    present = sorted({train.classes[i] for i in train.labels.unique().tolist()}) if len(train) else []
    if len(present) < 2:
        raise ValueError(f"the evaluation's training images hold {len(present)} class(es) ({', '.join(present) or 'none'}): "
                         "a classifier would be right by construction (top-1 1.0). Give a dataset with at least two "
                         "classes (one sub-folder per class)")
    labelled = balanced_label_subset(train, ecfg.label_fraction, ecfg.seed, index_file=label_index)
    backbone = method.backbone()
    records: dict[str, dict[str, Any]] = {}
    if protocol == "finetune":
        with RunLogger(finetune_dir) as logger:
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
        if protocol in ("linear", "linear+knn"):
            probe = linear_probe(train_features, labelled.labels, test_features, test.labels,
                                 train.num_classes, seed=ecfg.seed)
            records["linear"] = dict(top1=probe.top1, l2=probe.l2,
                                     validation_top1={str(k): v for k, v in probe.validation.items()})
        if protocol in ("knn", "linear+knn"):
            k = min(200, len(labelled))
            records["knn"] = dict(top1=monitor.knn_accuracy(train_features, labelled.labels, test_features, test.labels,
                                                          train.num_classes, k=k), k=k, temperature=0.1)
    for record in records.values():
        record.update(labelled_images=len(labelled), test_images=len(test))
    return records


def evaluate(ecfg: EvaluateConfig) -> dict[str, Any]:
    """Run one protocol on one run folder; returns (and writes) its record (for ``linear+knn``
    a dict ``{"linear": record, "knn": record}``; with ``--dataset``, :func:`evaluate_transfer`'s
    dict per dataset; for ``robustness``, :func:`vision_benchmarks.robustness.evaluate_robustness`'s
    record)."""
    if ecfg.weights is not None:
        if ecfg.protocol == "robustness":
            raise UsageError("--protocol robustness reads a run folder", "give --run instead of --weights")
        ecfg = dataclasses.replace(ecfg, run=ecfg.out or Path("runs") / f"eval-{ecfg.weights.stem}")
        ecfg.run.mkdir(parents=True, exist_ok=True)
    if ecfg.protocol == "robustness":
        from vision_benchmarks.robustness import evaluate_robustness  # deferred: plotting and corruptions

        if ecfg.dataset:
            raise UsageError("--protocol robustness corrupts the CIFAR-10 test set", "drop --dataset")
        return evaluate_robustness(ecfg)
    if ecfg.dataset:
        return evaluate_transfer(ecfg)
    protocol = ecfg.protocol or "linear"
    device = resolve_device(ecfg.device)
    method, cfg = load_evaluated(ecfg, device)
    bf16 = resolve_bf16(cfg.bf16 if ecfg.bf16 is None else ecfg.bf16, device)
    train = load_run_split(cfg.dataset, "train", root=cfg.data_root, strict=ecfg.strict)
    test = load_run_split(cfg.dataset, "test", root=cfg.data_root, strict=ecfg.strict)
    suffix = "" if ecfg.label_fraction == 1 else f"_labels{ecfg.label_fraction:g}"
    common: dict[str, Any] = {"run": str(ecfg.run), "method": cfg.method, "encoder": cfg.encoder,
                              "label_fraction": ecfg.label_fraction,
                              "weights": None if ecfg.weights is None else str(ecfg.weights)}
    started = time.perf_counter()
    records = run_protocols(ecfg, method, train, test, device, bf16, protocol,
                            ecfg.run / f"eval_finetune{suffix}", label_index_file(ecfg))
    seconds = round(time.perf_counter() - started, 1)
    for name, record in records.items():
        record.update(common, protocol=name, seconds=seconds)
        (ecfg.run / f"eval_{name}{suffix}.json").write_text(json.dumps(record, indent=2) + "\n")
        print(f"{cfg.method} {name}{suffix}: top-1 {record['top1']:.4f}")
    return records[protocol] if len(records) == 1 else records


TABLE_COLUMNS = ("dataset", "layout", "classes", "train", "test", "linear", "knn", "finetune")


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of transfer results (one row per dataset, top-1 per protocol)."""
    cells = [[str(row.get(column, "")) if not isinstance(row.get(column), float) else f"{row[column]:.4f}"
              for column in TABLE_COLUMNS] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(TABLE_COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(TABLE_COLUMNS, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(line, widths)) for line in cells]
    return "\n".join(lines)


def evaluate_transfer(ecfg: EvaluateConfig) -> dict[str, dict[str, Any]]:
    """The protocol(s) (default ``linear+knn``) of a run's backbone on each ``--dataset``.

    Every dataset is loaded with :func:`vision_benchmarks.transfer.load_transfer_data` at the
    run's ``image_size`` and the encoder's input channels. Writes, per dataset,
    ``<run>/eval_transfer_<tag>[_labels<f>].json`` (layout, sizes, one record per protocol) and
    ``.csv`` (one row per protocol), prints a table, and returns ``{tag: record}``.
    """
    protocol = ecfg.protocol or "linear+knn"
    device = resolve_device(ecfg.device)
    method, cfg = load_evaluated(ecfg, device)
    bf16 = resolve_bf16(cfg.bf16 if ecfg.bf16 is None else ecfg.bf16, device)
    channels = encoder_input_channels(method.backbone())
    suffix = "" if ecfg.label_fraction == 1 else f"_labels{ecfg.label_fraction:g}"
    root = ecfg.data_root if ecfg.data_root is not None else cfg.data_root
    results: dict[str, dict[str, Any]] = {}
    rows = []
    for spec in [part.strip() for part in ecfg.dataset.split(",") if part.strip()]:
        started = time.perf_counter()
        data: TransferData = load_transfer_data(spec, cfg.image_size, channels, root=root,
                                                test_fraction=ecfg.test_fraction, seed=ecfg.seed,
                                                eval_split=ecfg.eval_split, strict=ecfg.strict)
        records = run_protocols(ecfg, method, data.train, data.test, device, bf16, protocol,
                                ecfg.run / f"eval_transfer_{data.tag}{suffix}_finetune",
                                label_index_file(ecfg, data.tag))
        record = {"run": str(ecfg.run), "method": cfg.method, "encoder": cfg.encoder,
                  "pretrained_on": cfg.dataset, "dataset": data.name, "layout": data.layout,
                  "classes": data.train.classes, "train_images": len(data.train), "test_images": len(data.test),
                  "image_size": cfg.image_size, "channels": channels, "label_fraction": ecfg.label_fraction,
                  "seed": ecfg.seed, "seconds": round(time.perf_counter() - started, 1), "protocols": records}
        stem = ecfg.run / f"eval_transfer_{data.tag}{suffix}"
        stem.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
        with stem.with_suffix(".csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["run", "method", "pretrained_on", "dataset", "protocol", "top1", "train_images",
                             "test_images", "label_fraction"])
            for name, result in records.items():
                writer.writerow([str(ecfg.run), cfg.method, cfg.dataset, data.name, name, f"{result['top1']:.6f}",
                                 len(data.train), len(data.test), ecfg.label_fraction])
        results[data.tag] = record
        rows.append({"dataset": data.name, "layout": data.layout, "classes": data.train.num_classes,
                     "train": len(data.train), "test": len(data.test),
                     **{name: result["top1"] for name, result in records.items()}})
    print(f"{cfg.method} ({cfg.encoder}, pre-trained on {cfg.dataset}) transferred, top-1{suffix}:")
    print(format_table(rows))
    return results


def gather_repeated(argv: Sequence[str], flag: str) -> list[str]:
    """``argv`` with every ``flag X`` / ``flag=X`` merged into one ``flag X1,X2,...`` (the
    config parser keeps only the last of a repeated flag)."""
    values, rest = [], []
    items = list(argv)
    i = 0
    while i < len(items):
        item = items[i]
        if item == flag and i + 1 < len(items):
            values.append(items[i + 1])
            i += 2
            continue
        if item.startswith(flag + "="):
            values.append(item[len(flag) + 1 :])
        else:
            rest.append(item)
        i += 1
    return rest + ([flag, ",".join(values)] if values else [])


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    return evaluate(parse_config(EvaluateConfig, gather_repeated(argv, "--dataset")))


if __name__ == "__main__":
    run_command(main)
