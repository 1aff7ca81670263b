"""The protocols of ``python -m vision_benchmarks.evaluate`` run on one pre-trained backbone:
the chosen protocol on the run's own dataset (:func:`evaluate`), on other datasets
(:func:`evaluate_transfer`), or under corruptions (:mod:`vision_benchmarks.evaluation.robustness`).
The command line, the protocols and the files written are described in
:mod:`vision_benchmarks.evaluate`."""


from __future__ import annotations

import csv
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import torch

from core_ssl import monitor
from core_ssl.cli import UsageError
from core_ssl.data import ImageSet
from core_ssl.device import resolve_bf16, resolve_device
from core_ssl.features import extract_features
from core_ssl.logger import RunLogger

from vision_benchmarks.config import PretrainConfig
from vision_benchmarks.evaluation.config import EvaluateConfig
from vision_benchmarks.methods import Method
from vision_benchmarks.evaluation.protocols import balanced_label_subset, distill, finetune, linear_probe
from vision_benchmarks.evaluation.robustness import evaluate_robustness
from vision_benchmarks.evaluation.transfer import TransferData, encoder_input_channels, load_transfer_data
from vision_benchmarks.pretrained import PretrainedBackbone, load_pretrained, open_weights
from vision_benchmarks.datasets import load_run_split


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
    dict per dataset; for ``robustness``, :func:`vision_benchmarks.evaluation.robustness.evaluate_robustness`'s
    record)."""
    if ecfg.weights is not None:
        if ecfg.protocol == "robustness":
            raise UsageError("--protocol robustness reads a run folder", "give --run instead of --weights")
        ecfg = dataclasses.replace(ecfg, run=ecfg.out or Path("runs") / f"eval-{ecfg.weights.stem}")
        ecfg.run.mkdir(parents=True, exist_ok=True)
    if ecfg.protocol == "robustness":
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

    Every dataset is loaded with :func:`vision_benchmarks.evaluation.transfer.load_transfer_data` at the
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
