"""Robustness protocol: a frozen backbone + linear probe classified on corrupted test images.

The classifier is the linear protocol's (:func:`vision_benchmarks.evaluation.protocols.linear_probe`
picks the L2 strength on held-out training features; the probe is then fit on all of them).
Every test image is corrupted (:mod:`vision_benchmarks.evaluation.corruptions`) at each severity 1 .. 5,
chunk by chunk with a seed derived from (seed, corruption, severity, chunk), and classified:

- accuracy a(c, s) per corruption c and severity s, and the clean accuracy a0;
- corruption error against a baseline model b (Hendrycks & Dietterich 2019, eq. 1):
  ``CE_c = sum_s E(c, s) / sum_s E_b(c, s)`` with ``E = 1 - a``; ``mCE = mean_c CE_c``;
- relative corruption error: ``rCE_c = sum_s (E(c, s) - E0) / sum_s (E_b(c, s) - E_b0)``,
  ``relative mCE = mean_c rCE_c`` (how much accuracy corruption costs, against the baseline's cost);
- a plot of accuracy against severity (0 = clean), averaged over the corruptions, for the run
  and the baseline (as Figure 3 of the SupCon paper), thin lines per corruption.

Over seeds (:func:`robustness_over_seeds`): each model's seed k is scored against the
baseline's seed k (same corrupted images: the corruption seed is fixed), and per model the mean
over seeds of the clean top-1, of the top-1 at each severity (averaged over corruptions) and of
mCE / relative mCE is given with its 95% Student-t interval; :func:`plot_robustness_over_seeds`
draws the severity curves with their bands.

mCE here averages the corruptions implemented, not all 15 of CIFAR-10-C: compare it between
models evaluated by this module, not with published numbers.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core_ssl.device import autocast, resolve_bf16, resolve_device
from core_ssl.features import extract_features
from core_ssl.logger import progress
from core_ssl.plotting import pyplot, save_figure
from core_ssl.stats import format_seed_summary, seed_summary

from vision_benchmarks.evaluation.config import EvaluateConfig
from vision_benchmarks.evaluation.corruptions import SEVERITIES, corrupt, corruption_names
from vision_benchmarks.evaluation.protocols import balanced_label_subset, fit_linear_classifier, linear_probe
from vision_benchmarks.datasets import load_run_split
from vision_benchmarks.pretrained import load_pretrained

RESULT_FILE = "eval_robustness.json"
PLOT_FILE = "robustness.png"


class ProbeClassifier(nn.Module):
    """``linear((backbone(x) - mean) / std)``: a frozen backbone and a linear probe on its
    standardised features, as one classifier of uint8 images."""

    def __init__(self, backbone: nn.Module, mean: torch.Tensor, std: torch.Tensor, linear: nn.Module) -> None:
        super().__init__()
        self.backbone, self.linear = backbone, linear
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.linear((self.backbone(images).float() - self.mean) / self.std)


def fit_probe_classifier(backbone: nn.Module, images: torch.Tensor, labels: torch.Tensor, num_classes: int,
                         device: torch.device, bf16: bool = False, seed: int = 0) -> tuple[ProbeClassifier, float]:
    """The linear protocol's classifier on ``backbone`` features of ``images``: the L2 strength
    chosen by :func:`linear_probe` on a held-out 10%, then a fit on every image. Returns the
    classifier (eval mode) and the chosen L2."""
    features = extract_features(backbone, images, device, bf16)
    labels = labels.to(features.device)
    l2 = linear_probe(features, labels, features[:1], labels[:1], num_classes, seed=seed).l2
    mean, std = features.mean(0), features.std(0).clamp_min(1e-6)
    linear = fit_linear_classifier((features - mean) / std, labels, num_classes, l2)
    return ProbeClassifier(backbone, mean, std, linear).eval(), l2


def chunk_seed(seed: int, name: str, severity: int, chunk: int) -> int:
    """The corruption seed of one chunk: distinct per (seed, corruption, severity, chunk)."""
    return (seed * 1_000_003 + zlib.crc32(name.encode()) * 101 + severity * 7_919 + chunk) % (2**63)


@torch.no_grad()
def robustness_accuracies(classify: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                          labels: torch.Tensor, names: Sequence[str], severities: Sequence[int] = SEVERITIES,
                          seed: int = 0, chunk_size: int = 1000) -> dict[str, Any]:
    """Top-1 of ``classify`` (uint8 batch -> logits) on clean and corrupted ``images``.

    Returns ``{"clean": a0, "accuracy": {name: {severity: a}}}``; chunk k of corruption c at
    severity s is corrupted with :func:`chunk_seed` ``(seed, c, s, k)``.
    """
    labels = labels.cpu()

    def top1(batches: Callable[[int, torch.Tensor], torch.Tensor]) -> float:
        correct = 0
        for k, start in enumerate(range(0, len(images), chunk_size)):
            logits = classify(batches(k, images[start : start + chunk_size]))
            correct += int((logits.argmax(1).cpu() == labels[start : start + chunk_size]).sum())
        return correct / len(images)

    result: dict[str, Any] = {"clean": top1(lambda k, x: x), "accuracy": {}}
    bar = progress(total=len(names) * len(severities), desc="corruptions")
    for name in names:
        result["accuracy"][name] = {}
        for severity in severities:
            result["accuracy"][name][severity] = top1(
                lambda k, x: corrupt(x, name, severity, chunk_seed(seed, name, severity, k)))
            bar.update(1)
    bar.close()
    return result


def corruption_error(errors: Sequence[float], baseline_errors: Sequence[float]) -> float:
    """``CE = sum_s E_s / sum_s E_b,s`` (errors over the same severities)."""
    if len(errors) != len(baseline_errors):
        raise ValueError(f"{len(errors)} model errors against {len(baseline_errors)} baseline errors")
    denominator = sum(baseline_errors)
    if denominator <= 0:
        raise ValueError("the baseline makes no error at any severity: its corruption error is undefined")
    return sum(errors) / denominator


def mean_corruption_error(accuracy: dict[str, dict[Any, float]], baseline: dict[str, dict[Any, float]],
                          clean: float | None = None, baseline_clean: float | None = None) -> dict[str, Any]:
    """mCE (and, given both clean accuracies, the relative mCE) over the corruptions of
    ``accuracy`` (each ``{severity: top1}``), against ``baseline``'s accuracies:

    ``CE_c = sum_s (1 - a_cs) / sum_s (1 - b_cs)``, ``mCE = mean_c CE_c``;
    ``rCE_c = sum_s (a0 - a_cs) / sum_s (b0 - b_cs)``, ``relative mCE = mean_c rCE_c``. rCE_c is
    undefined (None, listed in ``rce_undefined``, left out of the mean) when the corruption does
    not lower the baseline's accuracy on the whole (``sum_s (b0 - b_cs) <= 0``).
    Returns ``{"ce": {c: CE_c}, "mce": ..., ["rce": {...}, "relative_mce": ..., "rce_undefined": [...]]}``.
    """
    missing = sorted(set(accuracy) - set(baseline))
    if missing:
        raise ValueError(f"the baseline has no accuracies for {', '.join(missing)}: evaluate it on the same corruptions")
    ce, rce = {}, {}
    for name, by_severity in accuracy.items():
        severities = sorted(by_severity, key=int)
        base = {int(s): v for s, v in baseline[name].items()}
        if {int(s) for s in severities} != set(base):
            raise ValueError(f"{name}: severities {severities} against the baseline's {sorted(base)}")
        errors = [1 - by_severity[s] for s in severities]
        base_errors = [1 - base[int(s)] for s in severities]
        ce[name] = corruption_error(errors, base_errors)
        if clean is not None and baseline_clean is not None:
            base_cost = [e - (1 - baseline_clean) for e in base_errors]
            # a corruption that costs the baseline nothing (or helps it) has no relative error
            rce[name] = (corruption_error([e - (1 - clean) for e in errors], base_cost) if sum(base_cost) > 0
                         else None)
    result: dict[str, Any] = {"ce": ce, "mce": sum(ce.values()) / len(ce)}
    if rce:
        defined = [v for v in rce.values() if v is not None]
        result.update(rce=rce, relative_mce=sum(defined) / len(defined) if defined else None,
                      rce_undefined=sorted(k for k, v in rce.items() if v is None))
    return result


def mean_by_severity(record: dict[str, Any]) -> list[float]:
    """[clean, mean over corruptions at severity 1, ..., at 5]."""
    accuracy = record["accuracy"]
    severities = sorted({int(s) for by in accuracy.values() for s in by})
    means = [sum(by[str(s)] if str(s) in by else by[s] for by in accuracy.values()) / len(accuracy)
             for s in severities]
    return [record["clean"], *means]


def plot_robustness(curves: dict[str, dict[str, Any]], path: Path) -> Path:
    """Top-1 against corruption severity (0 = clean): the mean over corruptions per model (thick)
    and each corruption of the first model (thin)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for index, (label, record) in enumerate(curves.items()):
        means = mean_by_severity(record)
        line, = ax.plot(range(len(means)), means, marker="o", linewidth=2.5, label=f"{label} (mean)")
        if index == 0:
            for name, by in record["accuracy"].items():
                values = [record["clean"], *[by[key] for key in sorted(by, key=int)]]
                ax.plot(range(len(values)), values, color=line.get_color(), alpha=0.25, linewidth=0.8)
    ax.set_xlabel("corruption severity (0 = clean)")
    ax.set_ylabel("top-1 accuracy")
    ax.set_xticks(range(len(SEVERITIES) + 1))
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("Accuracy under common corruptions")
    return save_figure(fig, path)


def evaluate_robustness(ecfg: EvaluateConfig) -> dict[str, Any]:
    """The robustness protocol on a run (see the module docstring); writes
    ``<run>/eval_robustness.json`` and ``<run>/robustness.png`` and prints a table."""
    device = resolve_device(ecfg.device)
    method, cfg = load_pretrained(ecfg.run, device, ecfg.data_root)
    bf16 = resolve_bf16(cfg.bf16 if ecfg.bf16 is None else ecfg.bf16, device)
    names = corruption_names(ecfg.corruptions)
    train = load_run_split(cfg.dataset, "train", root=cfg.data_root, strict=ecfg.strict)
    test = load_run_split(cfg.dataset, "test", root=cfg.data_root, strict=ecfg.strict)
    if test.images.shape[1] != 3:
        raise ValueError(f"the corruptions are defined on RGB images; {cfg.dataset} has {test.images.shape[1]} channel(s)")
    if ecfg.corruption_images is not None and ecfg.corruption_images < len(test):
        order = torch.randperm(len(test), generator=torch.Generator().manual_seed(ecfg.seed))
        test = test.subset(order[: ecfg.corruption_images].sort().values)
    labelled = balanced_label_subset(train, ecfg.label_fraction, ecfg.seed)
    started = time.perf_counter()
    classifier, l2 = fit_probe_classifier(method.backbone(), labelled.images, labelled.labels, train.num_classes,
                                          device, bf16, ecfg.seed)

    def classify(images: torch.Tensor) -> torch.Tensor:
        with autocast(device, bf16):
            return classifier(images.to(device).contiguous(memory_format=torch.channels_last)).float()

    grid = robustness_accuracies(classify, test.images, test.labels, names, seed=ecfg.seed)
    record: dict[str, Any] = {
        "run": str(ecfg.run), "method": cfg.method, "encoder": cfg.encoder, "dataset": cfg.dataset,
        "protocol": "robustness", "classifier": "linear probe", "l2": l2, "label_fraction": ecfg.label_fraction,
        "test_images": len(test), "seed": ecfg.seed, "corruptions": names, "clean": grid["clean"],
        "accuracy": {name: {str(s): a for s, a in by.items()} for name, by in grid["accuracy"].items()},
    }
    record["mean_by_severity"] = mean_by_severity(record)
    curves = {f"{cfg.method} ({ecfg.run.name})": record}
    if ecfg.baseline is not None:
        baseline_file = Path(ecfg.baseline) / RESULT_FILE
        if not baseline_file.is_file():
            raise FileNotFoundError(f"no {RESULT_FILE} in the baseline run {ecfg.baseline}: run `python -m "
                                    f"vision_benchmarks.evaluate --run {ecfg.baseline} --protocol robustness` first")
        baseline = json.loads(baseline_file.read_text())
        if (baseline.get("test_images"), baseline.get("seed")) != (len(test), ecfg.seed):
            raise ValueError(f"{baseline_file} used {baseline.get('test_images')} test images and seed "
                             f"{baseline.get('seed')}; evaluate both runs with the same --corruption-images and --seed")
        record.update(baseline=str(ecfg.baseline),
                      **mean_corruption_error(record["accuracy"], baseline["accuracy"], record["clean"],
                                              baseline["clean"]))
        curves[f"{baseline.get('method', 'baseline')} ({Path(ecfg.baseline).name}, baseline)"] = baseline
    record["seconds"] = round(time.perf_counter() - started, 1)
    (ecfg.run / RESULT_FILE).write_text(json.dumps(record, indent=2) + "\n")
    plot_robustness(curves, ecfg.run / PLOT_FILE)
    print(format_robustness_table(record))
    return record


def format_robustness_table(record: dict[str, Any]) -> str:
    """Corruption x severity accuracies, their mean, and CE when a baseline was given."""
    header = ["corruption", *[f"s{s}" for s in SEVERITIES], "mean"] + (["CE"] if "ce" in record else [])
    rows = []
    for name, by in record["accuracy"].items():
        values = [by[key] for key in sorted(by, key=int)]
        row = [name, *[f"{v:.4f}" for v in values], f"{sum(values) / len(values):.4f}"]
        if "ce" in record:
            row.append(f"{record['ce'][name]:.3f}")
        rows.append(row)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    relative = record.get("relative_mce")
    lines.append(f"clean top-1 {record['clean']:.4f}" + (f"; mCE {record['mce']:.3f}, relative mCE "
                                                          f"{'undefined' if relative is None else f'{relative:.3f}'}"
                                                          f" against {record['baseline']}" if "mce" in record else ""))
    if record.get("rce_undefined"):
        lines.append(f"relative CE undefined (the corruption does not lower the baseline's accuracy): "
                     f"{', '.join(record['rce_undefined'])}")
    return "\n".join(lines)


def robustness_over_seeds(records: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per model (``{label: [record of each seed]}``, records written by
    :func:`evaluate_robustness`): the mean over seeds and 95% t interval of the clean top-1,
    of the mean top-1 over corruptions at each severity (``by_severity``: clean first) and,
    for records scored against a baseline, of mCE and relative mCE. The baseline's own
    records (no ``mce``) get mCE = relative mCE = 1 by definition; a seed whose relative mCE is
    undefined is left out of that mean (None when no seed has one)."""
    summary = {}
    for label, runs in records.items():
        if not runs:
            raise ValueError(f"{label}: no robustness records")
        curves = [mean_by_severity(r) for r in runs]
        if len({len(c) for c in curves}) != 1:
            raise ValueError(f"{label}: the seeds were evaluated at different severities")
        entry = {"seeds": len(runs), "clean": seed_summary([r["clean"] for r in runs]),
                 "by_severity": [seed_summary([c[i] for c in curves]) for i in range(len(curves[0]))]}
        for key in ("mce", "relative_mce"):
            values = [1.0 if "mce" not in r else r.get(key) for r in runs]
            if key == "mce" and any(v is None for v in values):
                raise ValueError(f"{label}: some seeds have no mce; score every seed against its baseline")
            defined = [v for v in values if v is not None]  # a relative mCE can be undefined (see above)
            entry[key] = seed_summary(defined) if defined else None
        summary[label] = entry
    return summary


def format_robustness_over_seeds(summary: dict[str, dict[str, Any]]) -> str:
    """A Markdown table of :func:`robustness_over_seeds`: one row per model."""
    def cell(value: dict[str, Any] | None, digits: int = 4) -> str:
        return "undefined" if value is None else format_seed_summary(value, digits)

    severities = len(next(iter(summary.values()))["by_severity"]) - 1
    lines = ["| model | seeds | clean top-1 | " + " | ".join(f"severity {s}" for s in range(1, severities + 1))
             + " | mCE | relative mCE |", "| --- | ---: |" + " --- |" * (severities + 3)]
    for label, entry in summary.items():
        lines.append(f"| {label} | {entry['seeds']} | {cell(entry['clean'])} | "
                     + " | ".join(cell(v) for v in entry["by_severity"][1:])
                     + f" | {cell(entry['mce'], 3)} | {cell(entry['relative_mce'], 3)} |")
    return "\n".join(lines) + "\n"


def plot_robustness_over_seeds(summary: dict[str, dict[str, Any]], path: Path, title: str = "") -> Path:
    """Top-1 (mean over corruptions) against severity, 0 = clean: each model's mean over seeds
    with its 95% t band (SupCon paper, Figure 3)."""
    fig, ax = pyplot().subplots(figsize=(6, 4))
    for label, entry in summary.items():
        points = entry["by_severity"]
        x = range(len(points))
        line, = ax.plot(x, [p["mean"] for p in points], marker="o", linewidth=2,
                        label=f"{label} ({entry['seeds']} seeds)")
        if all(p["low"] is not None for p in points):
            ax.fill_between(x, [p["low"] for p in points], [p["high"] for p in points], color=line.get_color(),
                            alpha=0.2)
    ax.set_xlabel("corruption severity (0 = clean)")
    ax.set_ylabel("top-1, mean over corruptions")
    ax.set_xticks(range(len(SEVERITIES) + 1))
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title or "Accuracy under common corruptions (95% t bands over seeds)", fontsize=9)
    return save_figure(fig, path)
