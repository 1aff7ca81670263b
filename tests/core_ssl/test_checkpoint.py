"""Atomic checkpoints, refusal of pickled code, safetensors export, RNG capture."""

import copy
import os
import pickle
import random
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from core_ssl import checkpoint
from core_ssl.checkpoint import CheckpointError, read_safetensors_metadata


def test_round_trip(tmp_path):
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": 7, "config": {"lr": 1e-3, "name": "x"}}
    path = checkpoint.save_checkpoint(state, tmp_path / "run" / "last.pt")
    loaded = checkpoint.load_checkpoint(path)
    assert loaded["step"] == 7 and loaded["config"] == {"lr": 1e-3, "name": "x"}
    for k, v in model.state_dict().items():
        assert torch.equal(loaded["model"][k], v)
    fresh = torch.optim.Adam(torch.nn.Linear(4, 3).parameters())
    fresh.load_state_dict(loaded["optimizer"])
    assert [p.name for p in tmp_path.joinpath("run").iterdir()] == ["last.pt"]  # no temporary left


class Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_refuses_a_checkpoint_that_carries_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"weights": torch.zeros(2), "payload": Exploit()}, path)
    with pytest.raises(CheckpointError, match="refusing to load .*evil.pt.*pickled code") as info:
        checkpoint.load_checkpoint(path)
    assert "\n" not in str(info.value) and "\x1b" not in str(info.value)  # one line, not torch's page of advice
    assert "GLOBAL" in str(info.value) and "Weights only load failed" not in str(info.value)
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(CheckpointError, match="raw.pkl"):
        checkpoint.load_checkpoint(raw)


def test_corrupt_and_missing_files_are_named(tmp_path):
    path = checkpoint.save_checkpoint({"w": torch.randn(100)}, tmp_path / "c.pt")
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="c.pt.*corrupt or truncated"):
        checkpoint.load_checkpoint(path)
    with pytest.raises(CheckpointError, match="no checkpoint at .*nothing.pt"):
        checkpoint.load_checkpoint(tmp_path / "nothing.pt")


def test_interrupted_write_keeps_the_previous_checkpoint(tmp_path):
    path = checkpoint.save_checkpoint({"step": 1}, tmp_path / "last.pt")

    def crash(f):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        checkpoint.atomic_write(path, crash)
    assert checkpoint.load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_leftover_of_a_killed_write_is_removed_by_the_next_save(tmp_path):
    leftover = tmp_path / ".last.pt.abc123.tmp"  # what SIGKILL during a save leaves behind
    leftover.write_bytes(b"half a checkpoint")
    os.utime(leftover, (0, 0))
    other = tmp_path / ".other.pt.abc123.tmp"
    other.write_bytes(b"another file's temporary")
    os.utime(other, (0, 0))
    checkpoint.save_checkpoint({"step": 2}, tmp_path / "last.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.pt.abc123.tmp", "last.pt"]


def test_safetensors_export(tmp_path):
    model = torch.nn.Conv2d(3, 4, 3)
    path = checkpoint.export_weights(model.state_dict(), tmp_path / "w.safetensors", {"arch": "conv"})
    loaded = checkpoint.load_weights(path)
    for k, v in model.state_dict().items():
        assert torch.equal(loaded[k], v)
    (tmp_path / "bad.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        checkpoint.load_weights(tmp_path / "bad.safetensors")


def test_rng_state_round_trip(tmp_path):
    torch.manual_seed(3); np.random.seed(3); random.seed(3)
    state = checkpoint.capture_rng_state()
    checkpoint.save_checkpoint({"rng": state}, tmp_path / "rng.pt")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(99); np.random.seed(99); random.seed(99)
    checkpoint.restore_rng_state(checkpoint.load_checkpoint(tmp_path / "rng.pt")["rng"])
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], got[0]) and np.array_equal(expected[1], got[1]) and expected[2] == got[2]


def test_written_files_get_the_permissions_of_a_plainly_created_file(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_bytes(b"x")
    written = checkpoint.atomic_write(tmp_path / "atomic.txt", lambda f: f.write(b"x"))
    assert stat.S_IMODE(written.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)


def test_an_encoder_file_whose_tensors_disagree_with_its_architecture_is_named(tmp_path):
    from safetensors.torch import load_file, save_file

    from core_ssl.weights import load_encoder_weights

    shipped = Path(__file__).resolve().parents[2] / "docs" / "weights" / "vision" / "simclr.safetensors"
    metadata = read_safetensors_metadata(shipped)
    metadata["architecture"] = metadata["architecture"].replace('"width": 32', '"width": 16')
    save_file(load_file(str(shipped)), str(tmp_path / "edited.safetensors"), metadata=metadata)
    with pytest.raises(CheckpointError) as info:
        load_encoder_weights(tmp_path / "edited.safetensors")
    assert str(info.value).startswith(f"the weights in {tmp_path / 'edited.safetensors'} do not fit the network its "
                                      "settings describe (size mismatch for ")
    assert "\n" not in str(info.value)


def _adam(**flags) -> tuple[torch.nn.Linear, torch.optim.Adam]:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    return model, torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.5, 0.9), **flags)


def _train(model: torch.nn.Linear, optimizer: torch.optim.Optimizer, steps: int) -> None:
    for i in range(steps):
        optimizer.zero_grad()
        model(torch.full((4, 3), float(i + 1))).pow(2).mean().backward()
        optimizer.step()


def test_an_optimizer_state_is_restored_with_the_loading_optimizers_run_flags():
    """What was learnt (moments, steps, learning rate, betas) comes from the saved state; how the
    optimiser runs (fused, for-each, capturable) stays as the loading run built it."""
    saved_model, saved = _adam(foreach=True)
    _train(saved_model, saved, 3)
    state = saved.state_dict()
    state["param_groups"][0]["capturable"] = True  # as a CUDA-graph run saves it
    state["param_groups"][0]["lr"] = 5e-3          # as a schedule left it

    model, optimizer = _adam(fused=True)
    model.load_state_dict(saved_model.state_dict())
    checkpoint.load_optimizer_state(optimizer, state)
    group = optimizer.param_groups[0]
    assert group["fused"] is True and group["capturable"] is False and group["foreach"] is None
    assert group["lr"] == 5e-3 and group["betas"] == (0.5, 0.9)
    for param in model.parameters():
        assert optimizer.state[param]["step"].item() == 3 and optimizer.state[param]["step"].dtype == torch.float32
        torch.testing.assert_close(optimizer.state[param]["exp_avg"],
                                   saved.state[dict(zip(model.parameters(), saved_model.parameters()))[param]]["exp_avg"])
    _train(model, optimizer, 1)  # a CPU refuses to step a capturable optimiser: the saved flag did not come back

    plain_model, plain = _adam()
    torch.optim.Adam.load_state_dict(plain, copy.deepcopy(state))  # torch's own: the saved flag comes back
    with pytest.raises(AssertionError, match="capturable=True"):
        _train(plain_model, plain, 1)
