"""Seconds per CUT / FastCUT training step and peak resident memory, as JSON lines.

    python benchmarks/cut.py                                  # 128x128, batch 1, 15 timed steps each
    python benchmarks/cut.py --modes cut --steps 3 --size 64  # a quick check

Each configuration runs in its own process (so its peak RSS is its own): the networks of the
paper (ResNet generator with 9 blocks and ngf 64, PatchGAN with ndf 64, 256 patches on 5 layers)
on random images (the cost does not depend on the pixels), ``--warmup`` untimed steps, then
``--steps`` timed ones; the median is reported. Variants:

- ``ours``: :meth:`cut_translation.model.CUTModel.train_step`, in fp32 and in bf16 autocast;
- ``official-order``: the same maths in the official code's work order (the input re-encoded
  with a graph for the NCE keys, keys projected with a graph, G(x) / G(y) and fake / real
  scored one at a time, the blur resampling as depthwise / transposed convolutions,
  ``nn.ReflectionPad2d``), to show what the rearrangement alone is worth on this machine.

The official CUT code itself, measured on these machines at 128x128, batch 1 (median of 15):
2.28 s per step for CUT, 1.24 s for FastCUT; peak RSS 1.6 GiB and 1.3 GiB.
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core_ssl.device import machine_facts  # noqa: E402
from cut_translation.model import CUTModel, CUTSettings, _set_requires_grad  # noqa: E402
from cut_translation.networks import BlurDownsample, BlurUpsample, ReflectionPad, lsgan_loss  # noqa: E402
from cut_translation.patchnce import layer_mean_patch_nce, sample_locations  # noqa: E402

OFFICIAL_SECONDS = {"cut": 2.28, "fastcut": 1.24}
OFFICIAL_PEAK_RSS_GIB = {"cut": 1.6, "fastcut": 1.3}


class TransposedBlurUpsample(nn.Module):
    """The official code's Upsample: replicate pad, grouped transposed conv with [1,3,3,1]^2 / 16 * 4."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
        self.register_buffer("kernel", (torch.outer(taps, taps) / 16.0).expand(channels, 1, 4, 4).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv_transpose2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), self.kernel, stride=2, padding=2,
                               groups=x.shape[1])
        return x[:, :, 1:-1, 1:-1]


class DepthwiseBlurDownsample(nn.Module):
    """The official code's Downsample: reflect pad, depthwise conv with [1,2,1]^2 / 16, stride 2."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        taps = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer("kernel", (torch.outer(taps, taps) / 16.0).expand(channels, 1, 3, 3).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), self.kernel, stride=2, groups=x.shape[1])


def _channels_before(layers: nn.Sequential, index: int) -> int:
    return next(layer.out_channels for layer in reversed(layers[:index]) if isinstance(layer, nn.Conv2d))


def official_order(model: CUTModel) -> CUTModel:
    """A copy of ``model`` with the official layers: depthwise / transposed convolutions for the
    blur resampling, ``nn.ReflectionPad2d`` padding."""
    model = copy.deepcopy(model)
    for layers in (model.generator.model, model.discriminator.model):
        for index, layer in enumerate(layers):
            if isinstance(layer, BlurUpsample):
                layers[index] = TransposedBlurUpsample(layers[index + 1].in_channels)
            elif isinstance(layer, BlurDownsample):
                layers[index] = DepthwiseBlurDownsample(_channels_before(layers, index))
    for module in list(model.generator.modules()):
        for name, child in module.named_children():
            if isinstance(child, ReflectionPad):
                setattr(module, name, nn.ReflectionPad2d(child.padding))
    return model


def official_order_step(model: CUTModel, real_a: torch.Tensor, real_b: torch.Tensor) -> None:
    """CUTModel.train_step's maths in the official code's order of work (fp32 only)."""
    s, G, D, heads = model.settings, model.generator, model.discriminator, model.heads
    n = real_a.shape[0]
    flip = s.flip_equivariance and bool(torch.rand(()) < 0.5)
    real = torch.cat([real_a, real_b]) if s.nce_idt else real_a
    if flip:
        real = real.flip(3)
    fake = G(real)
    fake_b = fake[:n]

    _set_requires_grad(D, True)
    model.optimizer_d.zero_grad()
    loss_d = 0.5 * (lsgan_loss(D(fake_b.detach()), False) + lsgan_loss(D(real_b), True))
    loss_d.backward()
    model.optimizer_d.step()

    _set_requires_grad(D, False)
    model.optimizer_g.zero_grad()

    def nce(source: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        queries = G.encode(output)
        if flip:
            queries = [f.flip(3) for f in queries]
        keys = G.encode(source)
        locations = sample_locations(keys, s.num_patches)
        projected_keys = [k.detach() for k in heads(keys, locations)]
        return layer_mean_patch_nce(heads(queries, locations), projected_keys, s.temperature)

    loss_nce = nce(real_a, fake_b)
    if s.nce_idt:
        loss_nce = 0.5 * (loss_nce + nce(real_b, fake[n:]))
    loss_g = s.lambda_gan * lsgan_loss(D(fake_b), True) + s.lambda_nce * loss_nce
    loss_g.backward()
    model.optimizer_g.step()


def measure(mode: str, variant: str, precision: str, size: int, batch: int, warmup: int, steps: int,
            ngf: int, n_blocks: int) -> dict:
    """Time ``steps`` training steps of one configuration in this process."""
    torch.manual_seed(0)
    settings = CUTSettings.for_mode(mode, ngf=ngf, n_blocks=n_blocks, bf16=precision == "bf16")
    model = CUTModel(settings)
    if variant == "official-order":
        if precision != "fp32":
            raise ValueError("the official-order variant is measured in fp32 only, as the official code runs")
        model = official_order(model)
        step = lambda a, b: official_order_step(model, a, b)  # noqa: E731
    else:
        step = model.train_step
    real_a = torch.rand(batch, 3, size, size) * 2 - 1
    real_b = torch.rand(batch, 3, size, size) * 2 - 1
    for _ in range(warmup):
        step(real_a, real_b)
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        step(real_a, real_b)
        times.append(time.perf_counter() - started)
    median = statistics.median(times)
    peak_rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    row = {"benchmark": "cut_train_step", "mode": mode, "variant": variant, "precision": precision,
           "size": size, "batch": batch, "ngf": ngf, "n_blocks": n_blocks, "steps": steps,
           "median_s": round(median, 4), "min_s": round(min(times), 4), "max_s": round(max(times), 4),
           "peak_rss_gib": round(peak_rss_gib, 3), **machine_facts()}
    if size == 128 and batch == 1 and ngf == 64 and n_blocks == 9:
        row["official_s"] = OFFICIAL_SECONDS[mode]
        row["speedup_vs_official"] = round(OFFICIAL_SECONDS[mode] / median, 2)
        row["official_peak_rss_gib"] = OFFICIAL_PEAK_RSS_GIB[mode]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--modes", nargs="+", default=["cut", "fastcut"], choices=["cut", "fastcut"])
    parser.add_argument("--variants", nargs="+", default=["ours", "official-order"], choices=["ours", "official-order"])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--ngf", type=int, default=64)
    parser.add_argument("--n-blocks", type=int, default=9)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--worker", nargs=3, metavar=("MODE", "VARIANT", "PRECISION"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    shape = dict(size=args.size, batch=args.batch, warmup=args.warmup, steps=args.steps, ngf=args.ngf,
                 n_blocks=args.n_blocks)
    if args.worker:
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        mode, variant, precision = args.worker
        print(json.dumps(measure(mode, variant, precision, **shape)), flush=True)
        return
    common = ["--size", str(args.size), "--batch", str(args.batch), "--ngf", str(args.ngf),
              "--n-blocks", str(args.n_blocks), "--warmup", str(args.warmup), "--steps", str(args.steps)]
    if args.threads is not None:
        common += ["--threads", str(args.threads)]
    for mode in args.modes:
        for variant in args.variants:
            for precision in args.precisions:
                if variant == "official-order" and precision != "fp32":
                    continue
                result = subprocess.run([sys.executable, __file__, *common, "--worker", mode, variant, precision],
                                        capture_output=True, text=True)
                if result.returncode != 0:
                    sys.exit(f"benchmark {mode}/{variant}/{precision} failed:\n{result.stderr}")
                print(result.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
