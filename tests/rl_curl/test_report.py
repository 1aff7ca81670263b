"""rl_curl.report on fake run folders: grouping, final scores, intervals, table and plot."""

import json

import numpy as np
import pytest

from core_ssl.cli import run_command

from core_ssl.stats import iqm, performance_profile, stratified_bootstrap_interval
from rl_curl.report import aggregate_over_tasks, arm_of, find_runs, main, paper_verdict, summarise


def _fake_run(folder, agent, seed, returns, steps=(0, 5000, 10000), env="cartpole-swingup", **config):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"env": env, "agent": agent, "seed": seed,
                                                    "aux": "curl", "aug": "crop", **config}))
    rows = [{"stream": "eval", "step": s, "return_mean": r} for s, r in zip(steps, returns)]
    (folder / "eval.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


@pytest.fixture
def sweep(tmp_path):
    root = tmp_path / "sweep"
    finals = {"curl": [300.0, 420.0, 510.0], "pixel-sac": [250.0, 260.0, 380.0]}
    for agent, values in finals.items():
        for seed, final in enumerate(values, start=1):
            _fake_run(root / f"{agent}-s{seed}", agent, seed, [30.0, final / 2, final])
    _fake_run(root / "curl-official-s1", "curl", 1, [25.0, 100.0, 200.0], optimizers="official")
    _fake_run(root / "pixel-sac-s4", "pixel-sac", 4, [28.0, 90.0], steps=(0, 5000))  # killed early
    return root, finals


def test_arms_name_what_differs_from_curl():
    assert arm_of({"agent": "curl", "aux": "curl", "aug": "crop", "optimizers": "joint"}) == "curl"
    assert arm_of({"agent": "curl", "aux": "curl", "optimizers": "official"}) == "curl (official optimizers)"
    assert arm_of({"agent": "curl", "aux": "byol", "aug": "shift"}) == "curl (aux byol, aug shift)"
    assert arm_of({"agent": "state-sac", "optimizers": "official"}) == "state-sac"


def test_summary_matches_a_direct_computation(sweep):
    root, finals = sweep
    records = {r["arm"]: r for r in summarise(find_runs([root]), reps=2000, seed=7)}
    assert set(records) == {"curl", "pixel-sac", "curl (official optimizers)"}
    for arm, values in finals.items():
        r = records[arm]
        assert r["seeds"] == 3 and r["env_steps"] == 10000
        assert sorted(r["returns"]) == sorted(values)
        assert r["mean"]["point"] == pytest.approx(np.mean(values))
        expected = stratified_bootstrap_interval(np.array(r["returns"]), np.mean, reps=2000, seed=7)
        assert (r["mean"]["low"], r["mean"]["high"]) == pytest.approx((expected.low, expected.high))
        assert r["iqm"]["point"] == pytest.approx(iqm(np.array(values)))
        assert min(values) <= r["mean"]["low"] <= r["mean"]["high"] <= max(values)
    assert records["curl"]["paper_100k"] == {"mean": 582, "std": 146}
    assert records["pixel-sac"]["unfinished"] == [str(root / "pixel-sac-s4")]
    assert "paper_100k" not in records["curl (official optimizers)"]


def test_command_writes_table_json_and_plot(sweep, tmp_path, capsys):
    root, _ = sweep
    out = tmp_path / "report"
    main([str(root), "--out", str(out), "--reps", "500"])
    table = (out / "rl_report.md").read_text()
    assert "| cartpole-swingup | curl | 10,000 (in progress) | 3 | 410.0 [" in table
    assert "582 +- 146" in table and "Unfinished runs" in table
    # one seed has no spread: its value stands without a degenerate [x, x] interval
    assert "| curl (official optimizers) | 10,000 (in progress) | 1 | 200.0 (1 seed: no interval) |" in table
    assert "10,000 (in progress)" in table  # the fake runs wrote no summary.json
    assert json.loads((out / "rl_report.json").read_text())[0]["task"] == "cartpole-swingup"
    assert (out / "rl_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert table in capsys.readouterr().out


def test_no_runs_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_command(main, [str(tmp_path)])
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.strip().startswith("error: ")


def test_phase_table_sums_the_intervals_after_the_random_phase(tmp_path, capsys):
    run = tmp_path / "run"
    _fake_run(run, "curl", 1, [30.0, 60.0, 90.0], init_steps=10, action_repeat=8, log_every=100)
    names = ("act", "sample", "update", "env", "render", "replay_add", "eval", "checkpoint")
    rows = []
    for step, update in ((108, 999.0), (208, 6.0), (308, 8.0)):  # 108 holds the random phase: left out
        row = {"stream": "phases", "step": step, "env_steps_per_second": 10.0, "other_share": 0.0}
        row.update({f"{n}_s": 0.0 for n in names})
        row.update(update_s=update, render_s=10.0 - update if update < 10 else 0.0)
        rows.append(row)
    (run / "phases.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    main([str(run), "--phases"])
    out = capsys.readouterr().out
    assert "environment steps 108 to 308, 10.00 environment steps/s" in out
    assert "| update | 14.0 | 70.0% |" in out and "| render | 6.0 | 30.0% |" in out


def test_pairwise_probability_of_improvement_matches_the_pair_count(sweep, tmp_path):
    """P(A > B) is the share of (seed of A, seed of B) pairs that A wins (ties count half), the
    Mann-Whitney U over n m; its interval holds the point and stays within [0, 1]."""
    from scipy import stats

    from rl_curl.report import pairwise

    root, finals = sweep
    finals = {**finals, "curl (official optimizers)": [200.0]}
    records = summarise(find_runs([root]), reps=500, seed=3)
    pairs = {(p["a"], p["b"]): p for p in pairwise(records, reps=500, seed=3)}
    assert len(pairs) == 3  # every pair of the three arms
    for (a, b), pair in pairs.items():
        x, y = np.array(finals[a]), np.array(finals[b])
        wins = np.mean([(xi > yj) + 0.5 * (xi == yj) for xi in x for yj in y])
        u = stats.mannwhitneyu(x, y, alternative="two-sided").statistic
        q = pair["p_a_beats_b"]
        assert q["point"] == pytest.approx(wins) == pytest.approx(u / (len(x) * len(y)))
        assert 0.0 <= q["low"] <= q["point"] <= q["high"] <= 1.0
    main([str(root), "--out", str(tmp_path), "--reps", "200"])
    assert "P(A > B)" in (tmp_path / "rl_report.md").read_text()
    assert len(json.loads((tmp_path / "rl_pairs.json").read_text())) == len(pairs)


def test_performance_profile_is_the_fraction_of_runs_above_each_threshold():
    rng = np.random.default_rng(0)
    scores = rng.uniform(size=(5, 3))
    taus = np.array([0.0, 0.25, 0.5, 0.9, 1.0])
    profile, low, high = performance_profile(scores, taus, reps=1000, seed=1)
    direct = [np.mean([x > t for x in scores.ravel()]) for t in taus]
    assert profile == pytest.approx(direct)
    assert np.all(low <= profile + 1e-12) and np.all(profile <= high + 1e-12)
    assert profile[-1] == 0 and np.all(np.diff(profile) <= 0)  # non-increasing, nothing above the top
    # stratified: every replicate keeps each task's own scores, so a task whose runs agree adds no spread
    constant = np.column_stack([np.full(4, 0.3), np.full(4, 0.7)])
    _, low_c, high_c = performance_profile(constant, taus, reps=500)
    assert low_c == pytest.approx(high_c)


def test_paper_verdict_reads_the_paper_mean_against_our_interval():
    base = {"seeds": 3, "env_steps": 100_000, "paper_100k": {"mean": 299, "std": 48}}
    assert paper_verdict({**base, "mean": {"point": 300, "low": 250, "high": 350}}) == "inside"
    assert paper_verdict({**base, "mean": {"point": 150, "low": 120, "high": 180}}) == "above ours"
    assert paper_verdict({**base, "mean": {"point": 500, "low": 400, "high": 600}}) == "below ours"
    assert paper_verdict({**base, "seeds": 1, "mean": {"point": 300, "low": 300, "high": 300}}) == "1 seed: no interval"
    assert paper_verdict({**base, "env_steps": 50_000, "mean": {"point": 300, "low": 250, "high": 350}}) == \
        "ours at 50k: not compared"
    assert paper_verdict({"seeds": 3, "env_steps": 100_000, "mean": {"point": 1, "low": 0, "high": 2}}) is None


def test_aggregate_over_tasks_matches_the_normalised_matrix(tmp_path):
    root = tmp_path / "table1"
    finals = {"cartpole-swingup": [300.0, 450.0, 600.0, 700.0], "cheetah-run": [200.0, 250.0, 320.0]}
    for env, values in finals.items():
        for seed, final in enumerate(values, start=1):
            _fake_run(root / f"{env}-curl-s{seed}", "curl", seed, [10.0, final / 2, final], env=env)
    _fake_run(root / "cheetah-run-pixel-sac-s1", "pixel-sac", 1, [5.0, 50.0, 150.0], env="cheetah-run")
    records = summarise(find_runs([root]), reps=1000, seed=3)
    aggregates = aggregate_over_tasks(records, reps=1000, seed=3)
    assert [a["arm"] for a in aggregates] == ["curl"]  # pixel-sac ran on one task only
    curl = aggregates[0]
    # the first 3 seeds of each task (the smaller count), divided by the 1,000 a DMC episode can return
    expected = np.array([[0.3, 0.2], [0.45, 0.25], [0.6, 0.32]])
    assert curl["tasks"] == ["cartpole-swingup", "cheetah-run"] and curl["seeds_per_task"] == 3
    assert np.array(curl["scores"]) == pytest.approx(expected)
    assert curl["iqm"]["point"] == pytest.approx(iqm(expected))
    interval = stratified_bootstrap_interval(expected, np.mean, reps=1000, seed=3)
    assert (curl["mean"]["low"], curl["mean"]["high"]) == pytest.approx((interval.low, interval.high))
    assert curl["paper_100k_mean"] == pytest.approx((582 + 299) / 2 / 1000)
    at = curl["profile"]["tau"].index(0.3)
    assert curl["profile"]["fraction"][at] == pytest.approx(np.mean(expected > 0.3))

    out = tmp_path / "report"
    main([str(root), "--out", str(out), "--reps", "500"])
    table = (out / "rl_report.md").read_text()
    assert "Across tasks" in table and "| curl | cartpole-swingup, cheetah-run | 3 |" in table
    assert json.loads((out / "rl_aggregate.json").read_text())[0]["arm"] == "curl"
    assert (out / "rl_profile.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
