"""The demo that `make demo` runs: a tiny real SimCLR run on CIFAR-10 writes all its outputs."""

import json

import pytest

from core_ssl import demo
from core_ssl.cli import run_command


@pytest.mark.slow
def test_demo_runs_end_to_end_on_real_cifar10(tmp_path):
    result = demo.main(["--epochs", "1", "--train-images", "2048", "--batch-size", "128",
                        "--out", str(tmp_path)])
    assert 0.1 < result["random_init_knn_top1"] < 1 and 0.1 < result["final_knn_top1"] < 1
    for name in ("config.json", "train.csv", "eval.csv", "knn.png", "last.pt", "encoder.safetensors"):
        assert (tmp_path / name).is_file(), name
    assert json.loads((tmp_path / "config.json").read_text())["epochs"] == 1
    losses = [json.loads(line)["loss"] for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert losses and all(loss > 0 for loss in losses)


def test_missing_data_is_one_error_line_naming_the_fix(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        run_command(demo.main, ["--data-root", str(tmp_path), "--out", str(tmp_path / "run")])
    assert stopped.value.code == 1
    message = capsys.readouterr().err.strip()
    assert message.startswith("error: CIFAR-10 not found") and "--data-root" in message and "\n" not in message
    assert not (tmp_path / "run").exists()  # nothing written before the data is found
