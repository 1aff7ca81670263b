"""scripts/scale_results.py: a GPU check's papers'-scale runs collected, their weights joined,
and the tables built from the committed records only."""

import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

import scale_results  # noqa: E402
from core_ssl.checkpoint import export_weights  # noqa: E402


def _tgz(path: Path, files: dict[str, str]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _vision_run(name: str, seed: int, knn: float, linear: float) -> dict[str, str]:
    machine = {"resume": False, "cuda": "NVIDIA H200", "torch": "2.11.0+cu130"}
    return {f"{name}/config.json": json.dumps({"method": "simclr", "seed": seed, "encoder": "resnet18", "epochs": 200,
                                               "batch_size": 512}),
            f"{name}/summary.json": json.dumps({"steps": 19_400, "train_minutes": 8.2, "images_per_second": 21_000.0}),
            f"{name}/eval_knn.json": json.dumps({"top1": knn, "k": 200}),
            f"{name}/eval_linear.json": json.dumps({"top1": linear}),
            f"{name}/machine.jsonl": json.dumps(machine) + "\n",
            f"{name}/checkpoint.pt": "never collected"}


def _gpu_out(tmp_path: Path) -> tuple[Path, bytes]:
    out = tmp_path / "out"
    out.mkdir()
    _tgz(out / "vision_runs.tgz", {**_vision_run("simclr-s0", 0, 0.80, 0.84), **_vision_run("simclr-s1", 1, 0.82, 0.86),
                                   "simclr-s0.log": "progress bars"})
    _tgz(out / "logs.tgz", {"facts.json": json.dumps({"gpu": "NVIDIA H200", "torch": "2.11.0+cu130"})})
    export_weights({"w": torch.arange(3_000, dtype=torch.float16)}, tmp_path / "encoder.safetensors")
    data = (tmp_path / "encoder.safetensors").read_bytes()
    (out / "encoder-simclr-s0.safetensors.part0").write_bytes(data[:1000])
    (out / "encoder-simclr-s0.safetensors.part1").write_bytes(data[1000:])
    return out, data


def test_collect_copies_the_records_and_joins_the_weights(tmp_path):
    out, data = _gpu_out(tmp_path)
    results, store = tmp_path / "results", tmp_path / "store"
    assert scale_results.collect(out, results, store) == {"vision": ["simclr-s0", "simclr-s1"]}
    run = results / "vision" / "simclr-s0"
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "eval_knn.json", "eval_linear.json",
                                                     "gpu_facts.json", "machine.jsonl", "summary.json", "weights.json"]
    assert json.loads((run / "gpu_facts.json").read_text())["gpu"] == "NVIDIA H200"
    record = json.loads((run / "weights.json").read_text())
    assert record["sha256"] == hashlib.sha256(data).hexdigest() and record["parts"] == 2 and record["bytes"] == len(data)
    assert (store / "encoders" / "simclr-s0.safetensors").read_bytes() == data
    assert not (results / "vision" / "simclr-s1" / "weights.json").exists()  # no parts came back for it


def test_finished_rl_runs_go_to_the_table_1_folder_beside_the_results(tmp_path):
    out, _ = _gpu_out(tmp_path)
    evals = "step,return_mean,return_std\n" + "".join(f"{s},{s / 1000},1.0\n" for s in range(0, 100_001, 20_000))
    _tgz(out / "rl_runs.tgz", {"cheetah-run-curl-s1/eval.csv": evals, "cheetah-run-curl-s1/config.json": "{}",
                               "cheetah-run-curl-s2/eval.csv": evals.split("60000")[0]})  # cut short
    results = tmp_path / "results" / "scale"
    collected = scale_results.collect(out, results, tmp_path / "store")
    assert collected["rl"] == ["cheetah-run-curl-s1"]
    assert (tmp_path / "results" / "rl_table1" / "cheetah-run-curl-s1" / "eval.csv").read_text() == evals


def test_a_missing_part_is_an_error_naming_the_joined_file(tmp_path):
    out, _ = _gpu_out(tmp_path)
    (out / "encoder-simclr-s0.safetensors.part0").unlink()
    with pytest.raises(Exception, match="simclr-s0.safetensors"):
        scale_results.collect(out, tmp_path / "results", tmp_path / "store")


def test_the_vision_report_gives_each_run_the_seed_mean_and_the_libraries_numbers(tmp_path):
    out, _ = _gpu_out(tmp_path)
    scale_results.collect(out, tmp_path / "results", tmp_path / "store")
    (path,) = scale_results.report(tmp_path / "results")
    text = path.read_text()
    assert "| simclr-s0 | simclr | resnet18 | 200 | 512 | 19400 | 8.2 | 21000 | NVIDIA H200 | 2.11.0+cu130 | 0.8000 | 0.8400 |" in text
    # mean 0.81, t interval 0.81 +- 12.706 * 0.01414 / sqrt(2) = +- 0.1271
    assert "| simclr | 2 | 0.8100 [0.6829, 0.9371] | 0.8500 [0.7229, 0.9771] |" in text
    assert "| lightly | kNN top-1 (k = 200, t = 0.1) | 200 epochs, batch 128, one RTX A6000 | 0.847 | 0.838 | 0.869 | - |" in text


@pytest.mark.parametrize(("low", "high", "verdict"), [(None, None, "not evaluated yet"), (2.0, 9.0, "beats the identity"),
                                                      (-3.0, 4.0, "cannot be told from the identity"),
                                                      (-9.0, -1.0, "worse than the identity")])
def test_a_generator_beats_the_identity_only_when_the_whole_fid_gain_interval_is_above_zero(low, high, verdict):
    assert scale_results.cut_verdict({"gain_low": low, "gain_high": high}) == verdict


def test_the_command_names_a_folder_without_runs(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        scale_results.main(["collect", str(tmp_path)])
    assert stopped.value.code == 2
    assert "holds none of vision_runs.tgz, cut_runs.tgz, ablate_runs.tgz, rl_runs.tgz" in capsys.readouterr().err


def test_next_lists_the_planned_vision_runs_not_yet_evaluated(tmp_path, capsys):
    assert scale_results.vision_pending(tmp_path)[:2] == ["simclr-s0|--method simclr --seed 0",
                                                          "mocov2-s0|--method mocov2 --seed 0"]
    (tmp_path / "vision" / "simclr-s0").mkdir(parents=True)
    (tmp_path / "vision" / "simclr-s0" / "eval_linear.json").write_text("{}")
    assert scale_results.main(["next", "--count", "2", "--results", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines() == ["mocov2-s0|--method mocov2 --seed 0", "byol-s0|--method byol --seed 0"]
    assert len(scale_results.vision_pending(tmp_path)) == len(scale_results.VISION_PLAN) - 1


def _ablation_archive(path: Path) -> None:
    """An ablate job's archive: Figure 9 with LARS, two batch sizes, two seeds, one leftover checkpoint."""
    command = {"ablation_flags": ["batch", "--batch-sizes", "64", "1024", "--epoch-grid", "1", "--lr-scaling", "linear",
                                  "--seeds", "0", "1", "--preset", "paper"], "pretrain_flags": ["--optimizer", "lars"]}
    files = {"fig9-lars/ablate_command.json": json.dumps(command), "fig9-lars/results.md": "stale report",
             "fig9-lars.log": "progress bars"}
    for batch, lr, top1 in ((64, 0.25, 0.40), (1024, 4.0, 0.50)):
        for seed in (0, 1):
            cell = f"fig9-lars/cells/b{batch}-e1-s{seed}"
            record = {"ablation": "batch", "cell": f"b{batch}-e1", "seed": seed, "batch_size": batch, "epochs": 1,
                      "lr": lr, "linear_top1": top1 + 0.01 * seed, "knn_top1": top1 - 0.05, "l2": 1e-4, "steps": 10,
                      "epochs_trained": 1.0, "train_minutes": 4.0, "run": cell}
            files.update({f"{cell}/cell.json": json.dumps(record), f"{cell}/config.json": "{}",
                          f"{cell}/checkpoint.pt": "never collected"})
    _tgz(path, files)


def test_ablations_are_collected_and_their_report_rebuilt_from_the_cells(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    _ablation_archive(out / "ablate_runs.tgz")
    _tgz(out / "logs.tgz", {"facts.json": json.dumps({"gpu": "NVIDIA H200", "torch": "2.11.0+cu130"})})
    results = tmp_path / "results" / "scale"
    assert scale_results.collect(out, results, tmp_path / "store") == {"ablate": ["fig9-lars"]}
    folder = results / "ablate" / "fig9-lars"
    assert sorted(p.name for p in (folder / "cells" / "b64-e1-s0").iterdir()) == ["cell.json", "config.json"]
    assert json.loads((folder / "gpu_facts.json").read_text())["gpu"] == "NVIDIA H200"
    written = scale_results.report(results)
    assert folder / "results.md" in written
    table = (folder / "results.md").read_text()
    assert "stale report" not in table and "| 1024 | 50.5 |" in table
    assert "| b1024-e1 > b64-e1 |" in (folder / "claims.md").read_text()  # judged on the two seeds
