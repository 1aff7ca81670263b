"""core_ssl.device: bf16 is chosen only where the device runs it natively."""

import pytest
import torch

from core_ssl import device as device_module
from core_ssl.device import native_bf16, resolve_bf16


@pytest.mark.parametrize("native", [True, False])
def test_auto_follows_native_support(monkeypatch, native):
    monkeypatch.setattr(device_module, "native_bf16", lambda device: native)
    assert resolve_bf16("auto", torch.device("cpu")) is native
    assert resolve_bf16("off", torch.device("cpu")) is False


def test_forcing_emulated_bf16_warns(monkeypatch):
    monkeypatch.setattr(device_module, "native_bf16", lambda device: False)
    with pytest.warns(UserWarning, match="emulates"):
        assert resolve_bf16("on", torch.device("cpu")) is True


def test_booleans_from_old_configs_are_accepted(monkeypatch):
    monkeypatch.setattr(device_module, "native_bf16", lambda device: True)
    assert resolve_bf16(True, torch.device("cpu")) is True
    assert resolve_bf16(False, torch.device("cpu")) is False


def test_unknown_setting_is_named():
    with pytest.raises(ValueError, match="auto, on, off"):
        resolve_bf16("maybe", torch.device("cpu"))


def test_cpu_answer_is_the_cpu_feature_flags():
    expected = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert native_bf16(torch.device("cpu")) == expected


def test_machine_facts_name_what_speed_depends_on():
    from core_ssl.device import machine_facts

    facts = machine_facts()
    assert facts["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert facts["native_bf16_cpu"] == native_bf16(torch.device("cpu"))
    assert facts["torch"] == torch.__version__ and facts["cpu_count"] >= 1


def test_conv_micro_batch_setting():
    from core_ssl.device import CONV_MICRO_BATCH_CPU, resolve_conv_micro_batch

    assert resolve_conv_micro_batch("auto", torch.device("cpu")) == CONV_MICRO_BATCH_CPU
    assert resolve_conv_micro_batch("auto", torch.device("cuda")) is None
    assert resolve_conv_micro_batch("off", torch.device("cpu")) is None
    assert resolve_conv_micro_batch("0", torch.device("cpu")) is None
    assert resolve_conv_micro_batch("64", torch.device("cpu")) == 64
    for bad in ("-1", "many", 2.5):
        with pytest.raises(ValueError, match="auto, off or a positive integer"):
            resolve_conv_micro_batch(bad, torch.device("cpu"))


@pytest.mark.parametrize("name", ["Adam", "AdamW", "SGD"])
def test_fused_optimizers_match_the_for_each_kernels(name):
    """The fused kernel chosen by fused_optimizer_kwargs is a speed setting: five steps give the
    parameters the for-each kernel gives, to float rounding."""
    from core_ssl.device import fused_optimizer_kwargs

    torch.manual_seed(0)
    start = [torch.randn(64, 33), torch.randn(33), torch.randn(4, 3, 3, 3)]
    grads = [[torch.randn_like(t) for t in start] for _ in range(5)]
    settings = {"lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4} if name == "SGD" else {"lr": 0.01, "weight_decay": 1e-4}
    results = []
    for fused in (False, True):
        params = [torch.nn.Parameter(t.clone()) for t in start]
        extra = fused_optimizer_kwargs(params) if fused else {"foreach": True}
        assert not fused or extra == {"fused": True}
        optimizer = getattr(torch.optim, name)(params, **settings, **extra)
        for step in grads:
            for p, g in zip(params, step):
                p.grad = g.clone()
            optimizer.step()
        results.append(params)
    for a, b in zip(*results):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


def test_fused_optimizers_are_not_asked_for_integer_or_empty_parameters():
    from core_ssl.device import fused_optimizer_kwargs

    assert fused_optimizer_kwargs([]) == {}
    assert fused_optimizer_kwargs([torch.zeros(3, dtype=torch.int64)]) == {}


def test_convolutions_are_autotuned_on_cuda_only(monkeypatch):
    from core_ssl.device import tune_convolutions

    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    tune_convolutions(torch.device("cpu"))
    assert torch.backends.cudnn.benchmark is False
    tune_convolutions(torch.device("cuda"))  # no GPU needed: it only sets cuDNN's flag
    assert torch.backends.cudnn.benchmark is True
