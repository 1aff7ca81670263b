"""The pre-training command end to end: logs, checkpoints, resume, evaluation."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal

import pytest
import torch

from core_ssl.checkpoint import load_checkpoint
from core_ssl.cli import CommandError, run_command
from core_ssl.run import ConfigMismatch
from tests.user_folder import contents, make_user_folder
from vision_benchmarks import evaluate, pretrain
from vision_benchmarks.config import PretrainConfig
from vision_benchmarks.methods.simclr import SimCLR
from vision_benchmarks.pretrained import load_pretrained

from .tiny_cifar import write_tiny_cifar
from tests.devices import needs_cuda


def tiny_run(out, **overrides) -> PretrainConfig:
    """SimCLR on 256 real CIFAR-10 images, 4 steps per epoch, 2 epochs, a checkpoint every step."""
    settings = dict(method="simclr", train_images=256, batch_size=64, epochs=2, width=8, proj_hidden=64,
                    knn_train_images=256, knn_test_images=128, log_every=1, checkpoint_minutes=0.0,
                    bf16="off", device="cpu", out=out)
    return PretrainConfig(**{**settings, **overrides})


def stop_at_sixth_step(monkeypatch, cfg: PretrainConfig) -> None:
    """Run ``cfg`` until a KeyboardInterrupt in its sixth optimiser step (five steps done),
    then restore the step hook."""
    original, calls = SimCLR.after_optimizer_step, {"n": 0}

    def interrupt(self, progress):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt("simulated interruption")
        original(self, progress)

    monkeypatch.setattr(SimCLR, "after_optimizer_step", interrupt)
    with pytest.raises(KeyboardInterrupt):
        pretrain.pretrain(cfg)
    monkeypatch.setattr(SimCLR, "after_optimizer_step", original)


def assert_same_final_weights(run, reference) -> None:
    final = load_checkpoint(run / "checkpoint.pt")["method"]
    for name, tensor in load_checkpoint(reference / "checkpoint.pt")["method"].items():
        assert torch.allclose(final[name].float(), tensor.float(), atol=1e-5), name


def steps_logged(run_dir, stream: str) -> list[int]:
    return [json.loads(line)["step"] for line in (run_dir / f"{stream}.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_interrupted_run_resumes_from_its_checkpoint_and_matches_an_uninterrupted_one(tmp_path, monkeypatch):
    reference = pretrain.pretrain(tiny_run(tmp_path / "reference"))
    assert reference["steps"] == 8 and 0 <= reference["knn_top1"] <= 1

    run = tmp_path / "interrupted"
    stop_at_sixth_step(monkeypatch, tiny_run(run))
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 5

    with pytest.raises(CommandError, match="already holds a run .* pass --resume"):
        pretrain.pretrain(tiny_run(run))
    resumed = pretrain.pretrain(tiny_run(run, resume=True))
    assert resumed["steps"] == 8
    assert steps_logged(run, "train") == list(range(1, 9))  # no step lost, none logged twice
    last_row = json.loads((run / "train.jsonl").read_text().splitlines()[-1])
    assert resumed["final_loss"] == pytest.approx(last_row["loss"])  # the last step's loss, logged or not
    again = pretrain.pretrain(tiny_run(run, resume=True))  # a finished run resumed: nothing to train
    assert again["steps"] == 8 and again["final_loss"] == pytest.approx(resumed["final_loss"])
    learning_rates = [json.loads(line)["lr"] for line in (run / "train.jsonl").read_text().splitlines()]
    assert max(learning_rates) > 0.9 * 2e-3 and learning_rates[-1] < 0.1 * 2e-3  # warm-up, peak, cosine
    assert steps_logged(run, "eval") == steps_logged(tmp_path / "reference", "eval") == [0, 4, 8]
    assert_same_final_weights(run, tmp_path / "reference")
    for name in ("config.json", "encoder.safetensors", "monitors.png", "summary.json"):
        assert (run / name).is_file()

    record = evaluate.main(["--run", str(run), "--protocol", "knn", "--label-fraction", "0.01", "--device", "cpu"])
    assert record["labelled_images"] == 500 and 0.1 < record["top1"] < 1
    assert json.loads((run / "eval_knn_labels0.01.json").read_text())["top1"] == record["top1"]


def test_zero_epochs_saves_the_random_initialisation(tmp_path):
    summary = pretrain.pretrain(tiny_run(tmp_path / "random", epochs=0))
    assert summary["steps"] == 0 and (tmp_path / "random" / "checkpoint.pt").is_file()


def test_config_json_holds_the_settings_the_run_used(tmp_path):
    """MoCo v2 with its paper queue (65,536) on 256 images: the queue is capped at 25 with a
    warning, and config.json states the capped queue and the derived head width and blur."""
    run = tmp_path / "moco"
    with pytest.warns(UserWarning, match="capped at 25"):
        summary = pretrain.pretrain(tiny_run(run, method="mocov2", epochs=1, proj_hidden=None, knn_every=0))
    saved = json.loads((run / "config.json").read_text())
    assert (saved["queue_size"], saved["proj_hidden"], saved["blur"]) == (25, 64, False)
    assert (saved["temperature"], saved["key_momentum"], saved["lr"]) == (0.2, 0.999, 2e-3)
    assert load_checkpoint(run / "checkpoint.pt")["method"]["queue.keys"].shape == (25, 128)
    assert summary["steps"] == 4


TINY_ARGS = ["--method", "simclr", "--train-images", "256", "--batch-size", "64", "--epochs", "1", "--width", "8",
             "--proj-hidden", "64", "--knn-train-images", "256", "--knn-test-images", "128", "--log-every", "1",
             "--checkpoint-minutes", "0", "--bf16", "off", "--device", "cpu"]


def _logs(run):
    return {name: (run / name).read_bytes() for name in ("train.jsonl", "eval.jsonl")}


def test_a_copied_run_resumes_in_place_refuses_changed_flags_and_extends(tmp_path):
    original, copy = tmp_path / "original", tmp_path / "copy"
    pretrain.main([*TINY_ARGS, "--run-dir", str(original)])
    shutil.copytree(original, copy)
    before = _logs(original)

    pretrain.main([*TINY_ARGS, "--out", str(copy), "--resume"])  # the same flags: a finished run adds nothing
    assert _logs(copy) == before

    with pytest.raises(ConfigMismatch, match="--batch-size: saved 64, given 32; --temperature: saved 0.5, given 0.2"):
        pretrain.main([*TINY_ARGS, "--run-dir", str(copy), "--resume", "--batch-size", "32", "--temperature", "0.2"])

    summary = pretrain.main(["--run-dir", str(copy), "--resume", "--epochs", "2"])  # one more epoch
    assert summary["steps"] == 8 and steps_logged(copy, "eval") == [0, 4, 8]
    saved = json.loads((copy / "config.json").read_text())
    assert saved["out"] == str(copy) and saved["epochs"] == 2
    assert _logs(original) == before  # the original folder was not touched


def test_sigint_checkpoints_after_the_step_and_the_resumed_run_is_bit_identical(tmp_path, monkeypatch, capsys):
    pretrain.main([*TINY_ARGS, "--epochs", "2", "--run-dir", str(tmp_path / "reference")])
    original, calls = SimCLR.after_optimizer_step, []

    def interrupt_at_third_step(self, progress):
        original(self, progress)
        calls.append(progress)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(SimCLR, "after_optimizer_step", interrupt_at_third_step)
    run = tmp_path / "interrupted"
    with pytest.raises(SystemExit) as stopped:
        run_command(pretrain.main, [*TINY_ARGS, "--epochs", "2", "--run-dir", str(run)])
    assert stopped.value.code == 130 and len(calls) == 3
    assert capsys.readouterr().err.strip().endswith(
        f"error: stopped by SIGINT; checkpoint saved at step 3 — continue with: "
        f"python -m vision_benchmarks.pretrain --run-dir {run} --resume")
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 3
    monkeypatch.setattr(SimCLR, "after_optimizer_step", original)

    pretrain.main(["--run-dir", str(run), "--resume"])
    final = load_checkpoint(run / "checkpoint.pt")
    expected = load_checkpoint(tmp_path / "reference" / "checkpoint.pt")
    assert final["step"] == expected["step"] == 8
    for name, tensor in expected["method"].items():
        assert torch.equal(final["method"][name], tensor), name
    assert steps_logged(run, "train") == list(range(1, 9))


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    """A learning rate of 1e9 makes the SimCLR loss NaN within a few steps."""
    run = tmp_path / "nan"
    with pytest.raises(SystemExit) as stopped:
        run_command(pretrain.main, [*TINY_ARGS, "--lr", "1e9", "--warmup-fraction", "0", "--run-dir", str(run)])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert stopped.value.code == 1
    assert re.match(r"error: (loss became nan|method/\S+ became non-finite) at step \d+; the run "
                    r"stopped and the last good checkpoint \(checkpoint.pt, step \d+\) is kept — lower the learning "
                    r"rate \(--lr\)", err), err
    good = load_checkpoint(run / "checkpoint.pt")
    assert all(torch.isfinite(t).all() for t in good["method"].values() if t.is_floating_point())
    assert not (run / "encoder.safetensors").exists() and not (run / "summary.json").exists()


def test_invalid_settings_fail_before_the_run_folder_is_made(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        run_command(pretrain.main, [*TINY_ARGS, "--batch-size", "0", "--run-dir", str(tmp_path / "run")])
    assert stopped.value.code == 2 and not (tmp_path / "run").exists()
    assert capsys.readouterr().err.strip() == "error: --batch-size must be >= 1, got 0 — give 1 or more"


@pytest.mark.parametrize("flag,value,message", [
    ("--image-size", "64", "error: --image-size 64 is larger than the 32 px images of {data} — give --image-size 32 "
                           "or less"),
    ("--train-images", "5", "error: --train-images must lie in 1..4 (the training images of {data}), got 5 — give "
                            "at most 4, or none to train on all of them"),
])
def test_sizes_beyond_the_dataset_are_usage_errors_before_the_run_folder(flag, value, message, cifar_test, tmp_path,
                                                                         monkeypatch, capsys):
    """Checked against the loaded data before the run folder exists, so the corrected command
    starts afresh in the same --out."""
    data = write_tiny_cifar(cifar_test, tmp_path / "tiny", train_per_class=2, test_per_class=1, num_classes=2)
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    args = ["--preset", "cpu", "--dataset", str(data), "--device", "cpu", "--out", str(run)]
    with pytest.raises(SystemExit) as stopped:
        run_command(pretrain.main, [*args, flag, value])
    err = capsys.readouterr().err.strip()
    assert stopped.value.code == 2 and err == message.format(data=data), err
    assert not run.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["tiny"]

    summary = pretrain.main([*args, "--epochs", "0", "--batch-size", "2", "--width", "8", "--proj-hidden", "16"])
    assert summary["steps"] == 0 and (run / "checkpoint.pt").is_file()


def test_a_folder_of_another_tools_files_is_refused_and_left_as_it_was(tmp_path, capsys):
    user = tmp_path / "u"
    files = make_user_folder(user)
    with pytest.raises(SystemExit) as stopped:
        run_command(pretrain.main, [*TINY_ARGS, "--epochs", "1", "--out", str(user)])
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and "is not a run folder of this toolkit" in err and "removed" not in err
    assert contents(user) == files


def test_a_grey_dataset_pretrains_as_rgb_and_evaluates(tmp_path):
    """Fashion-MNIST at 28 px (the documented grey run): the grey images reach the 3-channel stem
    replicated, in pre-training and in the evaluation of the run alike."""
    run = tmp_path / "fashion"
    summary = pretrain.pretrain(tiny_run(run, dataset="fashion-mnist", image_size=28, epochs=1, knn_every=0))
    assert summary["steps"] == 4 and 0 <= summary["knn_top1"] <= 1
    method, cfg = load_pretrained(run, torch.device("cpu"))
    assert cfg.dataset == "fashion-mnist" and method.encoder(torch.zeros(2, 3, 28, 28)).shape[0] == 2


def test_a_folder_laid_out_train_and_val_pretrains_on_train_and_tests_on_val(tmp_path):
    """The Imagenette layout (train/ + val/, no test/), here with grey images."""
    from PIL import Image

    from vision_benchmarks.datasets import held_out_split, load_run_split

    data = tmp_path / "grey"
    for split, count in (("train", 12), ("val", 4)):
        for label, shade in (("dark", 40), ("light", 200)):
            (data / split / label).mkdir(parents=True)
            for i in range(count):
                Image.new("L", (16, 16), shade + i).save(data / split / label / f"{i}.png")
    assert held_out_split(str(data)) == "val"
    test = load_run_split(str(data), "test")
    assert test.images.shape == (8, 3, 16, 16) and test.classes == ["dark", "light"]
    summary = pretrain.pretrain(tiny_run(tmp_path / "run", dataset=str(data), image_size=16, train_images=None,
                                         batch_size=8, epochs=1, knn_every=0))
    assert summary["steps"] == 3


def test_an_unknown_view_is_a_usage_error_before_the_run_folder(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        run_command(pretrain.main, [*TINY_ARGS, "--views", "crop,sparkle", "--run-dir", str(tmp_path / "run")])
    assert stopped.value.code == 2 and not (tmp_path / "run").exists()
    assert capsys.readouterr().err.strip().startswith("error: --views takes one or two of crop, ")


def test_the_strict_flag_the_corrupt_image_warning_suggests_is_accepted(tmp_path):
    from PIL import Image

    from core_ssl.data import CorruptImageWarning

    data = tmp_path / "photos"
    for split in ("train", "test"):
        for label, shade in (("dark", 40), ("light", 200)):
            (data / split / label).mkdir(parents=True)
            for i in range(8):
                Image.new("RGB", (16, 16), (shade, shade, i)).save(data / split / label / f"{i}.png")
    (data / "train" / "dark" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    args = [*TINY_ARGS, "--dataset", str(data), "--image-size", "16", "--train-images", "none", "--batch-size", "8",
            "--knn-every", "0", "--epochs", "0"]
    with pytest.raises(ValueError, match="cannot decode 'train/dark/broken.png'.*strict loading stops"):
        pretrain.main([*args, "--strict", "--run-dir", str(tmp_path / "strict")])
    with pytest.warns(CorruptImageWarning, match=r"skipped 1 of 17 images .*broken.png.*\(--strict\)"):
        pretrain.main([*args, "--run-dir", str(tmp_path / "lenient")])


def test_a_compiled_encoder_trains_as_the_eager_one_and_checkpoints_the_same_keys(tmp_path):
    """--compile is a speed setting: the same losses to float rounding, the same checkpoint."""
    def losses(run) -> list[float]:
        return [json.loads(line)["loss"] for line in (run / "train.jsonl").read_text().splitlines()]

    pretrain.pretrain(tiny_run(tmp_path / "eager", epochs=1, knn_every=0))
    pretrain.pretrain(tiny_run(tmp_path / "compiled", epochs=1, knn_every=0, compile=True))
    assert losses(tmp_path / "compiled") == pytest.approx(losses(tmp_path / "eager"), rel=1e-3)
    compiled = load_checkpoint(tmp_path / "compiled" / "checkpoint.pt")["method"]
    assert compiled.keys() == load_checkpoint(tmp_path / "eager" / "checkpoint.pt")["method"].keys()


@needs_cuda
def test_a_run_on_cuda_trains_in_bf16_resumes_and_is_evaluated_there(tmp_path):
    """The CUDA path end to end: augmentations on the GPU, bf16 autocast (native there), channels
    last, cuDNN autotuning; resumed on the GPU, then probed there (kNN and the linear probe)."""
    run = tmp_path / "run"
    first = pretrain.pretrain(tiny_run(run, device="cuda", bf16="auto", epochs=1))
    assert first["steps"] == 4 and first["final_loss"] == first["final_loss"]  # finite, not NaN
    resumed = pretrain.pretrain(tiny_run(run, device="cuda", bf16="auto", epochs=2, resume=True))
    assert resumed["steps"] == 8 and steps_logged(run, "train") == list(range(1, 9))
    evaluate.main(["--run", str(run), "--protocol", "linear+knn", "--device", "cuda"])
    for name in ("eval_knn.json", "eval_linear.json"):
        assert 0.1 < json.loads((run / name).read_text())["top1"] <= 1


def test_lars_trains_with_weights_adapted_and_biases_and_norms_left_out(tmp_path):
    """``--optimizer lars``: the weights (with decay and the trust ratio) and the biases and
    norms (neither) in their two groups, and a short real run whose loss falls and whose
    checkpoint resumes into the same optimiser."""
    summary = pretrain.main(["--method", "simclr", "--train-images", "256", "--batch-size", "64", "--epochs", "3",
                             "--width", "8", "--proj-hidden", "64", "--knn-train-images", "256",
                             "--knn-test-images", "128", "--log-every", "1", "--bf16", "off", "--device", "cpu",
                             "--optimizer", "lars", "--run-dir", str(tmp_path / "run")])
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["optimizer"] == "lars" and saved["lr"] == pytest.approx(0.25) and saved["weight_decay"] == 1e-4
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "train.jsonl").read_text().splitlines()]
    assert all(map(torch.isfinite, torch.tensor(losses))) and sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    groups = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["optimizer"]["param_groups"]
    assert [(g["adapt"], g["weight_decay"]) for g in groups] == [(True, 1e-4), (False, 0.0)]
    assert summary["steps"] == 12


def test_an_interrupted_lars_run_resumes_to_the_uninterrupted_weights(tmp_path, monkeypatch):
    """The momentum buffers and the two LARS groups come back from the checkpoint: stopped
    after its fifth step and resumed, the run ends where the uninterrupted one does."""
    reference = pretrain.pretrain(tiny_run(tmp_path / "reference", optimizer="lars"))
    run = tmp_path / "interrupted"
    stop_at_sixth_step(monkeypatch, tiny_run(run, optimizer="lars"))
    resumed = pretrain.pretrain(tiny_run(run, optimizer="lars", resume=True))
    assert resumed["steps"] == reference["steps"] == 8
    assert_same_final_weights(run, tmp_path / "reference")
    groups = load_checkpoint(run / "checkpoint.pt")["optimizer"]["param_groups"]
    assert [group["adapt"] for group in groups] == [True, False]
