"""The CIFAR-10 results table: every method with the same encoder and the same CPU time budget.

For each method (plus a randomly initialised encoder): pre-train with the ``cpu`` preset for
``--minutes`` of training time (evaluations excluded), then evaluate the linear probe and the
weighted kNN (k = 200) on the full CIFAR-10 test set, with the whole training set as the
labelled set. Writes into ``--out``: one run folder per method, ``results.json``, ``results.md``
(a markdown table) and ``results.png`` (bar chart). Resumable: finished methods are skipped,
an interrupted pre-training continues from its checkpoint, so it can run across sessions.

    python benchmarks/vision_table.py --minutes 20            # about 5 hours on 2 CPU cores
    python benchmarks/vision_table.py --minutes 0.2 --out runs/table-smoke   # a quick check

Prints one JSON line per method, then the table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vision_benchmarks import evaluate, pretrain  # noqa: E402
from vision_benchmarks.plots import plot_results_bars  # noqa: E402

# (row label, method, uses labels); the random encoder is a 0-epoch run of SimCLR's network.
ROWS = [
    ("random encoder", "random", False),
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


def pretrain_args(method: str, run: Path, minutes: float, device: str, extra: list[str]) -> list[str]:
    """The pre-training command line of one row (resumed when a checkpoint is already there)."""
    if method == "random":
        args = ["--method", "simclr", "--epochs", "0"]
    else:
        args = ["--method", method, "--minutes", str(minutes)]
    args += ["--preset", "cpu", "--out", str(run), "--device", device, *extra]
    if (run / "last.pt").is_file():
        args.append("--resume")
    return args


def run_row(label: str, method: str, uses_labels: bool, out: Path, minutes: float, device: str,
            extra: list[str]) -> dict:
    run = out / method
    result_path = run / "table_row.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    summary = pretrain.main(pretrain_args(method, run, minutes, device, extra))
    frozen = evaluate.main(["--run", str(run), "--protocol", "linear+knn", "--device", device])
    linear, knn = frozen["linear"], frozen["knn"]
    row = {"label": label, "method": method, "uses_labels": uses_labels,
           "linear_top1": linear["top1"], "knn_top1": knn["top1"],
           "train_minutes": summary["train_minutes"], "steps": summary["steps"], "epochs": summary["epochs"],
           "images_per_second": summary["images_per_second"], "final_loss": summary["final_loss"],
           "effective_rank": summary["effective_rank"]}
    result_path.write_text(json.dumps(row, indent=2) + "\n")
    return row


def markdown_table(rows: list[dict], minutes: float) -> str:
    lines = [f"CIFAR-10 test top-1, ConvNet (width 32, 256-d features), {minutes:g} CPU minutes of "
             "pre-training each (`cpu` preset); linear probe = L-BFGS logistic regression on frozen "
             "features of all 50,000 training images; kNN: k = 200, t = 0.1.", "",
             "| method | labels | linear top-1 | kNN top-1 | epochs | steps | images/s |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        speed = "" if r["images_per_second"] is None else f"{r['images_per_second']:.0f}"
        lines.append(f"| {r['label']} | {'yes' if r['uses_labels'] else 'no'} | {r['linear_top1']:.4f} | "
                     f"{r['knn_top1']:.4f} | {r['epochs']:.1f} | {r['steps']} | {speed} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--minutes", type=float, default=20.0, help="pre-training time budget per method")
    parser.add_argument("--out", type=Path, default=Path("runs/vision_table"), help="folder for all runs and the table")
    parser.add_argument("--methods", nargs="*", default=None,
                        help=f"subset of rows to run (default all): {' '.join(m for _, m, _ in ROWS)}")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("pretrain_flags", nargs="*", default=[],
                        help="extra flags for every pre-training run, after a '--' (e.g. -- --knn-every 5)")
    args = parser.parse_args(argv)
    selected = [row for row in ROWS if args.methods is None or row[1] in args.methods]
    unknown = set(args.methods or []) - {m for _, m, _ in ROWS}
    if unknown:
        parser.error(f"unknown method(s) {sorted(unknown)}; choose from {[m for _, m, _ in ROWS]}")
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for label, method, uses_labels in selected:
        row = run_row(label, method, uses_labels, args.out, args.minutes, args.device, args.pretrain_flags)
        print(json.dumps(row), flush=True)
        rows.append(row)
    (args.out / "results.json").write_text(json.dumps({"minutes": args.minutes, "rows": rows}, indent=2) + "\n")
    table = markdown_table(rows, args.minutes)
    (args.out / "results.md").write_text(table)
    plot_results_bars(rows, args.out / "results.png", title=f"CIFAR-10, ConvNet, {args.minutes:g} CPU min each")
    print(table)
    return rows


if __name__ == "__main__":
    main()
