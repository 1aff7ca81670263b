"""CUT / FastCUT steps replayed from CUDA graphs follow the eager steps.

The patch locations are the step's only random draw besides the flip coin (forced here): with
``num_patches`` at least every layer's grid, every location is drawn, and PatchNCE (a mean over
patches, each against all patches of its image) does not depend on their order. So a graphed
model, which draws its locations on the device, and an eager copy, which draws them on the CPU,
must agree to float rounding; the different summation orders grow through the GAN's and Adam's
feedback (about 1e-4 relative after a dozen steps), so the comparisons stay within 7 steps.
The bookkeeping (one graph per flip variant, recorded again after a learning-rate change,
dropped on restore) is checked on the CPU with a stand-in graph; the recordings need a GPU
(skipped elsewhere); the refusals run anywhere.
"""

from __future__ import annotations

import copy

import pytest
import torch

from core_ssl.cli import run_command
from core_ssl.cuda_graphs import StepGraphs
from cut_translation import train
from cut_translation.model import CUTModel, CUTSettings
from cut_translation.patchnce import sample_locations
from tests.core_ssl.test_cuda_graphs import _record_for_replay_by_calling
from tests.devices import needs_cuda

SIZE = 32
EVERY_LOCATION = 4096  # > (32 + 6)^2, the largest NCE layer's grid at 32 px (the padded input)


def _settings(mode: str, **overrides) -> CUTSettings:
    return CUTSettings.for_mode(mode, ngf=4, ndf=4, n_blocks=1, nce_dim=16, num_patches=EVERY_LOCATION,
                                **overrides)


def _pair(mode: str, device: str, graphs: str, **overrides) -> tuple[CUTModel, CUTModel]:
    """(eager, graphed) models with the same initial weights; ``graphs``: "cuda" (recorded CUDA
    graphs) or "stand-in" (the CPU stand-in: a recording replays by calling the step again)."""
    torch.manual_seed(0)
    eager = CUTModel(_settings(mode, **overrides)).to(device)
    torch.manual_seed(0)
    graphed = CUTModel(_settings(mode, **overrides), cuda_graphs=graphs == "cuda").to(device)
    if graphs == "stand-in":
        graphed.graphs = StepGraphs(graphed._step, graphed.trained_tensors, record=_record_for_replay_by_calling,
                                    run_eagerly=lambda call: call())
    return eager, graphed


def _batches(count: int, device: str, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    for i in range(count):
        images = [(torch.rand(1, 3, SIZE, SIZE, generator=g) * 2 - 1).to(device) for _ in range(2)]
        yield images, i % 2 == 1  # (real_a, real_b), the flip coin


def _assert_same(a: CUTModel, b: CUTModel, rtol: float, atol: float) -> None:
    """The weight tensors agree. Biases are left out: most sit before an instance norm, which
    removes them, so their true gradient is 0 and Adam turns the float noise of their computed
    gradient (different in each model) into steps of up to the learning rate."""
    for module in ("generator", "discriminator", "heads"):
        for (name, p), q in zip(getattr(a, module).state_dict().items(), getattr(b, module).state_dict().values()):
            if p.dim() >= 2:
                torch.testing.assert_close(p, q, rtol=rtol, atol=atol, msg=f"{module}.{name}")


def _steps_agree(eager: CUTModel, graphed: CUTModel, batches, rtol: float, atol: float) -> None:
    for (real_a, real_b), flip in batches:
        flip = flip and eager.settings.flip_equivariance
        expected, got = eager.train_step(real_a, real_b, flip=flip), graphed.train_step(real_a, real_b, flip=flip)
        assert expected.keys() == got.keys()
        for name in expected:
            torch.testing.assert_close(got[name], expected[name], rtol=rtol, atol=atol, msg=name)


# --- anywhere -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["cut", "fastcut"])
def test_the_model_replays_the_flip_variant_of_each_step_on_a_cpu_stand_in(mode):
    eager, graphed = _pair(mode, "cpu", "stand-in")
    _steps_agree(eager, graphed, _batches(6, "cpu"), rtol=1e-5, atol=1e-6)
    variants = [(False,), (True,)] if mode == "fastcut" else [(False,)]
    assert sorted(graphed.graphs.recorded) == variants
    _assert_same(graphed, eager, rtol=1e-5, atol=1e-6)


def test_a_learning_rate_change_records_the_graphs_again_and_a_constant_rate_keeps_them():
    eager, graphed = _pair("cut", "cpu", "stand-in", n_epochs=1, n_epochs_decay=2)
    batches = list(_batches(7, "cpu"))
    _steps_agree(eager, graphed, batches[:4], rtol=1e-5, atol=1e-6)
    assert graphed.graphs.recorded == [(False,)]
    eager.end_epoch(), graphed.end_epoch()  # epoch 1 of 1 at the constant rate ends: the decay begins
    assert graphed.learning_rate < 2e-4 and graphed.graphs.recorded == []
    _steps_agree(eager, graphed, batches[4:], rtol=1e-5, atol=1e-6)  # 2 eager steps, the recording
    assert graphed.graphs.recorded == [(False,)]
    _assert_same(graphed, eager, rtol=1e-5, atol=1e-6)

    graphed.set_epochs(1, 4)  # a new plan (--minutes) at the same epoch: another rate, recorded again
    assert graphed.graphs.recorded == [] and graphed.learning_rate == pytest.approx(2e-4 * (1 - 1 / 5))

    _, constant = _pair("cut", "cpu", "stand-in", n_epochs=3, n_epochs_decay=2)
    for (real_a, real_b), _ in batches[:4]:
        constant.train_step(real_a, real_b)
    constant.end_epoch()
    assert constant.graphs.recorded == [(False,)]


def test_restoring_a_training_state_drops_the_graphs():
    eager, graphed = _pair("cut", "cpu", "stand-in")
    batches = list(_batches(7, "cpu"))
    _steps_agree(eager, graphed, batches[:4], rtol=1e-5, atol=1e-6)
    graphed.load_training_state(copy.deepcopy(eager.training_state()))
    assert graphed.graphs.recorded == []
    _steps_agree(eager, graphed, batches[4:], rtol=1e-5, atol=1e-6)


def test_locations_drawn_on_the_device_are_distinct_and_uniform():
    feature = torch.zeros(2, 1, 4, 4)  # a grid of 16 locations
    counts = torch.zeros(16)
    torch.manual_seed(0)
    for _ in range(4000):
        (where,) = sample_locations([feature], 4, on_device=True)
        assert where.shape == (4,) and where.unique().numel() == 4 and 0 <= int(where.min()) <= int(where.max()) < 16
        counts[where] += 1
    expected = 4000 * 4 / 16
    assert ((counts - expected).abs() < 4 * (expected * (1 - 4 / 16)) ** 0.5).all(), counts  # within 4 sd each
    (every,) = sample_locations([feature], 99, on_device=True)
    assert sorted(every.tolist()) == list(range(16))
    grouped = sample_locations([feature], 3, groups=[1, 1], on_device=True)[0]
    assert grouped.shape == (2, 3)
    with pytest.raises(ValueError, match="pass no generator"):
        sample_locations([feature], 4, generator=torch.Generator(), on_device=True)


@pytest.mark.parametrize(("extra", "message"), [
    ([], "error: --cuda-graphs: CUDA graphs need a CUDA device, not cpu"),
    (["--compile"], "error: --cuda-graphs and --compile cannot be combined"),
])
def test_the_train_command_refuses_graphs_it_cannot_run_before_writing(extra, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        run_command(train.main, ["--data", "catdog-128.zip", "--device", "cpu", "--cuda-graphs", *extra,
                                 "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert stopped.value.code == 2 and "Traceback" not in err, err
    assert err.splitlines()[-1].startswith(message)
    assert list(tmp_path.iterdir()) == []


# --- on a GPU -------------------------------------------------------------------------------


@needs_cuda
@pytest.mark.parametrize("mode", ["cut", "fastcut"])
def test_replayed_steps_follow_the_eager_steps(mode):
    torch.backends.cudnn.allow_tf32 = False  # the same convolution arithmetic in both models
    try:
        eager, graphed = _pair(mode, "cuda", "cuda")
        _steps_agree(eager, graphed, _batches(7, "cuda"), rtol=1e-4, atol=1e-5)
        assert sorted(graphed.graphs.recorded) == ([(False,), (True,)] if mode == "fastcut" else [(False,)])
        _assert_same(graphed, eager, rtol=1e-4, atol=1e-5)
    finally:
        torch.backends.cudnn.allow_tf32 = True


@needs_cuda
def test_a_graphed_run_resumes_from_an_eager_checkpoint_and_records_again():
    """The restored optimisers keep ``capturable=True`` (the eager checkpoint saved False) and
    their step counters move to the GPU, so the step can be recorded again."""
    torch.backends.cudnn.allow_tf32 = False
    try:
        eager, graphed = _pair("cut", "cuda", "cuda", n_epochs=1, n_epochs_decay=2)
        batches = list(_batches(12, "cuda"))
        for (real_a, real_b), _ in batches[:4]:
            eager.train_step(real_a, real_b)
        graphed.load_training_state(copy.deepcopy(eager.training_state()))
        assert all(group["capturable"] for group in graphed.optimizer_g.param_groups + graphed.optimizer_d.param_groups)
        _steps_agree(eager, graphed, batches[4:8], rtol=1e-4, atol=1e-5)
        eager.end_epoch(), graphed.end_epoch()
        _steps_agree(eager, graphed, batches[8:], rtol=1e-4, atol=1e-5)
        assert graphed.graphs.recorded == [(False,)]
        _assert_same(graphed, eager, rtol=1e-4, atol=1e-5)
    finally:
        torch.backends.cudnn.allow_tf32 = True


@needs_cuda
def test_bf16_steps_replay_close_to_the_eager_ones():
    """bf16 autocast inside a recording (its weight-cast cache off while recording): the first
    replays stay within bf16 rounding of the eager steps."""
    eager, graphed = _pair("cut", "cuda", "cuda", bf16=True)
    _steps_agree(eager, graphed, list(_batches(5, "cuda")), rtol=5e-2, atol=5e-3)
    assert graphed.graphs.recorded == [(False,)]


@needs_cuda
@pytest.mark.parametrize("graphs", [False, True])
def test_the_train_command_on_cuda_trains_for_its_minutes_and_resumes(tmp_path, graphs):
    """The command's CUDA path end to end (bf16 where native, cuDNN autotuning; with --cuda-graphs
    every step replayed), planned by --minutes, then resumed on the GPU with the plan kept."""
    from tests.cut_translation.test_train import write_subset

    data = write_subset(tmp_path / "catdog", 12)
    flags = ["--preset", "smoke", "--eval-every", "0", "--holdout", "4", "--samples", "2", "--device", "cuda",
             "--data", str(data), "--steps-per-epoch", "4", "--minutes", "0.3", "--run-dir", str(tmp_path / "run")]
    summary = train.main(flags + (["--cuda-graphs"] if graphs else []))
    constant, decay = summary["planned_epochs"]
    assert summary["epochs"] == constant + decay >= 1 and summary["steps"] == 4 * summary["epochs"]
    again = train.main([*flags, "--resume"])
    assert again["planned_epochs"] == [constant, decay] and again["epochs"] == summary["epochs"]
