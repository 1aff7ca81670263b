"""Device selection and mixed precision: one place that decides where and how tensors run."""

from __future__ import annotations

import contextlib

import torch

from core_ssl.cli import UsageError


def resolve_device(name: str = "auto") -> torch.device:
    """Turn ``auto | cpu | cuda | cuda:N`` into a ``torch.device``.

    ``auto`` picks CUDA when it is available and the CPU otherwise. Asking for CUDA on a
    machine without it (or for a GPU index it does not have) is a :class:`UsageError` (exit 2,
    one line), not a silent fallback; so is a name that is no device.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown device {name!r}", "use --device auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"--device {name} was requested but CUDA is not available on this machine",
                         "use --device cpu or --device auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UsageError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)",
                         f"use --device cuda:0 .. cuda:{torch.cuda.device_count() - 1}, or --device auto")
    return device


def autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on the given device, or a no-op context when disabled.

    bf16 keeps fp32's exponent range, so no loss scaling is needed. Losses are computed in
    fp32 by the loss functions themselves (they upcast their inputs). While a CUDA graph is being
    recorded the cast weights are not cached (torch's rule for autocast in graphs; the recorded
    casts are replayed with the graph).
    """
    if not enabled:
        return contextlib.nullcontext()
    recording = device.type == "cuda" and torch.cuda.is_current_stream_capturing()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, cache_enabled=not recording)


def tune_convolutions(device: torch.device) -> None:
    """On CUDA, let cuDNN time its convolution algorithms once per input shape and keep the
    fastest (``torch.backends.cudnn.benchmark``); the training commands feed fixed shapes, where
    this pays after the first steps. A no-op on other devices."""
    if torch.device(device).type == "cuda":
        torch.backends.cudnn.benchmark = True


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 convolutions and matmuls run natively (fast) on ``device``.

    True on CUDA devices that support bf16 and on CPUs with AVX512-BF16 or AMX. Elsewhere torch
    emulates bf16 in software: on an AVX2-only AMD EPYC a 1024x1024 bf16 GEMM ran at 0.49
    GFLOP/s against 37 GFLOP/s in fp32, and a CURL update took 30 s instead of 4 s, so bf16
    must not be switched on by default there.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return False


BF16_CHOICES = ("auto", "on", "off")


def resolve_bf16(setting: str | bool, device: torch.device) -> bool:
    """``auto`` -> :func:`native_bf16`; ``on`` / True -> bf16 (with a warning when it would be
    emulated); ``off`` / False -> fp32. Booleans are accepted for configs saved before the
    setting took ``auto``."""
    if isinstance(setting, bool):
        setting = "on" if setting else "off"
    if setting not in BF16_CHOICES:
        raise ValueError(f"bf16 must be one of {', '.join(BF16_CHOICES)}, got {setting!r}")
    if setting == "auto":
        return native_bf16(device)
    if setting == "on" and not native_bf16(device):
        import warnings

        warnings.warn(f"bf16 was requested but {torch.device(device)} has no native bf16 (no AVX512-BF16 or AMX "
                      "on this CPU): torch emulates it, typically 10-80x slower than fp32. Use --bf16 auto or off.",
                      stacklevel=2)
    return setting == "on"


CONV_MICRO_BATCH_CPU = 32


def resolve_conv_micro_batch(setting: str | int | None, device: torch.device) -> int | None:
    """The micro-batch of a batch-independent conv stack (:class:`core_ssl.encoders.CurlEncoder`):
    ``auto`` -> 32 on a CPU, None (whole batch) on CUDA; ``0`` / ``off`` / None -> None; a
    positive integer -> itself.

    Why 32 on a CPU: a conv layer's activations for a 128-image batch of 84x84 frames (128 x 32
    x 41 x 41 floats, 28 MB) overflow the caches, and per image the CURL conv stack then cost
    2-3x what it costs in batches of 32-64 (forward and backward, AVX2 EPYC, one thread;
    ``python benchmarks/rl.py --conv-micro-batch auto off``). A GPU has no such cliff and wants
    the whole batch.
    """
    if setting is None or setting in ("off", "0", 0):
        return None
    if setting == "auto":
        return None if torch.device(device).type == "cuda" else CONV_MICRO_BATCH_CPU
    if isinstance(setting, bool) or not isinstance(setting, (int, str)) or not str(setting).isdigit():
        raise ValueError(f"conv micro-batch must be auto, off or a positive integer, got {setting!r}")
    return int(setting) or None


FUSED_OPTIMIZER_DEVICES = ("cpu", "cuda")


def fused_optimizer_kwargs(parameters) -> dict[str, bool]:
    """``{"fused": True}`` for ``torch.optim.Adam / AdamW / SGD`` when every parameter is a
    floating-point tensor on a CPU or CUDA device, else ``{}`` (the default for-each kernels).

    The fused kernel computes the same update in one pass over each tensor instead of a
    sequence of element-wise ops per tensor: on this project's AVX2 EPYC an Adam step over 24.6 M
    parameters took 30 ms fused against 110-270 ms for-each (one thread), about 8% of a CURL
    update at batch 32. The results agree to float rounding (tests/core_ssl/test_device.py).
    """
    parameters = list(parameters)
    if parameters and all(p.is_floating_point() and p.device.type in FUSED_OPTIMIZER_DEVICES for p in parameters):
        return {"fused": True}
    return {}


def fused_optimizer(optimizer_class: type, params, **settings):
    """``optimizer_class(params, **settings)`` with the fused kernel where
    :func:`fused_optimizer_kwargs` allows it; ``params`` may be tensors or param-group dicts."""
    params = list(params)
    tensors = [p for item in params for p in (item["params"] if isinstance(item, dict) else [item])]
    return optimizer_class(params, **settings, **fused_optimizer_kwargs(tensors))


def machine_facts() -> dict[str, object]:
    """What a speed number depends on, for every benchmark's JSON lines: the CPU model, the SIMD
    level torch dispatches to (``AVX2``, ``AVX512``, ...), whether bf16 is native, core and
    thread counts, the torch version and the OpenMP wait policy. Numbers measured on machines
    whose facts differ must not be divided by each other."""
    import os
    import platform

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return {"cpu_model": model, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "native_bf16_cpu": native_bf16(torch.device("cpu")), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset)"),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
