"""CURL's Table 1 at 100k environment steps, run a few runs at a time over several GPU jobs.

    python scripts/rl_table1.py status                       # what is finished, what is left
    python scripts/rl_table1.py next --count 4               # the next runs, as RL_RUNS lines
    RL_RUNS="$(python scripts/rl_table1.py next --count 4)" JOBS=rl bash scripts/gpu_check.sh
    python scripts/rl_table1.py collect OUT/rl_runs.tgz      # finished runs' small files -> results/
    python -m rl_curl.report results/rl_table1               # the table, the aggregate, the profiles

The plan: CURL on the paper's six tasks, pixel SAC and state SAC on cheetah-run,
cartpole-swingup and ball_in_cup-catch, three seeds each, 100,000 environment steps, the paper's
settings (`rl_curl.train`'s paper preset: batch 512 on cheetah-run, 128 elsewhere; the paper's
action repeat and learning rate per task), 10 evaluation episodes every 20,000 steps. A run is
finished when its ``eval.csv`` under the results folder reaches 100,000 steps; ``next`` lists the
unfinished ones, the flagship cheetah-run first, then the tasks whose runs are cheapest (fewest
updates: the largest action repeat).
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rl_curl.envs import DEFAULT_ACTION_REPEAT, PAPER_ACTION_REPEAT  # noqa: E402

TASKS = ("cheetah-run", "cartpole-swingup", "ball_in_cup-catch", "reacher-easy", "finger-spin", "walker-walk")
BASELINE_TASKS = ("cheetah-run", "cartpole-swingup", "ball_in_cup-catch")
SEEDS = (1, 2, 3)
ENV_STEPS = 100_000
RESULTS = ROOT / "results" / "rl_table1"
RUN_FLAGS = f"--total-env-steps {ENV_STEPS} --eval-every 20000 --eval-episodes 10"


@dataclass(frozen=True)
class PlannedRun:
    task: str
    agent: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.task}-{self.agent}-s{self.seed}"

    @property
    def updates(self) -> int:
        """Agent steps = updates of a 100k run: what its GPU time grows with."""
        return ENV_STEPS // PAPER_ACTION_REPEAT.get(self.task, DEFAULT_ACTION_REPEAT)

    def rl_runs_line(self) -> str:
        """One ``name|flags`` line of gpu_check.sh's RL_RUNS."""
        return f"{self.name}|--env {self.task} --agent {self.agent} --seed {self.seed} --preset paper {RUN_FLAGS}"


def plan() -> list[PlannedRun]:
    """Every run of the table: CURL on the six tasks, the two SAC baselines on three, 3 seeds each."""
    runs = [PlannedRun(task, "curl", seed) for task in TASKS for seed in SEEDS]
    runs += [PlannedRun(task, agent, seed) for agent in ("pixel-sac", "state-sac") for task in BASELINE_TASKS
             for seed in SEEDS]
    return runs


def last_step(run_dir: Path) -> int:
    """The last evaluated environment step of a run folder (0 without evaluations)."""
    path = run_dir / "eval.csv"
    if not path.is_file():
        return 0
    with open(path, newline="") as f:
        steps = [int(row["step"]) for row in csv.DictReader(f)]
    return max(steps, default=0)


def pending(results: Path = RESULTS) -> list[PlannedRun]:
    """Unfinished runs, in the order to run them: the flagship cheetah-run CURL seeds first, then
    by fewest updates (largest action repeat), CURL before the baselines, then by seed."""
    todo = [run for run in plan() if last_step(results / run.name) < ENV_STEPS]
    return sorted(todo, key=lambda r: (not (r.task == "cheetah-run" and r.agent == "curl"), r.updates,
                                       r.agent != "curl", r.task, r.agent, r.seed))


def collect(archive: Path, results: Path = RESULTS) -> list[str]:
    """Copy the finished runs of a gpu_check.sh ``rl_runs.tgz`` into ``results`` (their config,
    logs and summaries: ``*.json``, ``*.jsonl``, ``*.csv``); returns the names copied."""
    planned = {run.name for run in plan()}
    copied = []
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(archive) as tar:
        tar.extractall(tmp, filter="data")
        for run_dir in sorted(p for p in Path(tmp).iterdir() if p.is_dir()):
            if run_dir.name not in planned or last_step(run_dir) < ENV_STEPS:
                continue
            target = results / run_dir.name
            target.mkdir(parents=True, exist_ok=True)
            for pattern in ("*.json", "*.jsonl", "*.csv"):
                for path in run_dir.glob(pattern):
                    shutil.copy2(path, target / path.name)
            copied.append(run_dir.name)
    return copied


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="finished and unfinished runs of the plan")
    nxt = sub.add_parser("next", help="the next unfinished runs as gpu_check.sh RL_RUNS lines")
    nxt.add_argument("--count", type=int, default=4, help="how many runs (how many the GPU holds at once)")
    col = sub.add_parser("collect", help="copy the finished runs of an rl_runs.tgz into the results folder")
    col.add_argument("archive", type=Path)
    parser.add_argument("--results", type=Path, default=RESULTS, help="the table's results folder")
    args = parser.parse_args(argv)
    if args.command == "next":
        if args.count < 1:
            parser.error(f"--count must be at least 1, got {args.count}")
        print("\n".join(run.rl_runs_line() for run in pending(args.results)[:args.count]))
    elif args.command == "collect":
        if not args.archive.is_file():
            parser.error(f"{args.archive} does not exist: give the rl_runs.tgz a GPU check brought back")
        copied = collect(args.archive, args.results)
        print(f"copied {len(copied)} finished run(s) into {args.results}: {', '.join(copied) or 'none'}")
    else:
        todo = {run.name for run in pending(args.results)}
        for run in plan():
            state = "left" if run.name in todo else "finished"
            print(f"{run.name:40s} {state:9s} {last_step(args.results / run.name):>7,} steps, {run.updates:,} updates")
        print(f"{len(plan()) - len(todo)} of {len(plan())} finished")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
