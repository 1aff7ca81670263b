"""A few-minute end-to-end check of the core on real data: SimCLR on CIFAR-10 with the small ConvNet.

Pre-trains on a CIFAR-10 subset with the batched SimCLR augmentation and NT-Xent, and after
every epoch reports the weighted kNN top-1 (k=200, t=0.1) on the CIFAR-10 test set together
with the collapse monitors (embedding std, effective rank). The randomly initialised encoder's
kNN accuracy is measured first, so the gain from pre-training is visible. Writes metrics (CSV,
JSONL, TensorBoard), a plot, the config, an atomic checkpoint and the encoder as safetensors
into ``--out``.

    python -m core_ssl.demo                       # a few minutes on 2 CPU cores
    python -m core_ssl.demo --epochs 20 --train-images 50000
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from core_ssl import checkpoint, losses, monitor
from core_ssl.augment import simclr_augment
from core_ssl.cli import run_command
from core_ssl.config import parse_config, save_config
from core_ssl.data import BatchIterator, load_cifar10
from core_ssl.device import autocast, resolve_bf16, resolve_device
from core_ssl.encoders import build_encoder
from core_ssl.features import knn_evaluation
from core_ssl.heads import simclr_projection
from core_ssl.logger import RunLogger, progress
from core_ssl.plotting import pyplot, save_figure


@dataclass
class DemoConfig:
    """SimCLR on CIFAR-10 with the small ConvNet: a few-minute health check of core_ssl."""

    epochs: int = field(default=15, metadata={"help": "pre-training epochs over the subset", "min": 0})
    train_images: int = field(default=20000, metadata={"help": "CIFAR-10 training images used (<= 50000)", "min": 1})
    batch_size: int = field(default=256, metadata={"help": "images per batch (two views each)", "min": 1})
    lr: float = field(default=2e-3, metadata={"help": "Adam learning rate", "gt": 0})
    temperature: float = field(default=0.5, metadata={"help": "NT-Xent temperature", "gt": 0})
    width: int = field(default=32, metadata={"help": "ConvNet base width (features = 8 x width)", "min": 1})
    bf16: str = field(default="auto", metadata={"help": "bf16 autocast for the encoder (losses stay fp32): auto = on where "
                                                       "the device runs bf16 natively | on | off", "choices": ["auto", "on", "off"]})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})
    data_root: Path | None = field(default=None, metadata={"help": "folder holding cifar10-jpeg.zip (default: $SSL_DATA_DIR or ../shared/data)"})
    out: Path = field(default=Path("runs/demo"), metadata={"help": "run folder", "nonempty": True})
    seed: int = 0


def knn_eval(encoder, train, test, device, bf16) -> tuple[float, torch.Tensor]:
    """kNN top-1 (k = 200, t = 0.1) on the test set and the test features, for the monitors."""
    result = knn_evaluation(encoder, train.images, train.labels, test.images, test.labels, 10, device, bf16)
    return result.top1, result.test_features


def main(argv=None) -> dict:
    cfg = parse_config(DemoConfig, argv)
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)

    train_all = load_cifar10("train", root=cfg.data_root)
    test = load_cifar10("test", root=cfg.data_root)
    subset = torch.randperm(len(train_all), generator=torch.Generator().manual_seed(cfg.seed))[: cfg.train_images]
    train = train_all.subset(subset)

    encoder = build_encoder("convnet", width=cfg.width).to(device, memory_format=torch.channels_last)
    head = simclr_projection(encoder.feature_dim, hidden=512, out=128).to(device)
    augment = simclr_augment(32)
    optimizer = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=cfg.lr)
    batches = BatchIterator(train, cfg.batch_size, device=device, seed=cfg.seed, drop_last=True)

    cfg.out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, cfg.out)
    logger = RunLogger(cfg.out)
    bf16 = resolve_bf16(cfg.bf16, device)
    top1, test_features = knn_eval(encoder, train, test, device, bf16)
    history = [(0, top1)]
    print(f"random init: kNN top-1 {top1:.3f}")
    logger.log("eval", 0, epoch=0, knn_top1=top1, **monitor.representation_summary(test_features))

    step, start = 0, time.time()
    for epoch in range(1, cfg.epochs + 1):
        batches.set_epoch(epoch)
        bar = progress(batches, total=len(batches), desc=f"epoch {epoch}/{cfg.epochs}")
        for images, _, _ in bar:
            view1, view2 = augment(images, generator), augment(images, generator)
            views = torch.cat([view1, view2]).contiguous(memory_format=torch.channels_last)
            with autocast(device, bf16):
                z = head(encoder(views))
            z1, z2 = z.float().chunk(2)
            loss = losses.nt_xent(z1, z2, cfg.temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step % 10 == 0:
                logger.log("train", step, loss=loss.item(), **monitor.representation_summary(z1.detach(), z2.detach()))
                bar.set_postfix(loss=f"{loss.item():.3f}")
        top1, test_features = knn_eval(encoder, train, test, device, bf16)
        history.append((epoch, top1))
        summary = monitor.representation_summary(test_features)
        logger.log("eval", step, epoch=epoch, knn_top1=top1, **summary)
        print(f"epoch {epoch}: kNN top-1 {top1:.3f}  effective rank {summary['effective_rank']:.1f}  "
              f"({time.time() - start:.0f} s)")

    checkpoint.save_checkpoint({"encoder": encoder.state_dict(), "head": head.state_dict(),
                                "optimizer": optimizer.state_dict(), "step": step}, cfg.out / "last.pt")
    checkpoint.export_weights(encoder.state_dict(), cfg.out / "encoder.safetensors", {"arch": f"convnet-w{cfg.width}"})
    logger.close()
    plot_path = _plot(history, cfg.out / "knn.png")
    result = {"random_init_knn_top1": history[0][1], "final_knn_top1": history[-1][1],
              "seconds": round(time.time() - start, 1)}
    print(f"done: kNN top-1 {history[0][1]:.3f} (random init) -> {history[-1][1]:.3f} after {cfg.epochs} epochs; "
          f"see {plot_path} and {cfg.out}")
    return result


def _plot(history: list[tuple[int, float]], path: Path) -> Path:
    fig, ax = pyplot().subplots(figsize=(5, 3.2))
    epochs, accuracy = zip(*history)
    ax.plot(epochs, accuracy, marker="o")
    ax.axhline(0.1, color="grey", linestyle=":", label="chance")
    ax.set_xlabel("epoch")
    ax.set_ylabel("kNN top-1 (CIFAR-10 test)")
    ax.set_title("SimCLR, small ConvNet, CPU")
    ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)


if __name__ == "__main__":
    run_command(main)
