"""scripts/rl_table1.py: the plan of CURL's Table 1, what is left, and collecting finished runs."""

import io
import json
import sys
import tarfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

import rl_table1  # noqa: E402


def _eval_csv(folder: Path, last: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rows = "".join(f"{step},{step / 1000:.1f},1.0\n" for step in range(0, last + 1, 20_000))
    (folder / "eval.csv").write_text("step,return_mean,return_std\n" + rows)
    (folder / "config.json").write_text(json.dumps({"env": folder.name.split("-")[0]}))


def test_plan_is_the_six_tasks_for_curl_and_three_for_each_baseline():
    runs = rl_table1.plan()
    assert len(runs) == 6 * 3 + 2 * 3 * 3 and len({r.name for r in runs}) == len(runs)
    assert {r.task for r in runs if r.agent == "curl"} == set(rl_table1.TASKS)
    assert {r.task for r in runs if r.agent != "curl"} == {"cheetah-run", "cartpole-swingup", "ball_in_cup-catch"}
    walker = next(r for r in runs if r.task == "walker-walk")
    assert walker.updates == 50_000  # action repeat 2
    line = next(r for r in runs if r.name == "cartpole-swingup-curl-s2").rl_runs_line()
    assert line.startswith("cartpole-swingup-curl-s2|--env cartpole-swingup --agent curl --seed 2 --preset paper")
    assert "--total-env-steps 100000" in line


def test_next_puts_the_flagship_first_then_the_cheapest_and_skips_finished_runs(tmp_path, capsys):
    _eval_csv(tmp_path / "cheetah-run-curl-s1", 100_000)      # finished
    _eval_csv(tmp_path / "cheetah-run-curl-s2", 60_000)       # cut short: still to run
    order = [r.name for r in rl_table1.pending(tmp_path)]
    assert order[:3] == ["cheetah-run-curl-s2", "cheetah-run-curl-s3", "cartpole-swingup-curl-s1"]
    assert "cheetah-run-curl-s1" not in order and order[-1].startswith(("walker-walk", "finger-spin"))
    rl_table1.main(["--results", str(tmp_path), "next", "--count", "2"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("|")[0] for line in lines] == ["cheetah-run-curl-s2", "cheetah-run-curl-s3"]
    with pytest.raises(SystemExit):
        rl_table1.main(["next", "--count", "0"])


def test_collect_copies_only_finished_planned_runs_and_their_small_files(tmp_path):
    source = tmp_path / "gpu"
    _eval_csv(source / "cheetah-run-curl-s1", 100_000)
    (source / "cheetah-run-curl-s1" / "checkpoint.pt").write_bytes(b"big")
    _eval_csv(source / "cartpole-swingup-curl-s1", 40_000)     # unfinished: left out
    _eval_csv(source / "scale-k1-1", 100_000)                  # not in the plan: left out
    archive = tmp_path / "rl_runs.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(source.iterdir()):
            tar.add(path, arcname=f"./{path.name}")
        tar.addfile(tarfile.TarInfo("./cheetah-run-curl-s1.log"), io.BytesIO(b""))
    results = tmp_path / "results"
    assert rl_table1.collect(archive, results) == ["cheetah-run-curl-s1"]
    assert sorted(p.name for p in (results / "cheetah-run-curl-s1").iterdir()) == ["config.json", "eval.csv"]
