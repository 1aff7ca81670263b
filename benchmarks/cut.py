"""Seconds per CUT / FastCUT training step against the reference code, FLOP/s against the
machine's peak, and peak resident memory, on the CPU or, with --device cuda, a GPU, as JSON
lines (each with the machine and device facts of :func:`benchmarks.reference.run_facts`).

    python benchmarks/cut.py --reference CUT_TREE --peak peak.json      # quiet machine, minutes
    python benchmarks/cut.py --memory --reference CUT_TREE              # peak RSS, one process each
    python benchmarks/cut.py --device cuda --reference CUT_TREE         # one GPU
    python benchmarks/cut.py --quick                                    # checks the script

The networks of the paper (ResNet generator with ``--n-blocks`` 9 and ngf 64, PatchGAN with ndf
64, 256 patches on 5 layers) at ``--size`` 128, batch 1, on random images (the cost does not
depend on the pixels), ``--threads`` 2. Each mode (CUT, FastCUT) runs in its own process, where
the contenders take turns in ``--rounds`` alternating rounds of ``--calls`` steps
(:func:`benchmarks.reference.alternate`, after ``--warmup`` untimed steps each); the speed-up
is the median of the per-round ratios. Contenders:

- ``ours_fp32`` / ``ours_bf16``: :meth:`cut_translation.model.CUTModel.train_step`, without and
  with bf16 autocast (bf16 by default only where the CPU runs it natively);
- ``ours_compiled_fp32`` / ``ours_compiled_bf16`` (``--compile``): the same with the generator
  and discriminator compiled by ``torch.compile``, as ``cut_translation.train --compile`` does;
- ``ours_graphs_fp32`` / ``ours_graphs_bf16`` (``--cuda-graphs``, CUDA only): the same step
  replayed from a CUDA graph, as ``cut_translation.train --cuda-graphs`` does (recorded during
  the warm-up steps, which must then be at least 3);
- ``official_order_fp32`` (``--variants official-order``): the same maths in the official
  code's work order (the input re-encoded with a graph for the NCE keys, G(x) / G(y) and fake
  / real scored one at a time, the blur resampling as depthwise / transposed convolutions,
  ``nn.ReflectionPad2d``), to show what the rearrangement alone is worth on this machine;
- ``reference`` (``--reference CUT_TREE``, a taesungp/contrastive-unpaired-translation
  checkout): the official ``set_input`` + ``optimize_parameters`` on the same images, the
  model built as ``train.py`` builds it (options parsed from a ``train.py`` command line set
  in ``sys.argv``, since ``CUTModel.modify_commandline_options`` reads it; then
  ``data_dependent_initialize``, ``setup``, ``parallelize``). Without it, a ``reference: not
  measured`` line says so; no quoted figure is divided by.

Every contender's FLOPs per step (``torch.utils.flop_counter``) and achieved GFLOP/s are given,
with ``--peak`` also the fraction of the machine's peak; ``--profile`` adds operator profiles.
``--memory`` runs each contender alone in its own process, so that its peak RSS is its own
(timings then are not alternated).

``--device cuda``: every contender runs on the same GPU in the same alternating rounds, each
turn bracketed by ``torch.cuda.synchronize``; the images are in GPU memory for all (the
reference's ``set_input`` copies them to its device, a no-op then), the reference is built with
``--gpu_ids 0`` instead of ``-1`` (``train.py``'s way onto the first GPU, ``DataParallel``
wrappers included), bf16 is timed by default where the GPU runs it natively, and each line
also gives the process's peak GPU memory (``torch.cuda.max_memory_allocated``).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.reference import (REFERENCE, Contender, add_device_argument, add_to_path, alternate,  # noqa: E402
                                  argv, bf16_skip_note, compare, cudnn_autotune, default_precisions, emit,
                                  load_peak, not_measured, profile_ops, reference_tree, select_device,
                                  tree_commit, twin_rate)
from cut_translation.model import CUTModel, CUTSettings  # noqa: E402
from cut_translation.networks import BlurDownsample, BlurUpsample, ReflectionPad, lsgan_loss  # noqa: E402
from cut_translation.patchnce import layer_mean_patch_nce, sample_locations  # noqa: E402

CUT_HOW = ("Make one outside this project: git clone https://github.com/taesungp/contrastive-unpaired-translation "
           "cut && git -C cut checkout b3ac297 (see docs/benchmarks.md).")


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

    D.requires_grad_(True)
    model.optimizer_d.zero_grad()
    loss_d = 0.5 * (lsgan_loss(D(fake_b.detach()), False) + lsgan_loss(D(real_b), True))
    loss_d.backward()
    model.optimizer_d.step()

    D.requires_grad_(False)
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


def ours(mode: str, precision: str, shape: dict, images: tuple[torch.Tensor, torch.Tensor],
         compiled: bool = False, graphs: bool = False) -> Contender:
    """CUTModel.train_step on the device of ``images`` (the model moved there as
    ``cut_translation.train`` moves it), its networks compiled as ``--compile`` does it when
    ``compiled`` (compilation happens in the warm-up steps), or replayed from CUDA graphs as
    ``--cuda-graphs`` does it when ``graphs`` (recorded in the warm-up steps)."""
    torch.manual_seed(0)
    settings = CUTSettings.for_mode(mode, ngf=shape["ngf"], n_blocks=shape["n_blocks"], bf16=precision == "bf16")
    model = CUTModel(settings, cuda_graphs=graphs).to(images[0].device)
    if compiled:
        model.compile_networks()
    return Contender(lambda: model.train_step(*images), enter=cudnn_autotune(True))


def official_order_contender(mode: str, shape: dict, images: tuple[torch.Tensor, torch.Tensor]) -> Contender:
    torch.manual_seed(0)
    model = official_order(CUTModel(CUTSettings.for_mode(mode, ngf=shape["ngf"], n_blocks=shape["n_blocks"])))
    model = model.to(images[0].device)
    return Contender(lambda: official_order_step(model, *images), enter=cudnn_autotune(True))


def reference_gpu_ids(device: torch.device) -> str:
    """The reference's ``--gpu_ids``: ``-1`` for the CPU, the GPU's index for CUDA."""
    return str(device.index or 0) if device.type == "cuda" else "-1"


def reference(path: str, mode: str, shape: dict, images: tuple[torch.Tensor, torch.Tensor]) -> tuple[Contender, dict]:
    """The official model built as ``train.py`` builds it, on the device of ``images``
    (``--gpu_ids`` -1 or the GPU's index), stepped on ``images``; one shim: ``sys.argv`` is set
    to the ``train.py`` command line while the options are parsed."""
    root = reference_tree(path, ["models/cut_model.py", "options/train_options.py", "data/__init__.py"],
                          "taesungp/contrastive-unpaired-translation", CUT_HOW)
    if shape["n_blocks"] not in (6, 9):
        raise SystemExit(f"--n-blocks {shape['n_blocks']}: the reference generator has 6 or 9 blocks only")
    add_to_path(root)
    from models import create_model  # noqa: E402  (the reference's models/)
    from options.train_options import TrainOptions  # noqa: E402

    command = ["train.py", "--dataroot", "unused", "--name", "benchmark", "--model", "cut",
               "--CUT_mode", {"cut": "CUT", "fastcut": "FastCUT"}[mode],
               "--gpu_ids", reference_gpu_ids(images[0].device),
               "--load_size", str(shape["size"]), "--crop_size", str(shape["size"]),
               "--batch_size", str(shape["batch"]), "--ngf", str(shape["ngf"]),
               "--netG", f"resnet_{shape['n_blocks']}blocks", "--display_id", "0", "--no_html",
               "--checkpoints_dir", tempfile.mkdtemp(prefix="cut_reference_")]
    torch.manual_seed(0)
    np.random.seed(0)
    real_a, real_b = images
    data = {"A": real_a, "B": real_b, "A_paths": ["a"] * len(real_a), "B_paths": ["b"] * len(real_b)}
    with argv(command), contextlib.redirect_stdout(io.StringIO()):  # the reference prints its options
        opt = TrainOptions().parse()
        model = create_model(opt)
        model.data_dependent_initialize(data)
        model.setup(opt)
        model.parallelize()

    def step() -> None:
        model.set_input(data)
        model.optimize_parameters()

    meta = {"reference_code": "taesungp/contrastive-unpaired-translation", "reference_path": str(root),
            "reference_commit": tree_commit(root), "reference_command": " ".join(command[1:]),
            "shims": ["sys.argv set to the train.py command line while parsing options"],
            "reference_options": {"nce_idt": opt.nce_idt, "lambda_NCE": opt.lambda_NCE,
                                  "flip_equivariance": opt.flip_equivariance, "netG": opt.netG}}
    return Contender(step, enter=cudnn_autotune(True)), meta  # its BaseModel turns cudnn.benchmark on


def worker(mode: str, names: list[str], args) -> None:
    """Build the named contenders of one mode in this process, alternate them, print the lines."""
    shape = dict(size=args.size, batch=args.batch, ngf=args.ngf, n_blocks=args.n_blocks)
    device = select_device(args.device)
    torch.manual_seed(0)
    images = tuple((torch.rand(args.batch, 3, args.size, args.size) * 2 - 1).to(device) for _ in range(2))
    contenders, meta = {}, {}
    for name in names:
        if name == REFERENCE:
            contenders[name], meta = reference(args.reference, mode, shape, images)
        elif name == "official_order_fp32":
            contenders[name] = official_order_contender(mode, shape, images)
        else:
            contenders[name] = ours(mode, name.split("_")[-1], shape, images, compiled="_compiled_" in name,
                                    graphs="_graphs_" in name)
    failed: dict[str, str] = {}
    times = alternate(contenders, rounds=args.rounds, calls=args.calls, warmup=args.warmup, device=device,
                      failed=failed)
    for name, why in failed.items():
        emit({"benchmark": "cut_train_step", "mode": mode, "contender": name, **shape, "failed": why})
    peak_rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    peak = load_peak(args.peak) if args.peak else None
    alone = len(names) == 1
    memory = {"peak_rss_gib" if alone else "process_peak_rss_gib_all_contenders": round(peak_rss_gib, 3)}
    if device.type == "cuda":
        gpu_gib = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
        memory["peak_gpu_memory_gib" if alone else "process_peak_gpu_memory_gib_all_contenders"] = gpu_gib
    for name, row in (compare(times) if times else {}).items():
        precision = "bf16" if name.endswith("bf16") else "fp32"
        rate = twin_rate(contenders, name, failed, row["median_s"], precision, peak, device, calls=2)
        emit({"benchmark": "cut_train_step", "mode": mode, "contender": name, "precision": precision, **shape,
              **row, **rate, **memory, **(meta if name == REFERENCE else {})})
    if args.profile:
        for name, contender in contenders.items():
            if name in failed:
                continue
            emit({"benchmark": "cut_profile", "mode": mode, "contender": name, **shape,
                  **profile_ops(contender.step, calls=2, top=args.profile_top, device=device)})


def main(argv_: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--modes", nargs="+", default=["cut", "fastcut"], choices=["cut", "fastcut"])
    parser.add_argument("--variants", nargs="+", default=["ours"], choices=["ours", "official-order"])
    add_device_argument(parser, "where every contender's steps run (the reference with --gpu_ids 0 on cuda)")
    parser.add_argument("--precisions", nargs="+", default=None, choices=["fp32", "bf16"],
                        help="our model's precisions (default: fp32, plus bf16 where the device runs it natively)")
    parser.add_argument("--reference", metavar="CUT_TREE", help="a contrastive-unpaired-translation checkout to time")
    parser.add_argument("--peak", metavar="PEAK_JSON", help="benchmarks/peak.py output: fractions of the peak")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--ngf", type=int, default=64)
    parser.add_argument("--n-blocks", type=int, default=9)
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per contender")
    parser.add_argument("--rounds", type=int, default=10, help="alternating rounds")
    parser.add_argument("--calls", type=int, default=1, help="steps per turn")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--compile", action="store_true",
                        help="also time ours with the generator and discriminator compiled (torch.compile; named "
                             "ours_compiled_<precision>; compiled during the warm-up steps)")
    parser.add_argument("--cuda-graphs", action="store_true",
                        help="also time ours replayed from CUDA graphs (CUDA only; named ours_graphs_<precision>; "
                             "recorded during the warm-up steps)")
    parser.add_argument("--memory", action="store_true", help="each contender alone in its own process (peak RSS)")
    parser.add_argument("--profile", action="store_true", help="print each contender's operator profile")
    parser.add_argument("--profile-top", type=int, default=12, help="operators listed per profile")
    parser.add_argument("--quick", action="store_true", help="64 px, 3 blocks, ngf 16, 2 rounds: checks the script")
    parser.add_argument("--worker", nargs="+", metavar="MODE_THEN_CONTENDERS", help=argparse.SUPPRESS)
    args = parser.parse_args(argv_)
    if args.quick:
        args.size, args.n_blocks, args.ngf, args.warmup, args.rounds = 64, 6, 16, 1, 2
    torch.set_num_threads(args.threads)
    if args.worker:
        worker(args.worker[0], args.worker[1:], args)
        return
    device = select_device(args.device)  # here too: a missing GPU is one line before any worker starts
    precisions = args.precisions or default_precisions(device)
    if "bf16" not in precisions and args.precisions is None:  # why the default left it out
        emit({"benchmark": "cut_train_step", "contender": "ours_bf16", "skipped": bf16_skip_note(device)})
    names = [f"ours_{p}" for p in precisions if "ours" in args.variants]
    names += [f"ours_compiled_{p}" for p in precisions if "ours" in args.variants and args.compile]
    if args.cuda_graphs:
        if device.type != "cuda":
            parser.error("--cuda-graphs needs --device cuda: CUDA graphs record GPU kernels")
        if args.warmup < 3:
            parser.error(f"--cuda-graphs needs --warmup 3 or more (2 eager steps, then the recording), got {args.warmup}")
        names += [f"ours_graphs_{p}" for p in precisions if "ours" in args.variants]
    names += ["official_order_fp32"] if "official-order" in args.variants else []
    names += [REFERENCE] if args.reference else []
    forwarded = [a for a in (argv_ if argv_ is not None else sys.argv[1:]) if a != "--memory"]
    for mode in args.modes:
        if not args.reference:
            emit({"benchmark": "cut_train_step", "mode": mode, "contender": REFERENCE,
                  **not_measured("no --reference given", "python benchmarks/cut.py --reference CUT_TREE "
                                 "(a taesungp/contrastive-unpaired-translation checkout)")})
        for group in ([[n] for n in names] if args.memory else [names]):
            result = subprocess.run([sys.executable, __file__, *forwarded, "--worker", mode, *group],
                                    capture_output=True, text=True)
            if result.returncode != 0:
                sys.exit(f"benchmark {mode} / {', '.join(group)} failed:\n{result.stderr}")
            for line in result.stdout.splitlines():
                if line.startswith("{"):
                    print(line, flush=True)


if __name__ == "__main__":
    main()
