"""This machine's attainable peak: large fp32 and bf16 GEMMs and a large 3x3 convolution, on
the CPU or (``--device cuda``) a GPU.

    python benchmarks/peak.py --threads 2 > peak.json     # about 1-2 minutes on a quiet machine
    python benchmarks/peak.py --device cuda > peak-gpu.json   # the GPU's, under a minute
    python benchmarks/peak.py --quick                      # a check of the script, seconds

Kernels, each at growing sizes until one call takes longer than ``--max-call-s`` (so emulated
bf16, 10-80x slower than fp32 on CPUs without AVX512-BF16 or AMX, stops early):

- ``gemm``: ``torch.mm`` of two n x n matrices into a preallocated output, 2 n^3 FLOPs;
- ``conv3x3``: ``F.conv2d`` of (N, C, S, S) with a (C, C, 3, 3) kernel, padding 1, in
  channels-last and in contiguous (NCHW) layout, 2 * N * C^2 * 9 * S^2 FLOPs.

Each size is timed in windows of at least ``--min-time`` seconds after one untimed call; its
GFLOP/s is the best window (the attainable rate; the median is printed beside it). One JSON
line per kernel and size, then one ``{"bench": "peak", "peak_gflops": {"fp32": ..., "bf16":
...}}`` line: per dtype the best over kernels and sizes. ``benchmarks/rl.py``, ``cut.py`` and
``vision_throughput.py`` read that line with ``--peak peak.json`` to give each step's achieved
FLOP/s as a fraction of it; they refuse a peak measured with another CPU or thread count (on a
GPU: another GPU or torch version).

On a GPU the sizes are larger, every call is timed with CUDA synchronisation, and "fp32" means
torch's defaults there: matrix products in full fp32, convolutions allowed to use TF32 on
Ampere and later GPUs (``torch.backends.cudnn.allow_tf32``), as the training commands run them.
The summary line also gives, for the GPUs in :data:`DATASHEET_TFLOPS`, the dense peaks of the
vendor's datasheet, so a step's FLOP/s can be read against both.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.reference import add_device_argument, emit, is_cuda, select_device, timed  # noqa: E402

GEMM_SIZES = (512, 1024, 2048, 3072, 4096)
CONV_SHAPES = ((1, 64, 56), (1, 256, 56), (4, 256, 56), (8, 256, 56))  # (N, C, S)
GPU_GEMM_SIZES = (2048, 4096, 8192, 16384)
GPU_CONV_SHAPES = ((32, 256, 56), (64, 256, 56), (128, 256, 28))
QUICK_GEMM_SIZES = (256, 512)
QUICK_CONV_SHAPES = ((1, 64, 28),)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}

DATASHEET_TFLOPS = {
    # dense tensor-core peaks (the datasheets' sparse figures are twice these); fp32 without tensor cores
    "NVIDIA H100 80GB HBM3": {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9},  # H100 SXM5
    "NVIDIA H200": {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9},            # H200 SXM
}
"""Vendor datasheet peaks (TFLOP/s) of the GPUs this project has been timed on, by the name
``torch.cuda.get_device_name`` gives."""


def rate(call: Callable[[], object], flops: float, min_time: float, windows: int,
         device=None) -> tuple[float, float, float]:
    """(best GFLOP/s, median GFLOP/s, seconds of one call): one untimed call, then ``windows``
    windows of whole calls lasting at least ``min_time`` seconds each (on a GPU each call and
    window timed with CUDA synchronisation, :func:`benchmarks.reference.timed`)."""
    first = timed(call, 1, device)
    per_window = max(1, int(min_time / max(first, 1e-6)))
    rates = [flops * per_window / timed(call, per_window, device) / 1e9 for _ in range(windows)]
    return max(rates), statistics.median(rates), first


def gemm(n: int, dtype: torch.dtype, device="cpu") -> tuple[Callable[[], object], float]:
    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    out = torch.empty(n, n, dtype=dtype, device=device)
    return (lambda: torch.mm(a, b, out=out)), 2.0 * n ** 3


def conv3x3(batch: int, channels: int, side: int, dtype: torch.dtype, channels_last: bool,
            device="cpu") -> tuple[Callable[[], object], float]:
    layout = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(batch, channels, side, side, device=device).to(dtype).contiguous(memory_format=layout)
    w = (torch.randn(channels, channels, 3, 3, device=device) * 0.05).to(dtype).contiguous(memory_format=layout)

    def call() -> torch.Tensor:
        with torch.no_grad():
            return F.conv2d(x, w, padding=1)
    return call, 2.0 * batch * channels * channels * 9 * side * side


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_device_argument(parser, "where the kernels run")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (use the benchmarks' count)")
    parser.add_argument("--min-time", type=float, default=0.5, help="seconds per timed window")
    parser.add_argument("--windows", type=int, default=3, help="timed windows per size (best is kept)")
    parser.add_argument("--max-call-s", type=float, default=2.0, help="stop growing a kernel once a call takes longer")
    parser.add_argument("--quick", action="store_true", help="small sizes, short windows: checks the script")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = select_device(args.device)
    gemm_sizes, conv_shapes = (GPU_GEMM_SIZES, GPU_CONV_SHAPES) if is_cuda(device) else (GEMM_SIZES, CONV_SHAPES)
    if args.quick:
        gemm_sizes, conv_shapes, args.min_time, args.windows = QUICK_GEMM_SIZES, QUICK_CONV_SHAPES, 0.05, 2

    best: dict[str, dict[str, float]] = {name: {} for name in DTYPES}
    kernels: list[tuple[str, list[tuple[str, Callable]]]] = []
    for dtype_name, dtype in DTYPES.items():
        kernels.append((dtype_name, [(f"gemm n={n}", lambda n=n, d=dtype: gemm(n, d, device)) for n in gemm_sizes]))
        for channels_last in (True, False):
            layout = "channels_last" if channels_last else "nchw"
            kernels.append((dtype_name, [
                (f"conv3x3 {layout} N={b} C={c} S={s}",
                 lambda b=b, c=c, s=s, d=dtype, cl=channels_last: conv3x3(b, c, s, d, cl, device))
                for b, c, s in conv_shapes]))
    for dtype_name, ladder in kernels:
        for label, build in ladder:
            call, flops = build()
            top, median, first = rate(call, flops, args.min_time, args.windows, device)
            kernel = label.split()[0] + (" " + label.split()[1] if label.startswith("conv") else "")
            best[dtype_name][kernel] = max(best[dtype_name].get(kernel, 0.0), top)
            emit({"bench": "peak_kernel", "kernel": label, "dtype": dtype_name, "gflop_per_call": round(flops / 1e9, 3),
                  "best_gflops": round(top, 2), "median_gflops": round(median, 2), "first_call_s": round(first, 3)})
            if first > args.max_call_s:
                break
    summary = {"bench": "peak", "peak_gflops": {d: round(max(k.values()), 2) for d, k in best.items()},
               "by_kernel_gflops": {d: {k: round(v, 2) for k, v in ks.items()} for d, ks in best.items()},
               "quick": args.quick}
    if is_cuda(device):
        datasheet = DATASHEET_TFLOPS.get(torch.cuda.get_device_name(device))
        summary["datasheet_tflops"] = datasheet or "not listed for this GPU (benchmarks/peak.py DATASHEET_TFLOPS)"
    emit(summary)
    return summary


if __name__ == "__main__":
    main()
