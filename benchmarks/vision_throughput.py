"""End-to-end SimCLR pre-training throughput (images/s, augmentation included) on CIFAR-10,
ours against lightly's pipeline, and FLOP/s against the machine's peak.

Same encoder (ResNet-18 with the CIFAR stem), head (512 -> 512 -> 128), loss (NT-Xent, t = 0.5),
optimiser (SGD, lr 0.06, momentum 0.9, weight decay 5e-4) and batch (128 images of 32 px, two
views each), all from the same decoded uint8 CIFAR-10 train images in memory. Contenders:

- ``batched_fp32`` / ``batched_bf16``: this toolkit's way. One batched SimCLR augmentation per
  view on the tensor batch (``core_ssl.augment``), one forward pass over both views
  concatenated, channels-last; bf16 autocast for the networks by default only where the CPU
  runs bf16 natively (``--precisions`` to choose).
- ``batched_<precision>_compiled`` (``--compile``): the same with the encoder compiled by
  ``torch.compile``, as ``vision_benchmarks.pretrain --compile`` does it.
- ``per_sample_pil_workers{W}``: lightly's way rebuilt from torchvision. A ``DataLoader``
  (``--workers`` W) whose dataset turns each image into a PIL image and runs torchvision's
  per-sample transforms twice, then one forward pass per view, NCHW, fp32.
- ``reference`` (``--reference lightly``, when the ``lightly`` package is importable: run this
  script with the Python of an environment that has lightly 1.6.0): lightly's own
  ``SimCLRTransform(input_size=32, gaussian_blur=0.0)``, ``SimCLRProjectionHead(512, 512, 128)``
  and ``NTXentLoss(temperature=0.5)`` on torchvision's ResNet-18 with the CIFAR stem, as in
  lightly's SimCLR example (one forward pass per view), through a ``DataLoader`` of W workers.
  Without it a ``reference: not measured`` line says so; no quoted figure is divided by.

The contenders take turns in ``--rounds`` alternating rounds of ``--calls`` SGD steps in this one
process (:func:`benchmarks.reference.alternate`); a contender's DataLoader workers are paused
(SIGSTOP) while the others are timed, so they cannot prefetch on the others' time. Speed-ups
are medians of per-round ratios. Each contender's FLOPs per step (``torch.utils.flop_counter``)
and achieved GFLOP/s are printed, with ``--peak peak.json`` (``benchmarks/peak.py``) also the
fraction of the machine's peak, and with ``--profile`` its operator profile. When bf16 is timed,
a last line compares one bf16 step with an fp32 step on the same batch and weights::

    python benchmarks/vision_throughput.py --peak peak.json                    # quiet machine, minutes
    /path/to/lightly-env/bin/python benchmarks/vision_throughput.py --reference lightly
    python benchmarks/vision_throughput.py --quick                             # checks the script
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torchvision.transforms as T
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.reference import (REFERENCE, Contender, WorkerProcesses, add_device_argument, alternate,  # noqa: E402
                                  bf16_skip_note, child_pids, compare, cudnn_autotune, default_precisions, emit,
                                  load_peak, not_measured, profile_ops, select_device, turn_of, twin_rate)
from core_ssl import losses  # noqa: E402
from core_ssl.augment import simclr_augment  # noqa: E402
from core_ssl.data import BatchIterator, load_cifar10  # noqa: E402
from core_ssl.device import autocast  # noqa: E402
from core_ssl.encoders import build_encoder  # noqa: E402
from core_ssl.heads import simclr_projection  # noqa: E402

LIGHTLY_HOW = ("install lightly 1.6.0 into a separate environment that sees this one's packages "
               "(python -m venv --system-site-packages ENV && ENV/bin/pip install lightly==1.6.0) and run this "
               "script with ENV/bin/python; see docs/benchmarks.md")


def build_model(device: torch.device, channels_last: bool) -> tuple[torch.nn.Module, torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    encoder = build_encoder("resnet18", cifar_stem=True).to(device)
    head = simclr_projection(encoder.feature_dim, hidden=encoder.feature_dim, out=128).to(device)
    if channels_last:
        encoder = encoder.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD([*encoder.parameters(), *head.parameters()], lr=0.06, momentum=0.9, weight_decay=5e-4)
    return encoder, head, optimizer


def sgd_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def batched(train, args, device: torch.device, bf16: bool, compiled: bool = False) -> Contender:
    encoder, head, optimizer = build_model(device, channels_last=True)
    if compiled:  # as vision_benchmarks.pretrain --compile: the encoder, in place; compiled in the warm-up steps
        encoder.compile()
    augment = simclr_augment(32, color_strength=0.5)
    generator = torch.Generator(device=device).manual_seed(0)
    batches = iter(BatchIterator(train, args.batch_size, seed=0, device=device))

    def step() -> None:
        images = next(batches)[0]
        views = torch.cat([augment(images, generator), augment(images, generator)])
        with autocast(device, bf16):
            z = head(encoder(views.contiguous(memory_format=torch.channels_last)))
        sgd_step(optimizer, losses.nt_xent(*z.chunk(2), temperature=0.5))

    return Contender(step, enter=cudnn_autotune(True))  # as vision_benchmarks.pretrain sets it


def loader_contender(dataset, args, train_step) -> Contender:
    """``train_step(batch)`` on batches of a shuffled DataLoader with ``args.workers`` workers,
    which are paused outside the contender's turns."""
    before = child_pids()
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=True, drop_last=True,
                                         num_workers=args.workers, persistent_workers=args.workers > 0,
                                         generator=torch.Generator().manual_seed(0))
    iterator = [iter(loader)]
    workers = WorkerProcesses(before)
    workers.pause()

    def step() -> None:
        try:
            batch = next(iterator[0])
        except StopIteration:
            iterator[0] = iter(loader)
            batch = next(iterator[0])
        train_step(batch)

    # lightly's example and its rebuild leave cuDNN's default (no autotuning)
    return Contender(step, enter=cudnn_autotune(False, then=workers.resume), leave=workers.pause)


def per_sample(train, args, device: torch.device) -> Contender:
    encoder, head, optimizer = build_model(device, channels_last=False)

    def train_step(batch) -> None:
        x0, x1, _ = batch
        z0, z1 = head(encoder(x0.to(device))), head(encoder(x1.to(device)))  # one forward pass per view
        sgd_step(optimizer, losses.nt_xent(z0, z1, temperature=0.5))

    return loader_contender(TwoViewPIL(train.images, train.labels), args, train_step)


class LightlyViews(torch.utils.data.Dataset):
    """The in-memory images as PIL images through lightly's ``SimCLRTransform`` (two views)."""

    def __init__(self, images: torch.Tensor, transform) -> None:
        self.images, self.transform = images, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.transform(Image.fromarray(self.images[index].permute(1, 2, 0).numpy()))


def lightly_reference(train, args, device: torch.device) -> tuple[Contender, dict]:
    """lightly's SimCLR example step with lightly's transform, head and loss."""
    try:
        import lightly
        from lightly.loss import NTXentLoss
        from lightly.models.modules import SimCLRProjectionHead
        from lightly.transforms import SimCLRTransform
    except ImportError as err:
        raise SystemExit(f"--reference lightly: lightly is not importable by {sys.executable} ({err}); "
                         f"{LIGHTLY_HOW}") from err
    import torchvision

    torch.manual_seed(0)
    resnet = torchvision.models.resnet18()
    resnet.conv1 = torch.nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    resnet.maxpool = torch.nn.Identity()
    backbone = torch.nn.Sequential(*list(resnet.children())[:-1]).to(device)
    head = SimCLRProjectionHead(512, 512, 128).to(device)
    criterion = NTXentLoss(temperature=0.5)
    optimizer = torch.optim.SGD([*backbone.parameters(), *head.parameters()], lr=0.06, momentum=0.9,
                                weight_decay=5e-4)

    def train_step(batch) -> None:
        x0, x1 = (x.to(device) for x in batch)
        z0, z1 = head(backbone(x0).flatten(1)), head(backbone(x1).flatten(1))
        sgd_step(optimizer, criterion(z0, z1))

    transform = SimCLRTransform(input_size=32, gaussian_blur=0.0)
    meta = {"reference_code": "lightly", "reference_version": lightly.__version__,
            "reference_transform": "SimCLRTransform(input_size=32, gaussian_blur=0.0)"}
    return loader_contender(LightlyViews(train.images, transform), args, train_step), meta


def _one_step_gradient(views: torch.Tensor, device: torch.device, bf16: bool) -> tuple[float, torch.Tensor]:
    encoder, head, _ = build_model(device, channels_last=True)  # the same seeded weights every call
    with autocast(device, bf16):
        z = head(encoder(views))
    loss = losses.nt_xent(*z.float().chunk(2), temperature=0.5)
    loss.backward()
    return loss.item(), torch.cat([p.grad.flatten() for p in [*encoder.parameters(), *head.parameters()]])


def bf16_numerics(train, device: torch.device) -> dict:
    """How far one bf16-autocast step is from fp32 on the same batch and weights (loss
    difference, cosine and relative error of the full gradient vectors), set beside how far
    the fp32 gradient of another batch of the same size is: the noise SGD lives with anyway."""
    augment = simclr_augment(32, color_strength=0.5)
    generator = torch.Generator(device=device).manual_seed(1)

    def views(images: torch.Tensor) -> torch.Tensor:
        images = images.to(device)
        pair = torch.cat([augment(images, generator), augment(images, generator)])
        return pair.contiguous(memory_format=torch.channels_last)

    batch, other_batch = views(train.images[:128]), views(train.images[128:256])
    loss32, grad32 = _one_step_gradient(batch, device, bf16=False)
    loss16, grad16 = _one_step_gradient(batch, device, bf16=True)
    _, grad_other = _one_step_gradient(other_batch, device, bf16=False)
    cosine = torch.nn.functional.cosine_similarity
    return {"check": "bf16_vs_fp32_one_step", "loss_fp32": round(loss32, 5), "loss_bf16": round(loss16, 5),
            "gradient_cosine_bf16_vs_fp32": round(cosine(grad32, grad16, dim=0).item(), 4),
            "gradient_relative_error_bf16": round(((grad16 - grad32).norm() / grad32.norm()).item(), 4),
            "gradient_cosine_fp32_other_batch": round(cosine(grad32, grad_other, dim=0).item(), 4)}


class TwoViewPIL(torch.utils.data.Dataset):
    """lightly-style dataset: each item is two torchvision-transformed views of one PIL image."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels
        self.transform = T.Compose([
            T.RandomResizedCrop(32, scale=(0.08, 1.0)), T.RandomHorizontalFlip(),
            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), T.RandomGrayscale(0.2),
            T.ToTensor(), T.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
        ])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        image = Image.fromarray(self.images[index].permute(1, 2, 0).numpy())
        return self.transform(image), self.transform(image), self.labels[index]


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6, help="alternating rounds")
    parser.add_argument("--calls", type=int, default=2, help="SGD steps per turn")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per contender")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the per-sample pipelines")
    parser.add_argument("--precisions", nargs="+", choices=["fp32", "bf16"], default=None,
                        help="the batched pipeline's precisions (default: fp32, plus bf16 where native)")
    parser.add_argument("--compile", action="store_true",
                        help="also time each batched contender with its encoder compiled (torch.compile; named "
                             "batched_<precision>_compiled; compiled during the warm-up steps)")
    parser.add_argument("--skip-per-sample", action="store_true", help="do not time the rebuilt per-sample pipeline")
    parser.add_argument("--reference", choices=["lightly"], help="time lightly's pipeline alongside")
    parser.add_argument("--peak", metavar="PEAK_JSON", help="benchmarks/peak.py output: fractions of the peak")
    parser.add_argument("--profile", action="store_true", help="print each contender's operator profile")
    parser.add_argument("--profile-top", type=int, default=12, help="operators listed per profile")
    add_device_argument(parser, "where the networks run (and the batched augmentation)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--quick", action="store_true", help="batch 8, 2 rounds of 1 step: checks the script")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch_size, args.rounds, args.calls, args.warmup = 8, 2, 1, 1
    torch.set_num_threads(args.threads)
    device = select_device(args.device)
    precisions = args.precisions or default_precisions(device)
    if "bf16" not in precisions and args.precisions is None:  # why the default left it out
        emit({"bench": "vision_throughput", "contender": "batched_bf16", "skipped": bf16_skip_note(device)})
    train = load_cifar10("train")
    contenders, meta = {}, {}
    if not args.skip_per_sample:
        contenders[f"per_sample_pil_workers{args.workers}"] = per_sample(train, args, device)
    for precision in precisions:
        contenders[f"batched_{precision}"] = batched(train, args, device, precision == "bf16")
        if args.compile:
            contenders[f"batched_{precision}_compiled"] = batched(train, args, device, precision == "bf16", True)
    if args.reference:
        contenders[REFERENCE], meta = lightly_reference(train, args, device)
    try:
        return report(contenders, meta, train, args, device, precisions)
    finally:  # paused DataLoader workers must run again to shut down
        for contender in contenders.values():
            if contender.enter is not None:
                contender.enter()


def report(contenders: dict[str, Contender], meta: dict, train, args, device: torch.device,
           precisions: list[str]) -> list[dict]:
    failed: dict[str, str] = {}
    times = alternate(contenders, rounds=args.rounds, calls=args.calls, warmup=args.warmup, device=device,
                      failed=failed)
    for name, why in failed.items():
        emit({"bench": "vision_throughput", "contender": name, "device": str(device), "failed": why})
    peak = load_peak(args.peak) if args.peak else None
    rows = []
    for name, row in (compare(times) if times else {}).items():
        precision = "bf16" if "bf16" in name else "fp32"
        rate = twin_rate(contenders, name, failed, row["median_s"], precision, peak, device)
        record = {"bench": "vision_throughput", "contender": name, "precision": precision, "device": str(device),
                  "batch_size": args.batch_size, "images_per_second": round(args.batch_size / row["median_s"], 2),
                  **row, **rate, **(meta if name == REFERENCE else {})}
        emit(record)
        rows.append(record)
    if not args.reference:
        emit({"bench": "vision_throughput", "contender": REFERENCE,
              **not_measured("no --reference given", f"--reference lightly ({LIGHTLY_HOW})")})
    if args.profile:
        for name, contender in contenders.items():
            if name in failed:
                continue
            with turn_of(contender):
                emit({"bench": "vision_profile", "contender": name,
                      **profile_ops(contender.step, calls=2, top=args.profile_top, device=device)})
    if "bf16" in precisions:
        emit(bf16_numerics(train, device))
    return rows


if __name__ == "__main__":
    main()
