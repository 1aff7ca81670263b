"""Compare agents across seeds: final-return table with 95% bootstrap intervals, and curves.

    python -m rl_curl.report runs/rl_compare/cartpole-swingup            # a folder of run folders
    python -m rl_curl.report runs/a runs/b runs/c --out docs/results/rl    # or the runs themselves

Every run folder written by ``rl_curl.train`` (``config.json`` + ``eval.jsonl``) is grouped by
task and *arm*: the agent, with ``(official optimizers)`` when ``--optimizers official`` was
used and the auxiliary loss / augmentation when they differ from CURL's. A run's score is the
mean return of its last evaluation (10 episodes); runs that stopped before the arm's longest
run are listed as unfinished and left out of the table, so every compared seed has the same
number of environment steps. Runs that have not reached their ``total_env_steps`` (still
training) are marked "in progress": their row is a snapshot, not a result.

Per arm and task: the number of seeds, the mean and the interquartile mean (IQM, the mean of
the middle 50% of seeds) of the final returns, each with a 95% stratified percentile bootstrap
interval over seeds, as ``rliable`` computes them (``core_ssl.stats``), and the paper's mean +-
std at 100k environment steps beside them (Srinivas et al. 2020, Table 1). The curves plot, per
arm, the mean evaluation return over seeds against environment steps with its 95% bootstrap
band. For every pair of arms of a task, the probability of improvement ``P(A > B)`` over their
seeds (``core_ssl.stats.probability_of_improvement``, rliable's pairwise statistic) with its 95%
bootstrap interval. Outputs, in ``--out`` (default: the first folder given): ``rl_report.md``,
``rl_report.json`` (one record per arm), ``rl_pairs.json`` and ``rl_curves.png``.

Each task's row says whether the paper's 100k mean lies inside our mean's 95% interval
(``inside``), above it or below it (:func:`paper_verdict`); with one seed there is no interval.

Across tasks (when an arm ran on two or more): every final return is divided by 1,000, the most
a DeepMind Control episode can return, giving a (seeds, tasks) matrix of the first ``n`` seeds of
each task (``n`` the arm's smallest seed count); its IQM and mean with 95% stratified bootstrap
intervals (``core_ssl.stats.stratified_bootstrap_interval``, as rliable's
``get_interval_estimates``) and the performance profile ``F(tau)``, the fraction of runs scoring
above ``tau``, with its stratified bootstrap band (``core_ssl.stats.performance_profile``), go to
``rl_aggregate.json``, the report and ``rl_profile.png``.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from core_ssl.checkpoint import atomic_write
from core_ssl.cli import CommandError, run_command
from core_ssl.config import parse_config
from core_ssl.logger import read_jsonl
from core_ssl.plotting import pyplot, save_figure
from core_ssl.stats import (Interval, bootstrap_interval, iqm, performance_profile, probability_of_improvement_interval,
                            stratified_bootstrap_interval)

__all__ = ["PAPER_100K", "DMC_MAX_RETURN", "Run", "find_runs", "arm_of", "summarise", "paper_verdict",
           "aggregate_over_tasks", "main"]

DMC_MAX_RETURN = 1000.0
"""The most a DeepMind Control episode returns (1,000 steps of reward at most 1): the score scale."""

# Srinivas et al. 2020, Table 1, 100k environment steps: mean, std over seeds.
PAPER_100K: dict[str, dict[str, tuple[float, float]]] = {
    "finger-spin": {"curl": (767, 56), "pixel-sac": (179, 66), "state-sac": (811, 46)},
    "cartpole-swingup": {"curl": (582, 146), "pixel-sac": (419, 40), "state-sac": (835, 22)},
    "reacher-easy": {"curl": (538, 233), "pixel-sac": (145, 30), "state-sac": (746, 25)},
    "cheetah-run": {"curl": (299, 48), "pixel-sac": (197, 15), "state-sac": (616, 18)},
    "walker-walk": {"curl": (403, 24), "pixel-sac": (42, 12), "state-sac": (891, 82)},
    "ball_in_cup-catch": {"curl": (769, 43), "pixel-sac": (312, 63), "state-sac": (746, 91)},
}


@dataclass
class Run:
    """One training run: its folder, config and evaluation rows (``step``, ``return_mean``)."""

    path: Path
    config: dict
    evals: list[dict] = field(default_factory=list)

    @property
    def task(self) -> str:
        return self.config["env"]

    @property
    def arm(self) -> str:
        return arm_of(self.config)

    @property
    def final_step(self) -> int:
        return int(self.evals[-1]["step"]) if self.evals else 0

    @property
    def finished(self) -> bool:
        """The run reached its end: it wrote ``summary.json``, or (runs from before summaries
        existed) it evaluated at its ``total_env_steps``."""
        return (self.path / "summary.json").is_file() or self.final_step >= self.config.get("total_env_steps", 1 << 62)

    @property
    def final_return(self) -> float:
        return float(self.evals[-1]["return_mean"])


def arm_of(config: dict) -> str:
    """``curl``, ``curl (official optimizers)``, ``pixel-sac``, ``state-sac``, with the aux loss
    and augmentation named when a CURL-agent run changed them."""
    name = config["agent"]
    if name == "curl":
        extras = [f"aux {config['aux']}"] if config.get("aux", "curl") != "curl" else []
        if config.get("aug", "crop") != "crop":
            extras.append(f"aug {config['aug']}")
        if config.get("optimizers", "joint") == "official":
            extras.append("official optimizers")
        if extras:
            name += f" ({', '.join(extras)})"
    return name


def find_runs(paths: Sequence[str | Path]) -> list[Run]:
    """Run folders among ``paths`` and their sub-folders (any folder holding ``config.json``
    and ``eval.jsonl``), in sorted order."""
    found: list[Run] = []
    for root in map(Path, paths):
        if not root.exists():
            raise FileNotFoundError(f"{root} does not exist: give run folders or a folder that holds them")
        candidates = [root] if (root / "config.json").is_file() else sorted(p.parent for p in root.glob("*/config.json"))
        for folder in candidates:
            evals = read_jsonl(folder / "eval.jsonl")
            if evals:
                found.append(Run(folder, json.loads((folder / "config.json").read_text()), evals))
    if not found:
        raise FileNotFoundError(f"no rl_curl run folder with evaluations under {', '.join(map(str, paths))}")
    return found


def _interval_dict(interval: Interval) -> dict[str, float]:
    return {"point": interval.point, "low": interval.low, "high": interval.high}


def summarise(runs: Sequence[Run], reps: int = 10_000, seed: int = 0) -> list[dict]:
    """One record per (task, arm): seeds, final returns, mean and IQM with 95% intervals, the
    evaluation step, unfinished runs, and the paper's 100k numbers when known."""
    groups: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for run in runs:
        groups[(run.task, run.arm)].append(run)
    records = []
    for (task, arm), members in sorted(groups.items()):
        final_step = max(run.final_step for run in members)
        done = [run for run in members if run.final_step == final_step]
        scores = np.array([run.final_return for run in done])
        record = {"task": task, "arm": arm, "env_steps": final_step, "seeds": len(done),
                  "in_progress": [str(run.path) for run in done if not run.finished],
                  "seed_ids": [run.config.get("seed") for run in done], "returns": scores.tolist(),
                  "unfinished": [str(run.path) for run in members if run.final_step != final_step],
                  "mean": _interval_dict(stratified_bootstrap_interval(scores, np.mean, reps=reps, seed=seed)),
                  "iqm": _interval_dict(stratified_bootstrap_interval(scores, iqm, reps=reps, seed=seed)),
                  "runs": [str(run.path) for run in done]}
        paper = PAPER_100K.get(task, {}).get(arm)
        if paper is not None:
            record["paper_100k"] = {"mean": paper[0], "std": paper[1]}
        records.append(record)
    return records


def paper_verdict(record: dict) -> str | None:
    """Where the paper's 100k mean lies against our mean's 95% interval: ``inside``, ``above ours``,
    ``below ours``; ``1 seed: no interval`` with one seed; ``ours at Nk: not compared`` when our runs
    did not end at 100k environment steps; None when the paper has no number."""
    if "paper_100k" not in record:
        return None
    if record["env_steps"] != 100_000:
        return f"ours at {record['env_steps'] / 1000:g}k: not compared"
    if record["seeds"] < 2:
        return "1 seed: no interval"
    paper, mean = record["paper_100k"]["mean"], record["mean"]
    if paper > mean["high"]:
        return "above ours"
    if paper < mean["low"]:
        return "below ours"
    return "inside"


def aggregate_over_tasks(records: Sequence[dict], reps: int = 10_000, seed: int = 0,
                         taus: np.ndarray | None = None) -> list[dict]:
    """Per arm that ran on two or more tasks: the (seeds, tasks) matrix of final returns / 1,000 over
    the first ``n`` seeds (by seed id) of each task, ``n`` its smallest seed count; the IQM and mean
    with stratified bootstrap intervals, the performance profile at ``taus`` (default 0 to 1 in
    steps of 0.02) with its band, and the paper's mean over the same tasks where it has them all."""
    taus = np.linspace(0.0, 1.0, 51) if taus is None else np.asarray(taus, dtype=np.float64)
    by_arm: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        by_arm[record["arm"]].append(record)
    out = []
    for arm, members in sorted(by_arm.items()):
        if len(members) < 2:
            continue
        members = sorted(members, key=lambda r: r["task"])
        n = min(r["seeds"] for r in members)
        columns = []
        for r in members:
            order = sorted(range(r["seeds"]), key=lambda i: (r["seed_ids"][i] is None, r["seed_ids"][i] or 0))
            columns.append([r["returns"][i] / DMC_MAX_RETURN for i in order[:n]])
        scores = np.array(columns).T  # (n, tasks)
        profile, low, high = performance_profile(scores, taus, reps=min(reps, 2_000), seed=seed)
        record = {"arm": arm, "tasks": [r["task"] for r in members], "seeds_per_task": n,
                  "env_steps": sorted({r["env_steps"] for r in members}), "scores": scores.tolist(),
                  "iqm": _interval_dict(stratified_bootstrap_interval(scores, iqm, reps=reps, seed=seed)),
                  "mean": _interval_dict(stratified_bootstrap_interval(scores, np.mean, reps=reps, seed=seed)),
                  "profile": {"tau": taus.tolist(), "fraction": profile.tolist(), "low": low.tolist(),
                              "high": high.tolist()}}
        papers = [PAPER_100K.get(r["task"], {}).get(arm) for r in members]
        if all(p is not None for p in papers):
            record["paper_100k_mean"] = float(np.mean([p[0] for p in papers]) / DMC_MAX_RETURN)
        out.append(record)
    return out


def aggregate_table(aggregates: Sequence[dict]) -> str:
    """The cross-task aggregates as a Markdown table (scores / 1,000)."""
    lines = ["| arm | tasks | seeds per task | env steps | IQM [95% CI] | mean [95% CI] | paper's mean, same tasks |",
             "| --- | --- | ---: | --- | --- | --- | --- |"]
    for a in aggregates:
        paper = f"{a['paper_100k_mean']:.3f}" if "paper_100k_mean" in a else "-"
        steps = ", ".join(f"{s:,}" for s in a["env_steps"])
        lines.append(f"| {a['arm']} | {', '.join(a['tasks'])} | {a['seeds_per_task']} | {steps} | "
                     f"{_interval_text(a['iqm'], 3)} | {_interval_text(a['mean'], 3)} | {paper} |")
    return "\n".join(lines) + "\n"


def plot_profiles(aggregates: Sequence[dict], path: Path) -> Path:
    """Each arm's performance profile (fraction of runs above tau) with its 95% bootstrap band."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for a in aggregates:
        p = a["profile"]
        line, = ax.plot(p["tau"], p["fraction"], label=f"{a['arm']} ({len(a['tasks'])} tasks x {a['seeds_per_task']} seeds)")
        ax.fill_between(p["tau"], p["low"], p["high"], color=line.get_color(), alpha=0.2)
    ax.set_xlabel("normalised score tau (return / 1,000)")
    ax.set_ylabel("fraction of runs with score > tau")
    ax.set_title("Performance profiles, 95% stratified bootstrap bands", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def _curve(members: Sequence[Run], reps: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Steps every seed evaluated at, the mean return over seeds and its 95% bootstrap band."""
    common = sorted(set.intersection(*({int(r["step"]) for r in run.evals} for run in members)))
    by_step = [{int(r["step"]): float(r["return_mean"]) for r in run.evals} for run in members]
    table = np.array([[returns[s] for returns in by_step] for s in common])  # (steps, seeds)
    bands = [bootstrap_interval(row, np.mean, reps=reps, seed=seed) for row in table]
    return (np.array(common), table.mean(axis=1), np.array([b.low for b in bands]),
            np.array([b.high for b in bands]))


def plot_curves(runs: Sequence[Run], path: Path, reps: int = 2_000, seed: int = 0) -> Path:
    """One panel per task: each arm's mean evaluation return over seeds with its 95% band."""
    tasks = sorted({run.task for run in runs})
    plt = pyplot()
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4.2), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        arms: dict[str, list[Run]] = defaultdict(list)
        for run in runs:
            if run.task == task:
                arms[run.arm].append(run)
        for arm, members in sorted(arms.items()):
            steps, mean, low, high = _curve(members, reps, seed)
            line, = ax.plot(steps, mean, marker="o", markersize=3, label=f"{arm} ({len(members)} seed{'s' if len(members) > 1 else ''})")
            ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.2)
        ax.set_title(f"{task}: mean over seeds, 95% bootstrap band", fontsize=10)
        ax.set_xlabel("environment steps")
        ax.set_ylabel("evaluation return")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def pairwise(records: Sequence[dict], reps: int = 10_000, seed: int = 0) -> list[dict]:
    """For every task and every pair of its arms (in table order) evaluated at the same step:
    the probability of improvement ``P(A > B)`` over their seeds' final returns with its 95%
    bootstrap interval (:func:`core_ssl.stats.probability_of_improvement_interval`)."""
    pairs = []
    for i, a in enumerate(records):
        for b in records[i + 1:]:
            if a["task"] != b["task"] or a["env_steps"] != b["env_steps"]:
                continue
            interval = probability_of_improvement_interval(np.array(a["returns"]), np.array(b["returns"]),
                                                           reps=reps, seed=seed)
            pairs.append({"task": a["task"], "a": a["arm"], "b": b["arm"], "env_steps": a["env_steps"],
                          "seeds": [a["seeds"], b["seeds"]], "p_a_beats_b": _interval_dict(interval)})
    return pairs


def pairwise_table(pairs: Sequence[dict]) -> str:
    """The pairs as a Markdown table."""
    lines = ["| task | A | B | seeds (A, B) | P(A > B) [95% CI] |", "| --- | --- | --- | --- | --- |"]
    for p in pairs:
        q = p["p_a_beats_b"]
        lines.append(f"| {p['task']} | {p['a']} | {p['b']} | {p['seeds'][0]}, {p['seeds'][1]} | "
                     f"{q['point']:.2f} [{q['low']:.2f}, {q['high']:.2f}] |")
    return "\n".join(lines) + "\n"


def _interval_text(interval: dict, digits: int = 1) -> str:
    """``point [low, high]`` with ``digits`` decimals."""
    return f"{interval['point']:.{digits}f} [{interval['low']:.{digits}f}, {interval['high']:.{digits}f}]"


def _fmt(interval: dict, seeds: int) -> str:
    """``point [low, high]``; one seed has no spread to bootstrap, so its value stands alone."""
    if seeds < 2:
        return f"{interval['point']:.1f} (1 seed: no interval)"
    return _interval_text(interval)


def markdown_table(records: Sequence[dict]) -> str:
    """The records as a Markdown table (one row per task and arm)."""
    lines = ["| task | arm | env steps | seeds | mean [95% CI] | IQM [95% CI] | per seed | paper, 100k | paper vs our CI |",
             "| --- | --- | ---: | ---: | --- | --- | --- | --- | --- |"]
    for r in records:
        paper = f"{r['paper_100k']['mean']:.0f} +- {r['paper_100k']['std']:.0f}" if "paper_100k" in r else "-"
        per_seed = ", ".join(f"{x:.0f}" for x in r["returns"])
        steps = f"{r['env_steps']:,}" + (" (in progress)" if r.get("in_progress") else "")
        lines.append(f"| {r['task']} | {r['arm']} | {steps} | {r['seeds']} | {_fmt(r['mean'], r['seeds'])} | "
                     f"{_fmt(r['iqm'], r['seeds'])} | {per_seed} | {paper} | {paper_verdict(r) or '-'} |")
    unfinished = [path for r in records for path in r["unfinished"]]
    if unfinished:
        lines += ["", "Unfinished runs (left out): " + ", ".join(unfinished)]
    return "\n".join(lines) + "\n"


PHASES = ("update", "eval", "render", "sample", "act", "env", "checkpoint", "replay_add")


def phase_table(run: Path, after_step: int | None = None) -> str:
    """Where a run's wall clock went (its ``phases.csv``), summed over the logging intervals
    after ``after_step`` (default: the random-action phase, ``init_steps x action repeat``)."""
    rows = read_jsonl(run / "phases.jsonl")
    if not rows:
        raise FileNotFoundError(f"{run} has no phases.jsonl: it was trained before rl_curl.train logged phases")
    config = json.loads((run / "config.json").read_text())
    if after_step is None:
        from rl_curl.envs import PAPER_ACTION_REPEAT, DEFAULT_ACTION_REPEAT

        repeat = config.get("action_repeat") or PAPER_ACTION_REPEAT.get(config["env"], DEFAULT_ACTION_REPEAT)
        after_step = config.get("init_steps", 0) * repeat
    # the first row after the random phase also holds all the time before it: leave it out
    rows = [r for r in rows if r["step"] > after_step][1:]
    if not rows:
        raise ValueError(f"{run}: no complete logging interval after step {after_step}")
    interval = config.get("log_every", 2000)
    elapsed = sum(interval / r["env_steps_per_second"] for r in rows)
    lines = [f"{run}: environment steps {rows[0]['step'] - interval:,} to {rows[-1]['step']:,}, "
             f"{interval * len(rows) / elapsed:.2f} environment steps/s", "", "| phase | seconds | share |",
             "| --- | ---: | ---: |"]
    for name in PHASES:
        seconds = sum(r[f"{name}_s"] for r in rows)
        lines.append(f"| {name} | {seconds:,.1f} | {seconds / elapsed:.1%} |")
    return "\n".join(lines) + "\n"


@dataclass
class ReportConfig:
    """Compare agents across seeds: final-return table with 95% bootstrap intervals, and curves."""

    paths: list[Path] = field(default_factory=list, metadata={
        "help": "run folders, or folders holding run folders", "positional": True, "metavar": "PATH"})
    out: Path | None = field(default=None, metadata={"help": "output folder (None = the first path)", "nonempty": True})
    reps: int = field(default=10_000, metadata={"help": "bootstrap resamples", "min": 1})
    seed: int = field(default=0, metadata={"help": "seed of the bootstrap", "min": 0})
    phases: bool = field(default=False, metadata={
        "help": "instead: where each run's wall clock went (phases.csv), after its random-action phase"})


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_config(ReportConfig, argv, prog="python -m rl_curl.report")
    if args.phases:
        for run in find_runs(args.paths):
            print(phase_table(run.path))
        return
    try:
        runs = find_runs(args.paths)
    except FileNotFoundError as err:
        raise CommandError(str(err)) from None
    out = args.out or Path(args.paths[0])
    out.mkdir(parents=True, exist_ok=True)
    records = summarise(runs, args.reps, args.seed)
    pairs = pairwise(records, args.reps, args.seed)
    table = markdown_table(records)
    if pairs:
        table += ("\nProbability of improvement (P(A > B) + P(A = B) / 2 over pairs of seeds' final returns; "
                  "0.5 = no difference; 95% bootstrap over the seeds of each arm):\n\n" + pairwise_table(pairs))
    aggregates = aggregate_over_tasks(records, args.reps, args.seed)
    if aggregates:
        table += ("\nAcross tasks (returns / 1,000; the first n seeds of each task; 95% stratified bootstrap "
                  "intervals as rliable computes them; performance profiles in rl_profile.png):\n\n"
                  + aggregate_table(aggregates))
        atomic_write(out / "rl_aggregate.json", lambda f: f.write(json.dumps(aggregates, indent=2).encode()))
        plot_profiles(aggregates, out / "rl_profile.png")
    atomic_write(out / "rl_report.md", lambda f: f.write(table.encode()))
    atomic_write(out / "rl_report.json", lambda f: f.write(json.dumps(records, indent=2).encode()))
    atomic_write(out / "rl_pairs.json", lambda f: f.write(json.dumps(pairs, indent=2).encode()))
    plot_curves(runs, out / "rl_curves.png", seed=args.seed)
    print(table, end="")
    print(f"wrote {out / 'rl_report.md'}, {out / 'rl_report.json'}, {out / 'rl_pairs.json'} and {out / 'rl_curves.png'}",
          file=sys.stderr)


if __name__ == "__main__":
    run_command(main)
