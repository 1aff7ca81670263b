"""The semi-supervised comparison: arms, label index files, intervals, the ordering, resuming."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy import stats

from core_ssl import data as data_mod
from core_ssl.checkpoint import load_checkpoint, save_checkpoint
from core_ssl.cli import UsageError
from core_ssl.config import save_config
from vision_benchmarks import semisup
from vision_benchmarks.config import PretrainConfig
from vision_benchmarks.evaluation import semisup as experiment
from vision_benchmarks.methods import build_method
from vision_benchmarks.evaluation.semisup_report import ordering, paper_chain

from .tiny_cifar import write_tiny_cifar


def make_run(run, method: str, dataset: str, seed: int = 0):
    """A run folder holding a seeded, untrained ``method`` ConvNet (width 4), as pre-training leaves it."""
    torch.manual_seed(seed)
    built = build_method(PretrainConfig(method=method, dataset=dataset, width=4, proj_hidden=16, bf16="off",
                                        device="cpu", out=run, seed=seed), 10, 1)
    run.mkdir(parents=True)
    save_config(built.cfg, run)
    save_checkpoint({"method": built.state_dict()}, run / "checkpoint.pt")
    return run


def test_semisup_end_to_end_on_tiny_data(cifar_test, tmp_path, monkeypatch):
    monkeypatch.setenv(data_mod.CACHE_ENV_VAR, str(tmp_path / "cache"))
    folder = str(write_tiny_cifar(cifar_test, tmp_path / "tiny"))
    runs = {"simclr": make_run(tmp_path / "simclr", "simclr", folder),
            "v2": make_run(tmp_path / "v2", "simclrv2", folder, seed=1)}
    out = tmp_path / "semisup"
    argv = ["--runs", *(f"{k}={v}" for k, v in runs.items()), "--fractions", "0.1", "0.5", "--seeds", "0", "1",
            "--epochs", "2", "--distill-epochs", "1", "--batch-size", "32", "--test-images", "60",
            "--out", str(out), "--device", "cpu", "--bf16", "off"]
    result = semisup.main(argv)

    cells = result["cells"]
    assert len(cells) == 4 * 2 * 2  # supervised, simclr, v2, v2-distilled x fractions x seeds
    assert {c["arm"] for c in cells} == {"supervised", "simclr", "v2", "v2-distilled"}
    train_labels = data_mod.load_dataset(folder, "train").labels
    for fraction, per_class in ((0.1, 2), (0.5, 10)):
        for seed in (0, 1):
            index = json.loads((out / "labels" / f"labels{fraction:g}_seed{seed}.json").read_text())
            assert np.bincount(index["labels"], minlength=10).tolist() == [per_class] * 10  # exactly balanced
            assert train_labels[index["indices"]].tolist() == index["labels"]
            for c in cells:
                if c["fraction"] == fraction and c["seed"] == seed and c["kind"] != "distill":
                    assert c["labelled_images"] == 10 * per_class  # every arm, the same subset
    subsets = {(f, s): json.loads((out / "labels" / f"labels{f:g}_seed{s}.json").read_text())["indices"]
               for f in (0.1, 0.5) for s in (0, 1)}
    assert subsets[(0.1, 0)] != subsets[(0.1, 1)]  # seeds draw different subsets
    distilled = [c for c in cells if c["arm"] == "v2-distilled"]
    assert all(c["unlabelled_images"] == 200 and c["epochs"] == 1 for c in distilled)
    # SimCLRv2 is fine-tuned from the middle of its head: the teacher's classifier reads the 16-d head layer
    teacher = load_checkpoint(out / "teachers" / "v2_f0.1_s0.pt")["model"]
    assert teacher["1.weight"].shape == (10, 16) and "0.1.0.0.weight" in teacher
    assert not (out / "teachers" / "simclr_f0.1_s0.pt").exists()  # only the distilled arm needs a teacher

    # mean and 95% t interval per (arm, fraction), restated: mean +- t_{0.975, n-1} s / sqrt(n)
    for row in result["rows"]:
        values = np.array([c["top1"] for c in cells if c["arm"] == row["arm"] and c["fraction"] == row["fraction"]])
        half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
        assert row["top1"] == pytest.approx(values.mean())
        assert (row["low"], row["high"]) == pytest.approx((values.mean() - half, values.mean() + half))
    table = (out / "results.md").read_text()
    row = next(r for r in result["rows"] if r["arm"] == "v2" and r["fraction"] == 0.5)
    assert f"| v2 | " in table and f"{100 * row['top1']:.1f} [{100 * row['low']:.1f}, {100 * row['high']:.1f}]" in table
    assert "supervised < SimCLR < SimCLRv2 < SimCLRv2 distilled" in table
    assert [check["roles"] for check in result["ordering"]] == [["supervised", "SimCLR", "SimCLRv2",
                                                                 "SimCLRv2 distilled"]] * 2

    def no_training(*args, **kwargs):
        raise AssertionError("a finished cell was trained again")

    monkeypatch.setattr(experiment, "finetune", no_training)
    monkeypatch.setattr(experiment, "distill", no_training)
    assert semisup.main(argv)["rows"] == result["rows"]  # resumed: every cell read back


def _arm(key, kind, method=None):
    return SimpleNamespace(key=key, kind=kind, method=method)


def test_the_ordering_is_judged_by_means_and_by_paired_intervals():
    arms = [_arm("supervised", "scratch"), _arm("a", "finetune", "simclr"), _arm("b", "finetune", "simclrv2"),
            _arm("b-distilled", "distill", "simclrv2"), _arm("c", "finetune", "byol")]
    chain = paper_chain(arms)
    assert chain == [("supervised", "supervised"), ("SimCLR", "a"), ("SimCLRv2", "b"), ("SimCLRv2 distilled", "b-distilled")]
    base = {0: 0.30, 1: 0.40, 2: 0.35}  # seeds differ a lot; the arms differ consistently
    gains = {"supervised": 0.0, "a": 0.05, "b": 0.051, "b-distilled": 0.04}
    noise = {"b": {0: 0.0, 1: 0.03, 2: -0.03}}
    records = [{"arm": key, "fraction": 0.01, "seed": s, "top1": base[s] + gain + noise.get(key, {}).get(s, 0.0)}
               for key, gain in gains.items() for s in base]
    check = ordering(records, chain, 0.01)
    assert check["means"] == pytest.approx([0.35, 0.40, 0.401, 0.39])
    assert not check["holds_by_mean"]  # the distilled arm is below SimCLRv2
    verdicts = [(s["lower"], s["higher"], s["verdict"]) for s in check["steps"]]
    assert verdicts == [("supervised", "SimCLR", "above"), ("SimCLR", "SimCLRv2", "unresolved"),
                        ("SimCLRv2", "SimCLRv2 distilled", "unresolved")]
    first = check["steps"][0]  # paired differences are all exactly 0.05: a zero-width interval above 0
    assert first["mean_difference"] == pytest.approx(0.05) and first["low"] == pytest.approx(0.05)
    reversed_records = [dict(r, top1=1 - r["top1"]) for r in records]
    assert ordering(reversed_records, chain, 0.01)["steps"][0]["verdict"] == "below"


def test_bad_settings_are_refused_before_any_training():
    for argv, message in ((["--fractions", "0", "0.1"], r"--fractions must be in \(0, 1\]"),
                          (["--no-scratch"], "no arm to run"),
                          (["--epochs", "0"], "--epochs must be >= 1"),
                          (["--lr", "-1"], "--lr must be > 0"),
                          (["--weight-decay", "-1"], "--weight-decay must be >= 0"),
                          (["--seeds", "-1"], "--seeds must be >= 0")):
        with pytest.raises(UsageError, match=message):
            semisup.main(argv)
    with pytest.raises(UsageError, match="NAME=PATH"):
        experiment.parse_runs(["runs/simclr"])
    with pytest.raises(UsageError, match="must be unique"):
        experiment.parse_runs(["a=x", "a=y"])
    assert experiment.default_epochs(0.01) == 60 and experiment.default_epochs(0.1) == 30
