"""rl_curl.report on fake run folders: grouping, final scores, intervals, table and plot."""

import json

import numpy as np
import pytest

from core_ssl.stats import iqm, stratified_bootstrap_interval
from rl_curl.report import arm_of, find_runs, main, summarise


def _fake_run(folder, agent, seed, returns, steps=(0, 5000, 10000), **config):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"env": "cartpole-swingup", "agent": agent, "seed": seed,
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


def test_no_runs_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path)])
    assert exit_info.value.code == 1


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
