"""scripts/collect_results.py: the small files of every run folder are copied with their layout
(sample grids included); checkpoints and oversized files are not."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "collect_results.py"


def _collect_module():
    spec = importlib.util.spec_from_file_location("collect_results", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_small_files_and_sample_grids_are_copied_checkpoints_are_not(tmp_path):
    collect = _collect_module()
    run = tmp_path / "runs" / "cifar" / "cut-s1"
    (run / "samples").mkdir(parents=True)
    for name in ("config.json", "eval.jsonl", "train.csv", "metrics.png", "samples/epoch_006.png"):
        (run / name).write_bytes(b"x")
    (run / "checkpoint.pt").write_bytes(b"x")
    (run / "big.json").write_bytes(b"x" * (collect.MAX_BYTES + 1))
    (tmp_path / "runs" / "cifar" / "eval_features-s1.pt").write_bytes(b"x")  # not inside a run folder

    copied = collect.collect(tmp_path / "runs", tmp_path / "results")
    names = sorted(str(p.relative_to(tmp_path / "results")) for p in copied)
    assert names == ["cifar/cut-s1/config.json", "cifar/cut-s1/eval.jsonl", "cifar/cut-s1/metrics.png",
                     "cifar/cut-s1/samples/epoch_006.png", "cifar/cut-s1/train.csv"]
