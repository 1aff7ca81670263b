"""The attainable rate at a step's own layer shapes: the CURL update's convolutions and linears.

    python benchmarks/layer_peak.py --threads 2 > layer_peak.jsonl   # about a minute on a quiet machine
    python benchmarks/layer_peak.py --quick                          # a check of the script, seconds

`benchmarks/peak.py` measures the machine's peak on large kernels (4096-wide GEMMs, 256-channel
convolutions), which a CURL update never runs: its encoder is four 3x3 convolutions of 32 filters
on 84 x 84 crops (stride 2, then 1: 84 -> 41 -> 39 -> 37 -> 35), a 39,200 -> 50 linear, and
1,024-wide MLPs. This script times exactly those layers, forward and backward (the gradient of
the input, except for the first convolution, and of the weight), in isolation, for each batch
(the CPU's conv micro-batch of 32 and the update's batches) and precision (fp32; bf16 where the
CPU runs it natively), channels-last as the agent runs them. Per layer: its FLOPs (counted as
`rl.py` counts them, `torch.utils.flop_counter`), its best seconds over timed windows; per batch
and precision, the mix rate ``sum(flops) / sum(seconds)``: the FLOP/s a step made only of these
layers, each at its best, would reach. `benchmarks/tables.py` divides each CURL contender's
achieved FLOP/s by it ("of layer peak").
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.reference import emit  # noqa: E402
from core_ssl.device import native_bf16  # noqa: E402

# (name, in_channels, out_channels, stride, input side): the CURL encoder at 84 x 84, frame stack 3
CURL_CONVS = (("conv1", 9, 32, 2, 84), ("conv2", 32, 32, 1, 41), ("conv3", 32, 32, 1, 39), ("conv4", 32, 32, 1, 37))
# (name, in_features, out_features): the encoder's fc and the 1,024-wide actor / critic MLPs
CURL_LINEARS = (("fc", 32 * 35 * 35, 50), ("mlp_in", 50 + 6, 1024), ("mlp_hidden", 1024, 1024), ("mlp_out", 1024, 2))


def _layer(kind: str, spec: tuple, batch: int, dtype: torch.dtype):
    """A closure running one layer forward and backward, and its FLOPs."""
    if kind == "conv":
        _, cin, cout, stride, side = spec
        x = torch.randn(batch, cin, side, side).to(dtype).contiguous(memory_format=torch.channels_last)
        w = (torch.randn(cout, cin, 3, 3) * 0.05).to(dtype).contiguous(memory_format=torch.channels_last)
        x.requires_grad_(cin != 9)  # the first layer's input is the image: no gradient
        w.requires_grad_(True)

        def forward():
            return F.conv2d(x, w, stride=stride)
    else:
        _, fin, fout = spec
        x = torch.randn(batch, fin).to(dtype).requires_grad_(True)
        w = (torch.randn(fout, fin) * 0.02).to(dtype).requires_grad_(True)

        def forward():
            return F.linear(x, w)

    def step():
        out = forward()
        out.backward(torch.ones_like(out))

    with FlopCounterMode(display=False) as counter:
        step()
    return step, float(counter.get_total_flops())


def best_seconds(step, min_time: float, windows: int) -> float:
    """The best per-call seconds over ``windows`` windows of at least ``min_time`` s (one warm-up call)."""
    started = time.perf_counter()
    step()
    per_window = max(1, int(min_time / max(time.perf_counter() - started, 1e-6)))
    best = float("inf")
    for _ in range(windows):
        started = time.perf_counter()
        for _ in range(per_window):
            step()
        best = min(best, (time.perf_counter() - started) / per_window)
    return best


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (use the benchmarks' count)")
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 128, 512],
                        help="batch sizes: 32 is the CPU's conv micro-batch, 128 and 512 the update's")
    parser.add_argument("--min-time", type=float, default=0.3, help="seconds per timed window")
    parser.add_argument("--windows", type=int, default=3, help="timed windows per layer (the best is kept)")
    parser.add_argument("--quick", action="store_true", help="batch 4, short windows: checks the script")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        args.batches, args.min_time, args.windows = [4], 0.02, 1
    dtypes = {"fp32": torch.float32, **({"bf16": torch.bfloat16} if native_bf16(torch.device("cpu")) else {})}
    lines = []
    for dtype_name, dtype in dtypes.items():
        for batch in args.batches:
            layers = []
            for kind, specs in (("conv", CURL_CONVS), ("linear", CURL_LINEARS)):
                for spec in specs:
                    step, flops = _layer(kind, spec, batch, dtype)
                    seconds = best_seconds(step, args.min_time, args.windows)
                    layers.append({"layer": spec[0], "gflop": round(flops / 1e9, 4), "best_s": seconds,
                                   "gflops": round(flops / seconds / 1e9, 2)})
            total_flops = sum(layer["gflop"] for layer in layers) * 1e9
            total_s = sum(layer["best_s"] for layer in layers)
            line = {"bench": "layer_peak", "step": "curl_update", "dtype": dtype_name, "batch": batch,
                    "mix_gflops": round(total_flops / total_s / 1e9, 2), "layers": layers, "quick": args.quick}
            emit(line)
            lines.append(line)
    return lines


if __name__ == "__main__":
    main()
