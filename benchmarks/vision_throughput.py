"""End-to-end SimCLR pre-training throughput (images/s, augmentation included) on CIFAR-10.

Same encoder (ResNet-18 with the CIFAR stem), head (512 -> 512 -> 128), loss (NT-Xent, t = 0.5),
optimiser (SGD, momentum 0.9) and batch (128 images of 32 px, two views each), two pipelines:

- ``batched``: this toolkit's way. Decoded uint8 CIFAR-10 in memory, one batched SimCLR
  augmentation per view on the tensor batch (``core_ssl.augment``), one forward pass over
  both views concatenated, channels-last; with and without bf16 autocast.
- ``per_sample``: lightly's way. A ``DataLoader`` whose dataset turns each image into a PIL
  image and runs torchvision's per-sample transforms twice (random resized crop, flip, colour
  jitter p 0.8, grayscale p 0.2, to-tensor, normalise), then one forward pass per view.

Prints one JSON line per pipeline, one with the speed-ups, and one comparing a bf16 step with
an fp32 step on the same batch and weights (loss and gradient agreement), e.g.::

    python benchmarks/vision_throughput.py                 # about 5 minutes on 2 CPU cores
    python benchmarks/vision_throughput.py --steps 2 --warmup 1   # a quick check
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torchvision.transforms as T
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core_ssl import losses  # noqa: E402
from core_ssl.augment import simclr_augment  # noqa: E402
from core_ssl.data import BatchIterator, load_cifar10  # noqa: E402
from core_ssl.device import autocast, resolve_device  # noqa: E402
from core_ssl.encoders import build_encoder  # noqa: E402
from core_ssl.heads import simclr_projection  # noqa: E402


def build_model(device: torch.device, channels_last: bool) -> tuple[torch.nn.Module, torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    encoder = build_encoder("resnet18", cifar_stem=True).to(device)
    head = simclr_projection(encoder.feature_dim, hidden=encoder.feature_dim, out=128).to(device)
    if channels_last:
        encoder = encoder.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD([*encoder.parameters(), *head.parameters()], lr=0.06, momentum=0.9, weight_decay=5e-4)
    return encoder, head, optimizer


def timed(steps: int, warmup: int, batches, step_fn, device: torch.device) -> tuple[float, int]:
    """Seconds for ``steps`` calls of ``step_fn`` after ``warmup`` untimed ones, and images seen."""
    iterator = iter(batches)
    for _ in range(warmup):
        step_fn(next(iterator))
    if device.type == "cuda":
        torch.cuda.synchronize()
    started, images = time.perf_counter(), 0
    for _ in range(steps):
        images += step_fn(next(iterator))
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started, images


def measure(name: str, args, batches, batch_loss, optimizer: torch.optim.Optimizer, device: torch.device) -> dict:
    """Time SGD steps on ``batch_loss(batch) -> (loss, images)``; one JSON-ready record."""
    def step(batch) -> int:
        loss, images = batch_loss(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return images

    seconds, images = timed(args.steps, args.warmup, batches, step, device)
    return {"pipeline": name, "images_per_second": round(images / seconds, 2), "seconds": round(seconds, 2),
            "steps": args.steps, "batch_size": args.batch_size}


def batched_pipeline(train, args, device: torch.device, bf16: bool) -> dict:
    encoder, head, optimizer = build_model(device, channels_last=True)
    augment = simclr_augment(32, color_strength=0.5)
    generator = torch.Generator(device=device).manual_seed(0)
    batches = BatchIterator(train, args.batch_size, seed=0, device=device)

    def batch_loss(batch) -> tuple[torch.Tensor, int]:
        images = batch[0]
        views = torch.cat([augment(images, generator), augment(images, generator)])
        with autocast(device, bf16):
            z = head(encoder(views.contiguous(memory_format=torch.channels_last)))
        return losses.nt_xent(*z.chunk(2), temperature=0.5), len(images)

    return measure(f"batched{'_bf16' if bf16 else '_fp32'}", args, batches, batch_loss, optimizer, device)


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


def per_sample_pipeline(train, args, device: torch.device) -> dict:
    encoder, head, optimizer = build_model(device, channels_last=False)
    loader = torch.utils.data.DataLoader(TwoViewPIL(train.images, train.labels), batch_size=args.batch_size,
                                         shuffle=True, drop_last=True, num_workers=args.workers,
                                         persistent_workers=args.workers > 0)

    def batch_loss(batch) -> tuple[torch.Tensor, int]:
        x0, x1, _ = batch
        x0, x1 = x0.to(device), x1.to(device)
        z0, z1 = head(encoder(x0)), head(encoder(x1))  # one forward pass per view
        return losses.nt_xent(z0, z1, temperature=0.5), len(x0)

    return measure(f"per_sample_pil_workers{args.workers}", args, loader, batch_loss, optimizer, device)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per pipeline")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the per-sample pipeline")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    train = load_cifar10("train")
    results = [per_sample_pipeline(train, args, device), batched_pipeline(train, args, device, bf16=False),
               batched_pipeline(train, args, device, bf16=True)]
    for result in results:
        result.update(device=str(device), threads=torch.get_num_threads())
        print(json.dumps(result), flush=True)
    reference = results[0]["images_per_second"]
    print(json.dumps({f"speedup_{r['pipeline']}_vs_per_sample": round(r["images_per_second"] / reference, 2)
                      for r in results[1:]}))
    print(json.dumps(bf16_numerics(train, device)))
    return results


if __name__ == "__main__":
    main()
