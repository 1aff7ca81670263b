"""The Markdown summary of one `scripts/gpu_check.sh` check kept under results/gpu/<name>/.

Reads what the check brought back and nothing else:
  facts.json                 the machine (GPU, torch, CUDA, CPU count)
  check<N>.jsonl             each check's JSON lines, in order
  tests_check<N>.txt         "<test id> <PASSED|FAILED|SKIPPED|ERROR>" per test that finished in check N
  failure_causes.json        {test id: cause} for every failed test, as diagnosed afterwards
  suite.json                 {"commit": ..., "collected": the number of tests the suite had}
  rl/<run>/{config.json, eval.csv, train.csv}   the RL runs that trained beside the tests

    python benchmarks/gpu_check_report.py results/gpu/2026-12-04-h200 > results/gpu/2026-12-04-h200/report.md

(`make reports` rebuilds every such report.)
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def _outcomes(folder: Path) -> dict[int, dict[str, str]]:
    checks = {}
    for path in sorted(folder.glob("tests_check*.txt")):
        number = int(path.stem.removeprefix("tests_check"))
        checks[number] = dict(line.split() for line in path.read_text().splitlines() if line.strip())
    return checks


def tests_section(folder: Path, collected: int | None) -> list[str]:
    checks = _outcomes(folder)
    causes = json.loads((folder / "failure_causes.json").read_text()) if (folder / "failure_causes.json").exists() else {}
    lines = ["| check | workers | ended at | finished tests | passed | failed | skipped | pytest's summary |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for number, outcomes in checks.items():
        record = next(r for r in _jsonl(folder / f"check{number}.jsonl") if r["check"] == "tests")
        counts = {k: sum(v == k for v in outcomes.values()) for k in ("PASSED", "FAILED", "SKIPPED")}
        lines.append(f"| {number} | {record['workers']} | {record['at_s']} s | {len(outcomes)} | {counts['PASSED']} | "
                     f"{counts['FAILED']} | {counts['SKIPPED']} | {record['summary']} |")
    union: dict[str, str] = {}
    for outcomes in checks.values():
        for test, outcome in outcomes.items():
            union[test] = "FAILED" if "FAILED" in (outcome, union.get(test)) else outcome
    failed = sorted(t for t, o in union.items() if o == "FAILED")
    lines += ["", f"Together the checks finished {len(union)} distinct tests"
              + (f" of the {collected} collected" if collected else "")
              + f"; {len(failed)} failed at least once. Causes:"]
    by_cause: dict[str, list[str]] = {}
    for test in failed:
        by_cause.setdefault(causes.get(test, "not diagnosed"), []).append(test)
    for cause, tests in sorted(by_cause.items(), key=lambda item: -len(item[1])):
        lines.append(f"- {cause} ({len(tests)}): " + ", ".join(f"`{t.split('::', 1)[1]}`" for t in tests))
    return lines


def rl_section(folder: Path) -> list[str]:
    lines = ["| run | agent | batch | env steps reached | evaluations (env step: mean return) | "
             "env steps/s, median of the logged windows |", "| --- | --- | ---: | ---: | --- | ---: |"]
    for run in sorted(p for p in (folder / "rl").iterdir() if p.is_dir()):
        config = json.loads((run / "config.json").read_text())
        with open(run / "eval.csv", newline="") as f:
            evals = list(csv.DictReader(f))
        with open(run / "train.csv", newline="") as f:
            train = list(csv.DictReader(f))
        reached = int(train[-1]["step"]) if train else 0
        fps = statistics.median(float(r["fps"]) for r in train) if train else float("nan")
        shown = ", ".join(f"{int(r['step']) // 1000}k: {float(r['return_mean']):.0f}" for r in evals)
        lines.append(f"| {run.name} | {config['agent']} | {config['batch_size']} | {reached:,} | {shown} | {fps:.0f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="results/gpu/<name>")
    args = parser.parse_args(argv)
    facts = json.loads((args.folder / "facts.json").read_text())
    suite = json.loads((args.folder / "suite.json").read_text()) if (args.folder / "suite.json").exists() else {}
    out = [f"# GPU check {args.folder.name}", "",
           f"Machine: {facts.get('gpu', 'no GPU')} ({facts.get('gpu_memory_gib', '?')} GiB), {facts['cpu_count']} CPU "
           f"cores; Python {facts['python']}, torch {facts['torch']} (CUDA {facts['cuda']}, cuDNN {facts.get('cudnn')}), "
           f"kornia {facts['kornia']}, mujoco {facts['mujoco']}; started {facts['when']}.", "",
           "## The test suite with CUDA visible", "", *tests_section(args.folder, suite.get("collected"))]
    if (args.folder / "rl").is_dir():
        out += ["", "## RL runs trained beside the tests (all at once, one GPU)", "", *rl_section(args.folder)]
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
