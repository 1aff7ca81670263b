"""The CIFAR-10 results table: every method with the same encoder, budget and seeds.

For each method (plus a randomly initialised encoder) and each ``--seeds`` value: pre-train
with the ``cpu`` preset for ``--epochs`` epochs (or ``--minutes`` of training time, evaluations
excluded; a time budget depends on the machine's load, so seeded comparisons should use
epochs), then evaluate the linear probe and the weighted kNN (k = 200) on the full CIFAR-10
test set, with the whole training set as the labelled set. Per method the table gives the mean
over seeds and its 95% Student-t interval (``core_ssl.stats.t_interval``), and the per-seed
values. Writes into ``--out``: one run folder per method and seed (``<method>-s<seed>``),
``results.json``, ``results.md`` (a markdown table) and ``results.png`` (bars with the 95%
intervals), and ``claims.md`` / ``claims.json``: each of the papers' comparative claims
(``vision_benchmarks.studies.method_claims``) judged on linear and kNN top-1 by Welch's 95% interval of the
difference of the two rows' means (holds / fails / not resolved). Resumable: finished
(method, seed) cells are skipped, an interrupted pre-training continues from its checkpoint,
so it can be stopped and run again later. ``--report-only`` never trains
or evaluates: it rebuilds every table and plot from the cells' saved records, e.g. from the
copies committed under ``results/`` (unfinished cells are listed and left out).

    python benchmarks/vision_table.py --epochs 3 --seeds 0 1 2 --out runs/vision_table_e3
    python benchmarks/vision_table.py --minutes 0.2 --out runs/table-smoke   # a quick check
    python benchmarks/vision_table.py --epochs 2 --seeds 0 1 2 --out results/vision_table_e2 --report-only
    python benchmarks/vision_table.py --epochs 2 --seeds 0 1 2 --out runs/vision_table_e2 \
        --ship docs/weights/vision                                          # + the shipped encoders

With ``--transfer D [D ...]`` (names such as ``fashion-mnist`` and ``catdog``, or folders /
zips) every cell's encoder is also evaluated on each dataset (``vision_benchmarks.evaluate
--run <cell> --dataset D``: linear probe and kNN, images resized once to the encoder's input and
grey ones replicated to RGB; skipped where ``eval_transfer_<tag>.json`` exists) and
``transfer.md`` / ``transfer.json`` give per method and dataset the mean top-1 over seeds with
its 95% t interval, beside the CIFAR-10 columns.

With ``--robustness M [M ...]`` (e.g. ``supcon``) each seed of those methods is probed on
corrupted CIFAR-10 test images (``--corruption-images`` of them, the same corrupted images for
every model) and scored against the same seed of ``--robustness-baseline`` (default the
cross-entropy row): ``robustness.md`` / ``robustness.json`` (clean top-1, top-1 per severity,
mCE and relative mCE, mean over seeds [95% t interval]) and ``robustness.png`` (the severity
curves with their bands).

Prints one JSON line per (method, seed), then the table. With ``--ship DIR``, every method's
median seed by linear top-1 (:func:`median_seed_cells`; the random encoder is not shipped) is
exported with ``vision_benchmarks.weights`` to ``DIR/<method>.safetensors`` and listed in
``DIR/weights.md`` (file, size, run, seed, the run's linear / kNN top-1 and the file's stored
kNN check).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core_ssl.run import find_checkpoint  # noqa: E402
from core_ssl.stats import format_seed_summary, seed_summary  # noqa: E402
from vision_benchmarks import evaluate, pretrain  # noqa: E402
from vision_benchmarks.studies.method_claims import claims_markdown, judge_claims  # noqa: E402
from vision_benchmarks.evaluation.robustness import (RESULT_FILE, format_robustness_over_seeds,  # noqa: E402
                                          plot_robustness_over_seeds, robustness_over_seeds)
from vision_benchmarks.evaluation.transfer import dataset_tag  # noqa: E402
from vision_benchmarks.weights import ExportConfig, export_run  # noqa: E402
from vision_benchmarks.methods import METHODS  # noqa: E402
from vision_benchmarks.studies.plots import plot_results_bars  # noqa: E402

# (row label, method, uses labels); the random encoders are 0-epoch runs: SimCLR's network on the
# images as they are, and PIRL's (the same ConvNet) on per-image standardised images, the input
# Jigsaw and PIRL are trained and scored on.
ROWS = [
    ("random encoder", "random", False),
    ("random encoder, per-image standardised", "random_per_image", False),
    ("RotNet", "rotnet", False),
    ("Jigsaw", "jigsaw", False),
    ("Context Encoder", "context_encoder", False),
    ("SimCLR", "simclr", False),
    ("SimCLRv2", "simclrv2", False),
    ("MoCo v1", "mocov1", False),
    ("MoCo v2", "mocov2", False),
    ("PIRL", "pirl", False),
    ("BYOL", "byol", False),
    ("SupCon", "supcon", True),
    ("supervised (CE)", "supervised", True),
]


RANDOM_ENCODERS = {"random": "simclr", "random_per_image": "pirl"}
"""The random-encoder rows and the method whose network (and input normalisation) each takes."""


def pretrain_args(method: str, run: Path, budget: list[str], seed: int, device: str, extra: list[str]) -> list[str]:
    """The pre-training command line of one cell (resumed when a checkpoint is already there)."""
    if method in RANDOM_ENCODERS:
        args = ["--method", RANDOM_ENCODERS[method], "--epochs", "0"]
    else:
        args = ["--method", method, *budget]
    args += ["--preset", "cpu", "--seed", str(seed), "--out", str(run), "--device", device, *extra]
    if find_checkpoint(run) is not None:
        args.append("--resume")
    return args


def run_row(label: str, method: str, uses_labels: bool, out: Path, budget: list[str], seed: int, device: str,
            extra: list[str], report_only: bool = False) -> dict | None:
    """The cell's ``table_row.json`` record: read back when it exists, else pre-trained and
    evaluated (None under ``report_only``, which never trains)."""
    run = out / f"{method}-s{seed}"
    result_path = run / "table_row.json"
    if result_path.is_file():  # where the cell is now (its folder may have been copied, e.g. into results/)
        return json.loads(result_path.read_text()) | {"run": str(run)}
    if report_only:
        return None
    summary = pretrain.main(pretrain_args(method, run, budget, seed, device, extra))
    frozen = evaluate.main(["--run", str(run), "--protocol", "linear+knn", "--device", device])
    linear, knn = frozen["linear"], frozen["knn"]
    row = {"label": label, "method": method, "seed": seed, "uses_labels": uses_labels, "run": str(run),
           "linear_top1": linear["top1"], "knn_top1": knn["top1"],
           "train_minutes": summary["train_minutes"], "steps": summary["steps"], "epochs": summary["epochs"],
           "images_per_second": summary["images_per_second"], "final_loss": summary["final_loss"],
           "effective_rank": summary["effective_rank"]}
    result_path.write_text(json.dumps(row, indent=2) + "\n")
    return row


def aggregate(cells: list[dict]) -> list[dict]:
    """One row per method: per-seed values, their mean and 95% t interval (none for one seed)."""
    rows: dict[str, dict] = {}
    for cell in cells:
        row = rows.setdefault(cell["method"], {k: cell[k] for k in ("label", "method", "uses_labels")} | {"cells": []})
        row["cells"].append(cell)
    for row in rows.values():
        for key in ("linear_top1", "knn_top1"):
            summary = seed_summary([c[key] for c in row["cells"]])
            row[key], row[f"{key}_seeds"] = summary["mean"], summary["seeds"]
            row[f"{key}_low"], row[f"{key}_high"] = summary["low"], summary["high"]
        row["seeds"] = [c["seed"] for c in row["cells"]]
        for key in ("epochs", "steps", "train_minutes"):
            row[key] = float(np.mean([c[key] for c in row["cells"]]))
        speeds = [c["images_per_second"] for c in row["cells"] if c["images_per_second"] is not None]
        row["images_per_second"] = float(np.mean(speeds)) if speeds else None
    return list(rows.values())


def transfer_cell(cell: dict, dataset: str, device: str, report_only: bool = False) -> dict:
    """The transfer record of one cell on ``dataset`` (read back, or evaluated and written;
    under ``report_only`` a missing record is an error)."""
    path = Path(cell["run"]) / f"eval_transfer_{dataset_tag(dataset)}.json"
    if not path.is_file():
        if report_only:
            raise SystemExit(f"error: {path} is missing: run the table without --report-only to evaluate it")
        evaluate.main(["--run", cell["run"], "--dataset", dataset, "--device", device])
    return json.loads(path.read_text())


def transfer_rows(rows: list[dict], records: dict[tuple[str, int, str], dict], datasets: list[str]) -> list[dict]:
    """Per method: the CIFAR-10 linear / kNN means with intervals (from ``rows``) and, per
    dataset tag, the mean top-1 over seeds of each protocol and its 95% t interval (None with
    one seed). ``records`` maps (method, seed, dataset tag) to a transfer record."""
    table = []
    for row in rows:
        entry = {k: row[k] for k in ("label", "method", "uses_labels", "seeds")}
        entry["cifar10"] = {p: {"mean": row[f"{p}_top1"], "low": row[f"{p}_top1_low"], "high": row[f"{p}_top1_high"]}
                            for p in ("linear", "knn")}
        for dataset in datasets:
            tag = dataset_tag(dataset)
            entry[tag] = {protocol: seed_summary([records[(row["method"], seed, tag)]["protocols"][protocol]["top1"]
                                                  for seed in row["seeds"]])
                          for protocol in ("linear", "knn")}
        table.append(entry)
    return table


def transfer_markdown(table: list[dict], datasets: list[str], budget: str) -> str:
    tags = ["cifar10", *(dataset_tag(d) for d in datasets)]
    lines = [f"Top-1 of frozen encoders pre-trained on CIFAR-10 ({budget} each, `cpu` preset), linear probe / "
             "weighted kNN (k = 200) on each dataset's own training and test split; mean over seeds "
             "[95% t interval].", "",
             "| method | labels | seeds | " + " | ".join(f"{t} linear | {t} kNN" for t in tags) + " |",
             "| --- | --- | ---: |" + " --- | --- |" * len(tags)]
    for entry in table:
        cells = [format_seed_summary(entry[t][p]) for t in tags for p in ("linear", "knn")]
        lines.append(f"| {entry['label']} | {'yes' if entry['uses_labels'] else 'no'} | {len(entry['seeds'])} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def robustness_cell(cell: dict, images: int, device: str, baseline: dict | None = None,
                    report_only: bool = False) -> dict:
    """The robustness record of one cell on ``images`` corrupted test images (read back when it
    was written with that many, else evaluated; under ``report_only`` a missing record is an
    error), scored against ``baseline``'s cell if given."""
    path = Path(cell["run"]) / RESULT_FILE
    if path.is_file():
        record = json.loads(path.read_text())
        scored_against = record.get("baseline")  # compared by folder name: the cells may have been copied
        same_baseline = baseline is None or (scored_against is not None
                                             and Path(scored_against).name == Path(baseline["run"]).name)
        if record.get("test_images") == images and same_baseline:
            return record
    if report_only:
        raise SystemExit(f"error: {path} holds no robustness record on {images} images"
                         + ("" if baseline is None else f" against {Path(baseline['run']).name}")
                         + ": run the table without --report-only to evaluate it")
    flags = ["--run", cell["run"], "--protocol", "robustness", "--corruption-images", str(images), "--seed", "0",
             "--device", device]
    return evaluate.main(flags + ([] if baseline is None else ["--baseline", baseline["run"]]))


def run_robustness(cells: list[dict], methods: list[str], baseline_method: str, images: int, device: str,
                   out: Path, report_only: bool = False) -> str:
    """Every seed of ``methods`` against the same seed of ``baseline_method``; writes
    ``robustness.{json,md,png}`` into ``out`` and returns the markdown."""
    by_key = {(c["method"], c["seed"]): c for c in cells}
    labels = {c["method"]: c["label"] for c in cells}
    missing = [m for m in [baseline_method, *methods] if m not in labels]
    if missing:
        raise SystemExit(f"error: --robustness needs rows {missing} in the table; add them to --methods")
    records: dict[str, list[dict]] = {labels[baseline_method] + " (baseline)": []}
    for method in methods:
        records.setdefault(labels[method], [])
    for seed in sorted(seed for method, seed in by_key if method == baseline_method):
        base = by_key[(baseline_method, seed)]
        records[labels[baseline_method] + " (baseline)"].append(robustness_cell(base, images, device,
                                                                                report_only=report_only))
        for other in methods:
            if (other, seed) in by_key and other != baseline_method:
                records[labels[other]].append(robustness_cell(by_key[(other, seed)], images, device, base,
                                                              report_only))
    summary = robustness_over_seeds({k: v for k, v in records.items() if v})
    (out / "robustness.json").write_text(json.dumps({"corruption_images": images, "models": summary}, indent=2) + "\n")
    plot_robustness_over_seeds(summary, out / "robustness.png")
    text = (f"Corrupted CIFAR-10 test images ({images} images x 10 corruptions x 5 severities), linear probe on "
            "frozen features; each seed against the baseline's same seed; mean over seeds [95% t interval].\n\n"
            + format_robustness_over_seeds(summary))
    (out / "robustness.md").write_text(text)
    return text


def median_seed_cells(rows: list[dict], key: str = "linear_top1") -> dict[str, dict]:
    """Per method (the random encoders left out), the cell whose ``key`` is the median over its
    seeds; with an even number of seeds, the lower of the two middle cells. Ties keep the
    smaller seed."""
    chosen = {}
    for row in rows:
        if row["method"] in RANDOM_ENCODERS:
            continue
        cells = sorted(row["cells"], key=lambda c: (c[key], c["seed"]))
        chosen[row["method"]] = cells[(len(cells) - 1) // 2]
    return chosen


def shipping_note(row: dict, rows: list[dict]) -> str:
    """What a shipped encoder is (not) good for, where the table says so: a method whose mean
    linear top-1 over seeds is below that of the random encoder scored on the same input (per-image
    standardised for Jigsaw and PIRL, as they are) is no better a starting point than a random
    initialisation. Empty when there is nothing to warn about."""
    baseline = "random_per_image" if METHODS[row["method"]].input_normalization == "per_image" else "random"
    random = next((r for r in rows if r["method"] == baseline), None)
    if random is None or row["linear_top1"] >= random["linear_top1"]:
        return ""
    on_input = ", on per-image standardised images as this method is probed" if baseline == "random_per_image" else ""
    return (f"**below the random encoder** (linear top-1 {row['linear_top1']:.3f} against "
            f"{random['linear_top1']:.3f}{on_input}, mean over seeds): not a useful starting point "
            "(what is known of why: docs/vision_benchmarks.md, Known limits)")


def ship_weights(rows: list[dict], folder: Path) -> str:
    """Export the median-seed encoder of every method into ``folder`` and write ``weights.md``,
    the list of what ships; returns that markdown."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["| method | file | MB | run (seed) | linear top-1 | kNN top-1 | stored kNN check | note |",
             "| --- | --- | ---: | --- | ---: | ---: | ---: | --- |"]
    by_method = {r["method"]: r for r in rows}
    for method, cell in median_seed_cells(rows).items():
        path = folder / f"{method}.safetensors"
        result = export_run(ExportConfig(run=Path(cell["run"]), out=path))
        lines.append(f"| {cell['label']} | `{path.name}` | {result['megabytes']:.2f} | `{Path(cell['run']).name}` "
                     f"({cell['seed']}) | {cell['linear_top1']:.4f} | {cell['knn_top1']:.4f} | "
                     f"{result['knn_check']['top1']:.4f} | {shipping_note(by_method[method], rows)} |")
    text = ("The median seed (by linear top-1) of every method of the table, exported with "
            "`python -m vision_benchmarks.weights`; the stored kNN check is the weighted kNN top-1 "
            "(k = 200) of the stored fp16 weights on 1,000 test images against a 2,000-image bank.\n\n"
            + "\n".join(lines) + "\n")
    (folder / "weights.md").write_text(text)
    return text


def _cell(row: dict, key: str) -> str:
    if row[f"{key}_low"] is None:
        return f"{row[key]:.4f}"
    return f"{row[key]:.4f} [{row[f'{key}_low']:.4f}, {row[f'{key}_high']:.4f}]"


def markdown_table(rows: list[dict], budget: str) -> str:
    lines = [f"CIFAR-10 test top-1, ConvNet (width 32, 256-d features), {budget} of pre-training each "
             "(`cpu` preset); linear probe = L-BFGS logistic regression on frozen features of all 50,000 "
             "training images; kNN: k = 200, t = 0.1. Mean over seeds [95% t interval].", "",
             "| method | labels | seeds | linear top-1 | kNN top-1 | linear per seed | epochs | steps | images/s |",
             "| --- | --- | ---: | --- | --- | --- | ---: | ---: | ---: |"]
    for r in rows:
        speed = "" if r["images_per_second"] is None else f"{r['images_per_second']:.0f}"
        per_seed = ", ".join(f"{v:.3f}" for v in r["linear_top1_seeds"])
        lines.append(f"| {r['label']} | {'yes' if r['uses_labels'] else 'no'} | {len(r['seeds'])} | "
                     f"{_cell(r, 'linear_top1')} | {_cell(r, 'knn_top1')} | {per_seed} | {r['epochs']:.1f} | "
                     f"{r['steps']:.0f} | {speed} |")
    return "\n".join(lines) + "\n"


def write_claims(rows: list[dict], budget: str, out: Path) -> str:
    """``claims.json`` and ``claims.md`` in ``out``: the papers' claims judged on linear and kNN
    top-1 (only those whose rows have two seeds or more); returns the markdown."""
    judged = {key: judge_claims(rows, key) for key in ("linear_top1", "knn_top1")}
    (out / "claims.json").write_text(json.dumps({"budget": budget, **judged}, indent=2) + "\n")
    text = "\n".join(claims_markdown(judged[key], f"{name}, {budget} of pre-training each:")
                      for key, name in (("linear_top1", "Linear top-1"), ("knn_top1", "kNN top-1")))
    (out / "claims.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=int, default=None, help="pre-training epochs per method and seed")
    budget.add_argument("--minutes", type=float, default=None,
                        help="pre-training time budget per method and seed (default 20 when --epochs is not given)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds per method")
    parser.add_argument("--out", type=Path, default=Path("runs/vision_table"), help="folder for all runs and the table")
    parser.add_argument("--methods", nargs="*", default=None,
                        help=f"subset of rows to run (default all): {' '.join(m for _, m, _ in ROWS)}")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--transfer", nargs="+", default=[], metavar="DATASET",
                        help="also evaluate every cell on these datasets (e.g. fashion-mnist catdog, or a folder / zip)")
    parser.add_argument("--robustness", nargs="+", default=[], metavar="METHOD",
                        help="also score these methods on corrupted test images against --robustness-baseline")
    parser.add_argument("--robustness-baseline", default="supervised", help="the mCE denominator's method")
    parser.add_argument("--corruption-images", type=int, default=2000,
                        help="corrupted test images per corruption and severity (a fixed random subset)")
    parser.add_argument("--ship", type=Path, default=None,
                        help="also export every method's median-seed encoder into this folder (with weights.md)")
    parser.add_argument("--report-only", action="store_true",
                        help="never pre-train or evaluate: rebuild the tables and plots from the cells' saved "
                             "records (e.g. --out results/vision_table_e2); unfinished cells are listed and left out")
    parser.add_argument("pretrain_flags", nargs="*", default=[],
                        help="extra flags for every pre-training run, after a '--' (e.g. -- --knn-every 5)")
    args = parser.parse_args(argv)
    selected = [row for row in ROWS if args.methods is None or row[1] in args.methods]
    unknown = set(args.methods or []) - {m for _, m, _ in ROWS}
    if unknown:
        parser.error(f"unknown method(s) {sorted(unknown)}; choose from {[m for _, m, _ in ROWS]}")
    if args.report_only and args.ship is not None:
        parser.error("--ship exports weights from the runs' checkpoints: run it without --report-only")
    if args.epochs is not None:
        budget, budget_text = ["--epochs", str(args.epochs)], f"{args.epochs} epochs"
    else:
        minutes = 20.0 if args.minutes is None else args.minutes
        budget, budget_text = ["--minutes", str(minutes)], f"{minutes:g} CPU minutes"
    args.out.mkdir(parents=True, exist_ok=True)
    cells, unfinished = [], []
    for seed in args.seeds:  # seed-major: every method gets its first seed before any gets a second
        for label, method, uses_labels in selected:
            cell = run_row(label, method, uses_labels, args.out, budget, seed, args.device, args.pretrain_flags,
                           args.report_only)
            if cell is None:
                unfinished.append(f"{method}-s{seed}")
                continue
            print(json.dumps(cell), flush=True)
            cells.append(cell)
    if unfinished:
        print(f"note: {len(unfinished)} cell(s) not finished, left out: {' '.join(unfinished)}", file=sys.stderr)
    if not cells:
        raise SystemExit(f"error: no finished cell in {args.out}: run the table without --report-only first")
    rows = aggregate(cells)
    (args.out / "results.json").write_text(json.dumps({"budget": budget_text, "seeds": args.seeds, "rows": rows},
                                                      indent=2) + "\n")
    table = markdown_table(rows, budget_text)
    (args.out / "results.md").write_text(table)
    plot_results_bars(rows, args.out / "results.png", title=f"CIFAR-10, ConvNet, {budget_text} each, "
                      f"{len(args.seeds)} seed(s), 95% t intervals")
    print(table)
    print(write_claims(rows, budget_text, args.out))
    if args.transfer:
        records = {(cell["method"], cell["seed"], dataset_tag(dataset)):
                   transfer_cell(cell, dataset, args.device, args.report_only)
                   for cell in cells for dataset in args.transfer}
        transfer = transfer_rows(rows, records, args.transfer)
        (args.out / "transfer.json").write_text(json.dumps({"budget": budget_text, "datasets": args.transfer,
                                                            "rows": transfer}, indent=2) + "\n")
        text = transfer_markdown(transfer, args.transfer, budget_text)
        (args.out / "transfer.md").write_text(text)
        print(text)
    if args.robustness:
        print(run_robustness(cells, args.robustness, args.robustness_baseline, args.corruption_images, args.device,
                             args.out, args.report_only))
    if args.ship is not None:
        print(ship_weights(rows, args.ship))
    return rows


if __name__ == "__main__":
    main()
