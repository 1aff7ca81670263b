"""Real training on the cat/dog photos, and the commands end to end: train, resume, translate,
evaluate."""

import json
import os
import re
import signal

import pytest
import torch
from PIL import Image

from core_ssl.checkpoint import load_checkpoint, load_weights, save_checkpoint
from core_ssl.cli import CommandError, run_command
from core_ssl.run import ConfigMismatch
from core_ssl.data import read_image_files
from cut_translation import evaluate, report, train, translate
from cut_translation.data import UnpairedBatches, load_unpaired, to_model_range
from cut_translation.model import CUTModel, CUTSettings
from tests.user_folder import contents, make_user_folder


@pytest.mark.slow
def test_training_on_cat_dog_photos_lowers_the_nce_loss():
    """Thirty real CUT steps at 64 px (ngf 16): the PatchNCE of held-out cats against their
    translations, at fixed sampled locations, falls well below its starting value (log 256 ~ 5.5)."""
    torch.manual_seed(0)
    data = load_unpaired("catdog-128.zip", size=64, holdout=8, seed=0)
    model = CUTModel(CUTSettings.for_mode("cut", ngf=16, ndf=16, n_blocks=6))
    held_out = to_model_range(data.test_a[:4])

    def held_out_nce() -> float:
        torch.manual_seed(123)
        with torch.no_grad():
            return model.nce_loss(held_out, model.translate(held_out)).item()

    before = held_out_nce()
    batches = UnpairedBatches(data, batch_size=1, seed=0)
    for step, (real_a, real_b) in enumerate(batches.epoch()):
        if step == 30:
            break
        losses = model.train_step(real_a, real_b)
        assert all(torch.isfinite(v).all() for v in losses.values())
    after = held_out_nce()
    print(f"held-out PatchNCE {before:.3f} -> {after:.3f}")
    assert before > 5.0
    assert after < before - 1.0


def write_subset(folder, count):
    """A small unpaired folder of real cat (A) and dog (B) photos."""
    for domain, source in (("trainA", "trainA"), ("trainB", "trainB")):
        names, images = read_image_files("catdog-128.zip", source)
        (folder / domain).mkdir(parents=True)
        for name, image in zip(names[:count], images[:count]):
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / domain / name.replace(".jpg", ".png"))
    return folder


@pytest.mark.needs("inception")
@pytest.mark.slow
def test_train_resume_translate_evaluate(tmp_path, monkeypatch):
    data = write_subset(tmp_path / "catdog", 24)
    common = ["--preset", "smoke", "--data", str(data), "--holdout", "8", "--eval-images", "4",
              "--classifier-images", "5"]

    straight = tmp_path / "straight"
    summary = train.main([*common, "--run-dir", str(straight)])
    for name in ("config.json", "train.csv", "eval.csv", "checkpoint.pt", "best.pt", "generator.safetensors",
                 "generator_best.safetensors", "summary.json", "samples/epoch_001.png", "samples/epoch_002.png"):
        assert (straight / name).is_file(), name
    assert summary["epochs"] == 2 and summary["steps"] == 10
    assert summary["identity_baseline"]["fid"] > 0 and summary["best"]["epoch"] in (1, 2)
    with Image.open(straight / "samples/epoch_002.png") as grid:
        assert grid.size == (2 + 6 * (32 + 2), 2 + 4 * (32 + 2))  # 6 images x (A, G(A), B, G(B))
    rows = [json.loads(line) for line in (straight / "eval.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    for row in rows:  # every evaluation logs each measure with its interval
        for key in ("kid", "domain_share", "content") + (("kid_gain",) if row["epoch"] else ()):
            assert row[f"{key}_low"] <= row[key] <= row[f"{key}_high"], (row["epoch"], key)
        for key in ("fid",) + (("fid_gain",) if row["epoch"] else ()):  # basic intervals: bias-corrected
            assert row[f"{key}_low"] < row[f"{key}_high"], (row["epoch"], key)
    assert {"domain_share_real_b", "content_unrelated", "classifier_accuracy"} <= set(rows[0])
    assert (straight / "eval_features.pt").is_file()  # the real images' features, computed once
    text = report.main([str(straight)])
    assert "| 0 (identity baseline) |" in text and "(best FID)" in text and "domain-B share" in text
    assert "unrelated B image (floor)" in text
    with Image.open(straight / "metrics.png") as plot:  # every measure by epoch, drawn by the report
        assert plot.format == "PNG" and plot.size[0] > plot.size[1]
    with pytest.raises(CommandError, match="already holds a run .* pass --resume"):
        train.main([*common, "--run-dir", str(straight)])

    # Interrupted after the first epoch, then resumed: the same generator as the straight run.
    interrupted = tmp_path / "interrupted"
    original_step = CUTModel.train_step
    calls = []

    def failing_step(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 7:
            raise KeyboardInterrupt
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(CUTModel, "train_step", failing_step)
    with pytest.raises(KeyboardInterrupt):
        train.main([*common, "--run-dir", str(interrupted), "--eval-every", "0"])
    monkeypatch.setattr(CUTModel, "train_step", original_step)
    train.main([*common, "--run-dir", str(interrupted), "--eval-every", "0", "--resume"])
    resumed_weights = load_weights(interrupted / "generator.safetensors")
    straight_weights = load_weights(straight / "generator.safetensors")
    for name, value in straight_weights.items():
        assert torch.allclose(resumed_weights[name], value, atol=1e-6), name
    steps = [json.loads(line)["step"] for line in (interrupted / "train.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 11))  # no duplicated rows after the resume

    # Translate a folder and one odd-sized image, without any domain-B data.
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for index, size in enumerate([(32, 32), (50, 38)]):
        Image.new("RGB", size, (40 * index, 90, 160)).save(inputs / f"image{index}.jpg")
    out = tmp_path / "translated"
    written = translate.main(["--checkpoint", str(straight / "best.pt"), "--input", str(inputs), "--output", str(out)])
    assert sorted(p.name for p in written) == ["image0.png", "image1.png"]
    with Image.open(out / "image1.png") as image:
        assert image.size == (50, 38) and image.mode == "RGB"
    single = translate.main(["--checkpoint", str(straight / "generator_best.safetensors"),
                             "--input", str(inputs / "image0.jpg"), "--output", str(tmp_path / "one")])
    assert len(single) == 1 and single[0].is_file()

    # Evaluate the best generator on the run's held-out split, and two folders.
    result = evaluate.main(["--checkpoint", str(straight / "best.pt"), "--output", str(tmp_path / "eval.json"),
                            "--max-images", "4", "--classifier-images", "0", "--bootstrap-reps", "100"])
    assert result["size"] == 32 and result["translated"]["images"] == 4
    assert result["identity_baseline"]["fid"] == pytest.approx(summary["identity_baseline"]["fid"], rel=1e-6)
    assert result["domain_b_drift"]["images"] == 4 and result["domain_b_drift"]["fid"] > 0
    assert result["translated"]["fid"] == pytest.approx(summary["best"]["fid"], rel=1e-4)  # best.pt's own FID
    folders = evaluate.main(["--fake", str(out), "--real", str(inputs), "--bootstrap-reps", "50"])
    assert folders["images"] == 2 and folders["fid_low"] <= folders["fid"] <= folders["fid_high"]
    assert "large-sample FID" in result["fid_interval"] and folders["fid_interval"] == result["fid_interval"]


def test_gan_only_training_on_two_classes_of_a_class_folder_zip(tmp_path):
    """lambda_NCE = 0 trains (GAN loss only, no NCE logged) on two classes of a
    {train,test}/<class>/ zip, the CIFAR-10 layout, through the command."""
    from tests.cut_translation.test_data import write_class_zip

    archive = write_class_zip(tmp_path / "classes.zip", ["cat", "horse", "truck"], {"train": 6, "test": 3})
    run = tmp_path / "gan-only"
    summary = train.main(["--preset", "smoke", "--data", f"{archive}:horse,truck", "--lambda-nce", "0",
                          "--eval-every", "0", "--steps-per-epoch", "3", "--run-dir", str(run)])
    assert summary["steps"] == 6 and summary["mode"] == "cut"
    logged = [json.loads(line) for line in (run / "train.jsonl").read_text().splitlines()]
    assert len(logged) == 6 and all("loss_nce" not in row and row["loss_g"] == row["loss_g_gan"] for row in logged)
    assert json.loads((run / "config.json").read_text())["lambda_nce"] == 0


def test_translate_files_with_a_grey_model(tmp_path):
    settings = CUTSettings.for_mode("cut", in_channels=1, ngf=4, n_blocks=1)
    generator = translate.ResnetGenerator(1, 1, ngf=4, n_blocks=1)
    model = translate.LoadedGenerator(generator.eval(), settings)
    (tmp_path / "in" / "sub").mkdir(parents=True)
    Image.new("RGB", (21, 16), (200, 10, 10)).save(tmp_path / "in" / "sub" / "red.png")
    written = translate.translate_files(model, [tmp_path / "in" / "sub" / "red.png"], tmp_path / "in", tmp_path / "out")
    assert written == [tmp_path / "out" / "sub" / "red.png"]
    with Image.open(written[0]) as image:
        assert image.mode == "L" and image.size == (21, 16)


SMOKE = ["--preset", "smoke", "--eval-every", "0", "--holdout", "4", "--samples", "2", "--device", "cpu"]


def test_sigint_mid_epoch_saves_and_the_resumed_run_is_bit_identical(tmp_path, monkeypatch, capsys):
    data = write_subset(tmp_path / "catdog", 12)
    flags = [*SMOKE, "--data", str(data)]
    train.main([*flags, "--run-dir", str(tmp_path / "straight")])

    original_step, calls = CUTModel.train_step, []

    def interrupt_at_third_step(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(CUTModel, "train_step", interrupt_at_third_step)
    run = tmp_path / "interrupted"
    with pytest.raises(SystemExit) as stopped:
        run_command(train.main, [*flags, "--run-dir", str(run)])
    assert stopped.value.code == 143 and len(calls) == 3
    assert capsys.readouterr().err.strip().endswith(
        f"error: stopped by SIGTERM; checkpoint saved at step 3 — continue with: python -m cut_translation.train "
        f"--run-dir {run} --resume")
    saved = load_checkpoint(run / "checkpoint.pt")
    assert (saved["epoch"], saved["batch_in_epoch"], saved["step"]) == (0, 3, 3)
    assert train.Position.from_checkpoint(saved) == train.Position(epoch=0, batch_in_epoch=3, step=3,
                                                                    elapsed_seconds=saved["elapsed_seconds"])
    assert saved["elapsed_seconds"] > 0
    monkeypatch.setattr(CUTModel, "train_step", original_step)

    with pytest.raises(ConfigMismatch, match="--lambda-gan: saved 1.0, given 2.0; --seed: saved 0, given 1"):
        train.main([*flags, "--run-dir", str(run), "--resume", "--lambda-gan", "2", "--seed", "1"])
    summary = train.main(["--run-dir", str(run), "--resume"])
    assert summary["steps"] == 10
    resumed, straight = (load_weights(r / "generator.safetensors") for r in (run, tmp_path / "straight"))
    for name, value in straight.items():
        assert torch.equal(resumed[name], value), name
    steps = [json.loads(line)["step"] for line in (run / "train.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 11))


EARLIER_CHECKPOINT_KEYS = ("model", "run", "config", "epoch", "batch_in_epoch", "step", "best", "baseline",
                           "elapsed_seconds", "rng", "data_rng")
"""The top-level keys of a training checkpoint as the loop wrote them before its Position dataclass."""


def stop_with_sigterm_at_step(monkeypatch, step: int, argv: list[str]) -> None:
    """Run the command, sending SIGTERM to this process during ``step``; it must exit 143."""
    original_step, calls = CUTModel.train_step, []

    def interrupting_step(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == step:
            os.kill(os.getpid(), signal.SIGTERM)
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(CUTModel, "train_step", interrupting_step)
    with pytest.raises(SystemExit) as stopped:
        run_command(train.main, argv)
    assert stopped.value.code == 143 and len(calls) == step
    monkeypatch.setattr(CUTModel, "train_step", original_step)


def test_a_checkpoint_in_the_earlier_format_resumes_where_it_stood(tmp_path, monkeypatch, capsys):
    """Checkpoints written before the Position dataclass, rewritten here key by key in their own
    layout: one saved mid-epoch, and one saved at an epoch's end without ``batch_in_epoch`` (as
    the oldest ones are). Both resume to the straight run's generator, with every step logged once."""
    data = write_subset(tmp_path / "catdog", 12)
    flags = [*SMOKE, "--data", str(data)]
    train.main([*flags, "--run-dir", str(tmp_path / "straight")])
    straight = load_weights(tmp_path / "straight" / "generator.safetensors")

    for stop_at, keys, position in ((3, EARLIER_CHECKPOINT_KEYS, (0, 3, 3)),
                                    (5, tuple(k for k in EARLIER_CHECKPOINT_KEYS if k != "batch_in_epoch"), (1, 0, 5))):
        run = tmp_path / f"stopped-at-{stop_at}"
        stop_with_sigterm_at_step(monkeypatch, stop_at, [*flags, "--run-dir", str(run)])
        saved = load_checkpoint(run / "checkpoint.pt")
        assert tuple(saved) == EARLIER_CHECKPOINT_KEYS  # the layout is unchanged
        save_checkpoint({key: saved[key] for key in keys}, run / "checkpoint.pt")
        capsys.readouterr()

        summary = train.main(["--run-dir", str(run), "--resume"])
        assert (summary["epochs"], summary["steps"]) == (2, 10), stop_at
        assert summary["wall_clock_seconds"] >= round(saved["elapsed_seconds"], 1)
        resumed = load_weights(run / "generator.safetensors")
        for name, value in straight.items():
            assert torch.equal(resumed[name], value), (stop_at, name)
        steps = [json.loads(line)["step"] for line in (run / "train.jsonl").read_text().splitlines()]
        assert steps == list(range(1, 11)), stop_at
        epochs = [json.loads(line)["epoch"] for line in (run / "train.jsonl").read_text().splitlines()]
        assert epochs == [1] * 5 + [2] * 5, stop_at
        assert (saved["epoch"], saved.get("batch_in_epoch", 0), saved["step"]) == position


def test_the_mode_defaults_are_filled_in_once_and_the_model_settings_read_them(monkeypatch):
    """resolve_mode_defaults fills the config (what config.json records); the model's settings
    are read from that config, without looking the mode's defaults up a second time."""
    for mode in ("cut", "fastcut"):
        cfg = train.resolve_mode_defaults(train.TrainConfig(mode=mode, ngf=8, n_blocks=2, bf16="off"))
        expected = CUTSettings.for_mode(mode, ngf=8, n_blocks=2)
        assert (cfg.epochs, cfg.epochs_decay, cfg.lambda_nce) == (expected.n_epochs, expected.n_epochs_decay,
                                                                   expected.lambda_nce)
        with monkeypatch.context() as patched:
            patched.setattr(CUTSettings, "for_mode", lambda *args, **kwargs: pytest.fail("for_mode called again"))
            assert train._settings(cfg, 3, torch.device("cpu")) == expected
        given = train.resolve_mode_defaults(train.TrainConfig(mode=mode, epochs=3, nce_idt=False))
        assert (given.epochs, given.nce_idt) == (3, False)
    with pytest.raises(ValueError, match="epochs, epochs_decay, lambda_nce, nce_idt, flip_equivariance of the "
                                         "config are not resolved"):
        train._settings(train.TrainConfig(), 3, torch.device("cpu"))


def test_a_non_finite_generator_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    """A blow-up in the second epoch (simulated: the generator's weights turn to NaN at step 7)
    stops the run with exit 1 naming the loss and the step; the checkpoint of epoch 1 is kept.
    A learning rate of 1e9 breaks the weights in the first steps: no checkpoint, no generator."""
    data = write_subset(tmp_path / "catdog", 12)
    original_step, calls = CUTModel.train_step, []

    def blow_up_at_step_seven(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 7:
            with torch.no_grad():
                next(self.generator.parameters()).fill_(float("nan"))
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(CUTModel, "train_step", blow_up_at_step_seven)
    run = tmp_path / "blow-up"
    with pytest.raises(SystemExit) as stopped:
        run_command(train.main, [*SMOKE, "--data", str(data), "--run-dir", str(run)])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert stopped.value.code == 1
    assert re.match(r"error: loss_\w+ became nan at step 7; the run stopped and the last good checkpoint "
                    r"\(checkpoint.pt, step 5\) is kept — lower the learning rate \(--lr\)", err), err
    kept = load_checkpoint(run / "checkpoint.pt")
    assert kept["step"] == 5 and all(torch.isfinite(t).all() for t in kept["model"]["generator"].values())
    monkeypatch.setattr(CUTModel, "train_step", original_step)

    run = tmp_path / "nan"
    with pytest.raises(SystemExit) as stopped:
        run_command(train.main, [*SMOKE, "--data", str(data), "--lr", "1e9", "--run-dir", str(run)])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert stopped.value.code == 1, err
    assert re.match(r"error: (loss_\w+ became nan|\S+ became non-finite) at (step|epoch) \d+.*; the run stopped and "
                    r"no checkpoint was written — lower the learning rate \(--lr\)", err), err
    assert not (run / "generator.safetensors").exists() and not (run / "checkpoint.pt").exists()


def test_a_folder_of_another_tools_files_is_refused_and_left_as_it_was(tmp_path, capsys):
    user = tmp_path / "u"
    files = make_user_folder(user)
    with pytest.raises(SystemExit) as stopped:
        run_command(train.main, ["--preset", "smoke", "--device", "cpu", "--run-dir", str(user)])
    assert stopped.value.code == 2 and "is not a run folder of this toolkit" in capsys.readouterr().err
    assert contents(user) == files


def test_settings_across_flags_are_refused_before_the_run_folder(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        run_command(train.main, ["--preset", "smoke", "--device", "cpu", "--classifier-images", "4",
                                 "--run-dir", str(tmp_path / "run")])
    assert stopped.value.code == 2 and not (tmp_path / "run").exists()
    assert capsys.readouterr().err.strip() == ("error: --classifier-images must be 0 (no domain classifier) or at "
                                               "least 5, got 4 — give 0 or 5 or more")
    with pytest.raises(SystemExit) as stopped:
        run_command(train.main, ["--preset", "smoke", "--device", "cpu", "--load-size", "32", "--size", "64",
                                 "--run-dir", str(tmp_path / "run")])
    assert stopped.value.code == 2 and not (tmp_path / "run").exists()
    assert "--load-size 32 is smaller than --size 64" in capsys.readouterr().err


def test_translate_validates_its_flags_and_names_an_image_given_as_checkpoint(tmp_path, capsys):
    Image.new("RGB", (8, 8)).save(tmp_path / "cat.png")
    with pytest.raises(SystemExit) as stopped:
        run_command(translate.main, ["--checkpoint", str(tmp_path / "cat.png"), "--input", str(tmp_path / "cat.png"),
                                     "--batch-size", "0"])
    assert stopped.value.code == 2
    assert capsys.readouterr().err.strip() == "error: --batch-size must be >= 1, got 0 — give 1 or more"
    with pytest.raises(SystemExit) as stopped:
        run_command(translate.main, ["--checkpoint", str(tmp_path / "cat.png"), "--input", str(tmp_path / "cat.png")])
    assert stopped.value.code == 1
    assert "is not a PyTorch checkpoint (a PNG image)" in capsys.readouterr().err


@pytest.mark.needs("inception")
@pytest.mark.slow
def test_runs_on_the_same_held_out_images_share_one_eval_cache(tmp_path):
    """--eval-cache: the second run (another arm, same data, size, hold-out and seed) reads the
    real images' features from the first run's file instead of recomputing them."""
    data = write_subset(tmp_path / "catdog", 16)
    cache = tmp_path / "eval_features-s0.pt"
    common = ["--preset", "smoke", "--data", str(data), "--holdout", "6", "--eval-images", "4",
              "--classifier-images", "5", "--epochs", "1", "--epochs-decay", "0", "--eval-cache", str(cache)]
    first = train.main([*common, "--run-dir", str(tmp_path / "cut-s0")])
    written = cache.stat().st_mtime_ns
    second = train.main([*common, "--mode", "fastcut", "--run-dir", str(tmp_path / "fastcut-s0")])
    assert cache.stat().st_mtime_ns == written  # read, not rewritten
    assert second["identity_baseline"] == first["identity_baseline"]
    assert not (tmp_path / "fastcut-s0" / "eval_features.pt").exists()
    # another hold-out seed does not match the key: its features are computed (and the file replaced)
    train.main([*common, "--seed", "1", "--run-dir", str(tmp_path / "cut-s1")])
    assert cache.stat().st_mtime_ns != written



def test_compiling_is_in_place_and_keeps_the_state_keys():
    model = CUTModel(CUTSettings.for_mode("cut", ngf=8, ndf=8, n_blocks=2))
    keys = list(model.state_dict())
    model.compile_networks()
    assert model.generator._compiled_call_impl is not None and model.discriminator._compiled_call_impl is not None
    assert list(model.state_dict()) == keys  # checkpoints do not depend on --compile


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (compiling on a CPU takes minutes)")
def test_compiled_networks_train_as_the_eager_ones():
    """--compile is a speed setting: the same losses to float rounding."""
    settings = CUTSettings.for_mode("cut", ngf=16, ndf=16, n_blocks=2, num_patches=16)
    torch.manual_seed(0)
    eager = CUTModel(settings).cuda()
    compiled = CUTModel(settings).cuda()
    compiled.load_state_dict(eager.state_dict())
    compiled.compile_networks()
    images = torch.Generator().manual_seed(1)
    for _ in range(3):
        real_a, real_b = ((torch.rand(1, 3, 64, 64, generator=images) * 2 - 1).cuda() for _ in range(2))
        torch.manual_seed(2)
        expected = eager.train_step(real_a, real_b, flip=False)
        torch.manual_seed(2)
        got = compiled.train_step(real_a, real_b, flip=False)
        for name in expected:
            torch.testing.assert_close(got[name], expected[name], rtol=1e-3, atol=1e-4, msg=name)


@pytest.mark.parametrize(("minutes", "elapsed", "seconds", "done", "epochs", "decay", "expected"), [
    (10, 60, 60, 1, 200, 200, (5, 5)),   # CUT: 10 epochs fit, 1:1
    (10, 60, 60, 1, 150, 50, (8, 2)),    # FastCUT: 3:1, the constant part rounded
    (1, 90, 90, 1, 200, 200, (1, 0)),    # not even one more epoch fits: stop after the first
    (2.5, 30, 30, 1, 7, 0, (5, 0)),      # no decay asked for: none planned
    (10, 300, 20, 5, 200, 200, (10, 10)),  # faster than first planned: 5 done + 15 more fit, split 1:1
    (10, 540, 60, 6, 200, 200, (6, 1)),    # slower: one more fits, and the decay cannot start in the past
])
def test_minutes_give_the_epochs_that_fill_them_in_the_ratio_asked(minutes, elapsed, seconds, done, epochs, decay,
                                                                   expected):
    assert train.epochs_for_minutes(minutes, elapsed, seconds, done, epochs, decay) == expected


def test_minutes_replan_the_run_after_its_first_epoch(tmp_path, monkeypatch, capsys):
    data = write_subset(tmp_path / "catdog", 12)
    seen = []

    def plan(minutes, elapsed, seconds, done, epochs, decay):
        seen.append((minutes, done, epochs, decay, elapsed > 0 and seconds > 0))
        return 2, 1

    monkeypatch.setattr(train, "epochs_for_minutes", plan)
    run = tmp_path / "run"
    summary = train.main([*SMOKE, "--data", str(data), "--steps-per-epoch", "2", "--minutes", "5",
                          "--run-dir", str(run)])
    assert seen == [(5.0, 1, 1, 1, True), (5.0, 2, 1, 1, True)]  # planned after each constant epoch; 1 + 1: the ratio
    assert summary["epochs"] == 3 and summary["steps"] == 6
    assert summary["planned_epochs"] == [2, 1] and load_checkpoint(run / "checkpoint.pt")["planned_epochs"] == [2, 1]
    config = json.loads((run / "config.json").read_text())
    assert (config["epochs"], config["epochs_decay"], config["minutes"]) == (1, 1, 5.0)  # the flags as given
    lrs = [row["lr"] for row in map(json.loads, (run / "train.jsonl").read_text().splitlines())]
    assert lrs[0] == lrs[-3] == pytest.approx(2e-4) and lrs[-1] == pytest.approx(1e-4)  # epoch 3 decays: 1 - 1/2
    assert "--minutes 5: 1 epoch(s) in" in capsys.readouterr().out
    again = train.main([*SMOKE, "--data", str(data), "--steps-per-epoch", "2", "--minutes", "5", "--resume",
                        "--run-dir", str(run)])
    assert again["epochs"] == 3 and again["planned_epochs"] == [2, 1] and len(seen) == 2  # decaying: no new plan
    with pytest.raises(SystemExit) as stopped:  # a planned run is not lengthened by --epochs: said, nothing lost
        run_command(train.main, [*SMOKE, "--data", str(data), "--steps-per-epoch", "2", "--minutes", "5", "--resume",
                                 "--epochs", "4", "--run-dir", str(run)])
    assert stopped.value.code == 2
    assert "were planned by --minutes 5 (2 + 1): --epochs / --epochs-decay cannot lengthen it" in capsys.readouterr().err
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 6


def test_minutes_so_short_that_one_epoch_fills_them_stop_after_it(tmp_path):
    data = write_subset(tmp_path / "catdog", 12)
    summary = train.main([*SMOKE, "--data", str(data), "--steps-per-epoch", "2", "--minutes", "0.0001",
                          "--run-dir", str(tmp_path / "run")])
    assert summary["epochs"] == 1 and summary["planned_epochs"] == [1, 0]
