"""The pre-training command end to end: logs, checkpoints, resume, evaluation."""

from __future__ import annotations

import json

import pytest
import torch

from core_ssl.checkpoint import load_checkpoint
from vision_benchmarks import evaluate, pretrain
from vision_benchmarks.config import PretrainConfig
from vision_benchmarks.methods.simclr import SimCLR


def tiny_run(out, **overrides) -> PretrainConfig:
    """SimCLR on 256 real CIFAR-10 images, 4 steps per epoch, 2 epochs, a checkpoint every step."""
    settings = dict(method="simclr", train_images=256, batch_size=64, epochs=2, width=8, proj_hidden=64,
                    knn_train_images=256, knn_test_images=128, log_every=1, checkpoint_minutes=0.0,
                    bf16="off", device="cpu", out=out)
    return PretrainConfig(**{**settings, **overrides})


def steps_logged(run_dir, stream: str) -> list[int]:
    return [json.loads(line)["step"] for line in (run_dir / f"{stream}.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_interrupted_run_resumes_from_its_checkpoint_and_matches_an_uninterrupted_one(tmp_path, monkeypatch):
    reference = pretrain.pretrain(tiny_run(tmp_path / "reference"))
    assert reference["steps"] == 8 and 0 <= reference["knn_top1"] <= 1

    calls = {"n": 0}
    original = SimCLR.after_optimizer_step

    def crash_at_sixth_step(self, progress):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt("simulated interruption")
        original(self, progress)

    monkeypatch.setattr(SimCLR, "after_optimizer_step", crash_at_sixth_step)
    run = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        pretrain.pretrain(tiny_run(run))
    assert load_checkpoint(run / "last.pt")["step"] == 5
    monkeypatch.setattr(SimCLR, "after_optimizer_step", original)

    with pytest.raises(FileExistsError, match="--resume"):
        pretrain.pretrain(tiny_run(run))
    resumed = pretrain.pretrain(tiny_run(run, resume=True))
    assert resumed["steps"] == 8
    assert steps_logged(run, "train") == list(range(1, 9))  # no step lost, none logged twice
    learning_rates = [json.loads(line)["lr"] for line in (run / "train.jsonl").read_text().splitlines()]
    assert max(learning_rates) > 0.9 * 2e-3 and learning_rates[-1] < 0.1 * 2e-3  # warm-up, peak, cosine
    assert steps_logged(run, "eval") == steps_logged(tmp_path / "reference", "eval") == [0, 4, 8]
    final = load_checkpoint(run / "last.pt")["method"]
    expected = load_checkpoint(tmp_path / "reference" / "last.pt")["method"]
    for name, tensor in expected.items():
        assert torch.allclose(final[name].float(), tensor.float(), atol=1e-5), name
    for name in ("config.json", "encoder.safetensors", "monitors.png", "summary.json"):
        assert (run / name).is_file()

    record = evaluate.main(["--run", str(run), "--protocol", "knn", "--label-fraction", "0.01", "--device", "cpu"])
    assert record["labelled_images"] == 500 and 0.1 < record["top1"] < 1
    assert json.loads((run / "eval_knn_labels0.01.json").read_text())["top1"] == record["top1"]


def test_zero_epochs_saves_the_random_initialisation(tmp_path):
    summary = pretrain.pretrain(tiny_run(tmp_path / "random", epochs=0))
    assert summary["steps"] == 0 and (tmp_path / "random" / "last.pt").is_file()


def test_config_json_holds_the_settings_the_run_used(tmp_path):
    """MoCo v2 with its paper queue (65,536) on 256 images: the queue is capped at 25 with a
    warning, and config.json states the capped queue and the derived head width and blur."""
    run = tmp_path / "moco"
    with pytest.warns(UserWarning, match="capped at 25"):
        summary = pretrain.pretrain(tiny_run(run, method="mocov2", epochs=1, proj_hidden=None, knn_every=0))
    saved = json.loads((run / "config.json").read_text())
    assert (saved["queue_size"], saved["proj_hidden"], saved["blur"]) == (25, 64, False)
    assert (saved["temperature"], saved["key_momentum"], saved["lr"]) == (0.2, 0.999, 2e-3)
    assert load_checkpoint(run / "last.pt")["method"]["queue.keys"].shape == (25, 128)
    assert summary["steps"] == 4
