"""The attainable rate at a step's own layer shapes: the CURL update's, the CUT step's and SimCLR's.

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
layers, each at its best, would reach. `benchmarks/tables.py` divides each contender's achieved
FLOP/s by its step's best mix rate at its precision ("of layer peak").

The other steps (``--steps``): ``cut_train_step``, the CUT ResNet generator at 128 px (ngf 64,
9 blocks: 7x7 64, 3x3 128 at 128 px and 256 at 64 px before each blur-pool, 18 3x3 256 convs at
32 px, the mirrored decoder) and the PatchGAN discriminator (4x4, 64-512), batch 1 and 2 (the
generator also encodes B for the identity NCE); ``simclr_step``, ResNet-18 with the CIFAR stem at
32 px and the 512-512-128 projection, batch 256 (two views of 128).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.peak import rate  # noqa: E402
from benchmarks.reference import emit  # noqa: E402
from core_ssl.device import native_bf16  # noqa: E402

# ("conv", name, in_channels, out_channels, kernel, stride, padding, input side, image input?) and
# ("linear", name, in_features, out_features): each step's layers, each once.
CURL_LAYERS = (
    ("conv", "conv1", 9, 32, 3, 2, 0, 84, True), ("conv", "conv2", 32, 32, 3, 1, 0, 41, False),
    ("conv", "conv3", 32, 32, 3, 1, 0, 39, False), ("conv", "conv4", 32, 32, 3, 1, 0, 37, False),
    ("linear", "fc", 32 * 35 * 35, 50), ("linear", "mlp_in", 50 + 6, 1024), ("linear", "mlp_hidden", 1024, 1024),
    ("linear", "mlp_out", 1024, 2))
CUT_LAYERS = (
    ("conv", "g_in7x7", 3, 64, 7, 1, 3, 128, True), ("conv", "g_down128", 64, 128, 3, 1, 1, 128, False),
    ("conv", "g_down256", 128, 256, 3, 1, 1, 64, False),
    *(("conv", f"g_block{i}", 256, 256, 3, 1, 1, 32, False) for i in range(18)),
    ("conv", "g_up128", 256, 128, 3, 1, 1, 64, False), ("conv", "g_up64", 128, 64, 3, 1, 1, 128, False),
    ("conv", "g_out7x7", 64, 3, 7, 1, 3, 128, False),
    ("conv", "d_64", 3, 64, 4, 1, 1, 128, True), ("conv", "d_128", 64, 128, 4, 1, 1, 64, False),
    ("conv", "d_256", 128, 256, 4, 1, 1, 32, False), ("conv", "d_512", 256, 512, 4, 1, 1, 16, False),
    ("conv", "d_out", 512, 1, 4, 1, 1, 15, False))
SIMCLR_LAYERS = (
    ("conv", "stem", 3, 64, 3, 1, 1, 32, True),
    *(("conv", f"layer1_{i}", 64, 64, 3, 1, 1, 32, False) for i in range(4)),
    ("conv", "layer2_down", 64, 128, 3, 2, 1, 32, False), ("conv", "layer2_skip", 64, 128, 1, 2, 0, 32, False),
    *(("conv", f"layer2_{i}", 128, 128, 3, 1, 1, 16, False) for i in range(3)),
    ("conv", "layer3_down", 128, 256, 3, 2, 1, 16, False), ("conv", "layer3_skip", 128, 256, 1, 2, 0, 16, False),
    *(("conv", f"layer3_{i}", 256, 256, 3, 1, 1, 8, False) for i in range(3)),
    ("conv", "layer4_down", 256, 512, 3, 2, 1, 8, False), ("conv", "layer4_skip", 256, 512, 1, 2, 0, 8, False),
    *(("conv", f"layer4_{i}", 512, 512, 3, 1, 1, 4, False) for i in range(3)),
    ("linear", "proj_hidden", 512, 512), ("linear", "proj_out", 512, 128))
STEPS = {"curl_update": (CURL_LAYERS, (32, 128, 512)), "cut_train_step": (CUT_LAYERS, (1, 2)),
         "simclr_step": (SIMCLR_LAYERS, (256,))}


def _layer(spec: tuple, batch: int, dtype: torch.dtype):
    """A closure running one layer forward and backward, and its FLOPs."""
    if spec[0] == "conv":
        _, _, cin, cout, kernel, stride, padding, side, image_input = spec
        x = torch.randn(batch, cin, side, side).to(dtype).contiguous(memory_format=torch.channels_last)
        w = (torch.randn(cout, cin, kernel, kernel) * 0.05).to(dtype).contiguous(memory_format=torch.channels_last)
        x.requires_grad_(not image_input)  # an image input needs no gradient
        w.requires_grad_(True)

        def forward():
            return F.conv2d(x, w, stride=stride, padding=padding)
    else:
        _, _, fin, fout = spec
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


def best_seconds(step, flops: float, min_time: float, windows: int) -> float:
    """The best per-call seconds over ``windows`` windows of at least ``min_time`` s, one warm-up
    call first (:func:`benchmarks.peak.rate`, which times the machine's peak the same way)."""
    best_gflops, _, _ = rate(step, flops, min_time, windows)
    return flops / (best_gflops * 1e9)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (use the benchmarks' count)")
    parser.add_argument("--steps", nargs="+", choices=list(STEPS), default=list(STEPS), help="which steps' layers")
    parser.add_argument("--batches", type=int, nargs="+", default=None,
                        help="batch sizes (default per step: CURL 32, the CPU's conv micro-batch, and the update's "
                             "128 and 512; CUT 1 and 2; SimCLR 256)")
    parser.add_argument("--min-time", type=float, default=0.3, help="seconds per timed window")
    parser.add_argument("--windows", type=int, default=3, help="timed windows per layer (the best is kept)")
    parser.add_argument("--quick", action="store_true", help="batch 4, short windows: checks the script")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        args.batches, args.min_time, args.windows = [2], 0.02, 1
    dtypes = {"fp32": torch.float32, **({"bf16": torch.bfloat16} if native_bf16(torch.device("cpu")) else {})}
    lines = []
    for step_name in args.steps:
        specs, default_batches = STEPS[step_name]
        for dtype_name, dtype in dtypes.items():
            for batch in args.batches or default_batches:
                layers = []
                for spec in specs:
                    run, flops = _layer(spec, batch, dtype)
                    seconds = best_seconds(run, flops, args.min_time, args.windows)
                    layers.append({"layer": spec[1], "gflop": round(flops / 1e9, 6), "best_s": seconds,
                                   "gflops": round(flops / seconds / 1e9, 2)})
                total_flops = sum(layer["gflop"] for layer in layers) * 1e9
                total_s = sum(layer["best_s"] for layer in layers)
                line = {"bench": "layer_peak", "step": step_name, "dtype": dtype_name, "batch": batch,
                        "mix_gflops": round(total_flops / total_s / 1e9, 2), "layers": layers, "quick": args.quick}
                emit(line)
                lines.append(line)
    return lines


if __name__ == "__main__":
    main()
