"""Train CUT or FastCUT on unpaired images: ``python -m cut_translation.train --data PATH --mode cut``.

The run folder (``--run-dir``) receives:

- ``config.json``: the settings of the run;
- ``train.csv`` / ``train.jsonl``: losses, learning rate and seconds per step, every ``--log-every`` steps;
- ``eval.csv`` / ``eval.jsonl``: on the held-out split, every ``--eval-every`` epochs and after
  the last one: FID / KID, their paired gains over the identity baseline, the domain-B share of
  a classifier on Inception features, the content (edge) correlation, each with a bootstrap
  interval (``*_low``, ``*_high``); epoch 0 is the identity baseline (untranslated A images)
  with the other ends of the scales (``domain_share_real_b``, ``content_unrelated``);
- ``eval_features.pt``: the real images' Inception features, computed once per run;
- ``tensorboard/``: the same scalars;
- ``samples/epoch_NNN.png``: held-out images, one column each; rows: input A, G(A), input B,
  G(B) (the identity mapping);
- ``checkpoint.pt``: everything needed to ``--resume`` (written atomically after every epoch);
- ``best.pt`` and ``generator_best.safetensors``: the generator of the epoch with the lowest FID;
  ``generator.safetensors``: the last generator;
- ``summary.json``: baseline, best and last FID / KID, epochs and wall-clock time.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torchvision.utils import save_image

from core_ssl.checkpoint import (CheckpointError, atomic_write, capture_rng_state, load_checkpoint, restore_rng_state,
                                 save_checkpoint)
from core_ssl.config import config_to_dict, parse_config, save_config
from core_ssl.device import resolve_bf16, resolve_device
from core_ssl.logger import RunLogger, progress
from cut_translation.data import UnpairedBatches, UnpairedData, load_unpaired, to_model_range
from cut_translation.evaluate import TranslationEvaluator
from cut_translation.export import export_generator
from cut_translation.model import CUTModel, CUTSettings

__all__ = ["TrainConfig", "PRESETS", "train", "main"]


@dataclass
class TrainConfig:
    """Train CUT / FastCUT (Park et al. 2020) to translate domain A (trainA/) into domain B (trainB/)."""

    data: str = field(default="catdog-128.zip", metadata={"help": "folder or zip with trainA/ and trainB/, or SOURCE:CLASS_A,CLASS_B for two classes of a {train,test}/<class>/ dataset (relative paths are also looked up in the data root)"})
    mode: Literal["cut", "fastcut"] = field(default="cut", metadata={"help": "CUT (identity NCE) or FastCUT (lambda_NCE 10, flip equivariance)"})
    run_dir: Path = field(default=Path("runs/cut"), metadata={"help": "folder for logs, samples and checkpoints"})
    resume: bool = field(default=False, metadata={"help": "continue the run in --run-dir from its checkpoint.pt"})
    size: int = field(default=128, metadata={"help": "training crop and evaluation size (divisible by 4, >= 32)"})
    load_size: int | None = field(default=None, metadata={"help": "resize before the random crop; None = round(size * 286 / 256)"})
    holdout: int = field(default=200, metadata={"help": "images per domain held out for FID / KID (when there is no testA/testB)"})
    channels: int | None = field(default=None, metadata={"help": "1 (grey) or 3; None = colour unless both domains are grey"})
    batch_size: int = field(default=1, metadata={"help": "images per domain per step (1 in the paper)"})
    epochs: int | None = field(default=None, metadata={"help": "epochs at constant lr; None = 200 CUT, 150 FastCUT"})
    epochs_decay: int | None = field(default=None, metadata={"help": "epochs of linear lr decay to 0; None = 200 CUT, 50 FastCUT"})
    steps_per_epoch: int | None = field(default=None, metadata={"help": "cap the steps of an epoch; None = max(|A|, |B|) / batch"})
    ngf: int = field(default=64, metadata={"help": "generator width"})
    n_blocks: int = field(default=9, metadata={"help": "generator residual blocks (9; 6 for small images)"})
    ndf: int = field(default=64, metadata={"help": "discriminator width"})
    lambda_gan: float = field(default=1.0, metadata={"help": "weight of the GAN loss"})
    lambda_nce: float | None = field(default=None, metadata={"help": "weight of PatchNCE; None = 1 CUT, 10 FastCUT"})
    nce_idt: bool | None = field(default=None, metadata={"help": "identity PatchNCE on domain B; None = on for CUT"})
    flip_equivariance: bool | None = field(default=None, metadata={"help": "flip-equivariance; None = on for FastCUT"})
    num_patches: int = field(default=256, metadata={"help": "sampled locations per NCE layer"})
    temperature: float = field(default=0.07, metadata={"help": "PatchNCE temperature"})
    lr: float = field(default=2e-4, metadata={"help": "Adam learning rate (betas 0.5, 0.999)"})
    bf16: str = field(default="auto", metadata={"help": "bf16 autocast for the networks, losses in fp32: auto = on where the device runs bf16 natively (CUDA, CPUs with AVX512-BF16 or AMX) | on | off", "choices": ["auto", "on", "off"]})
    eval_every: int = field(default=5, metadata={"help": "FID / KID every N epochs (0: never)"})
    eval_images: int | None = field(default=None, metadata={"help": "held-out images per domain used for the evaluation; None = all"})
    classifier_images: int = field(default=400, metadata={"help": "training images per domain for the domain classifier (0: none)"})
    eval_bootstrap: int = field(default=1000, metadata={"help": "bootstrap replicates per evaluation interval"})
    samples: int = field(default=6, metadata={"help": "held-out images in each sample grid"})
    log_every: int = field(default=50, metadata={"help": "log losses every N steps"})
    seed: int = field(default=0, metadata={"help": "random seed (initialisation, data order, held-out split)"})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda | cuda:N"})
    threads: int | None = field(default=None, metadata={"help": "CPU threads for torch; None = one per core"})
    tensorboard: bool = field(default=True, metadata={"help": "write TensorBoard logs"})


PRESETS = {
    # CPU-sized: 64 px crops, 6 residual blocks, 30 + 30 epochs (about 3 hours on 2 cores with native bf16).
    "cpu": {"size": 64, "n_blocks": 6, "epochs": 30, "epochs_decay": 30, "eval_every": 2},
    # Two CIFAR-10 classes at 32 px (test split held out): a task a CPU run can learn.
    "cifar": {"data": "cifar10-jpeg.zip:automobile,truck", "size": 32, "n_blocks": 6, "epochs": 10,
              "epochs_decay": 10, "steps_per_epoch": 1000, "eval_every": 2, "eval_images": 500,
              "eval_bootstrap": 500},
    # A quick end-to-end check: tiny networks, a few steps.
    "smoke": {"size": 32, "ngf": 8, "ndf": 8, "n_blocks": 2, "epochs": 1, "epochs_decay": 1,
              "steps_per_epoch": 5, "eval_every": 1, "eval_images": 8, "holdout": 16, "num_patches": 64,
              "log_every": 1, "classifier_images": 8, "eval_bootstrap": 50},
}


def _settings(cfg: TrainConfig, channels: int, device: torch.device) -> CUTSettings:
    return CUTSettings.for_mode(
        cfg.mode, in_channels=channels, ngf=cfg.ngf, n_blocks=cfg.n_blocks, ndf=cfg.ndf,
        num_patches=cfg.num_patches, temperature=cfg.temperature, lambda_gan=cfg.lambda_gan,
        lambda_nce=cfg.lambda_nce, nce_idt=cfg.nce_idt, flip_equivariance=cfg.flip_equivariance,
        lr=cfg.lr, n_epochs=cfg.epochs, n_epochs_decay=cfg.epochs_decay,
        bf16=resolve_bf16(cfg.bf16, device))


def _sample_grid(model: CUTModel, data: UnpairedData, count: int, path: Path) -> None:
    """Rows: input A, G(A), input B, G(B); one column per held-out (or training) image."""
    a = data.test_a[:count] if len(data.test_a) else data.train_a[:count, :, :data.size, :data.size]
    b = data.test_b[:count] if len(data.test_b) else data.train_b[:count, :, :data.size, :data.size]
    n = min(len(a), len(b))
    real_a, real_b = to_model_range(a[:n]), to_model_range(b[:n])
    rows = [real_a, model.translate(real_a), real_b, model.translate(real_b)]
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image((torch.cat(rows).cpu() + 1) / 2, path, nrow=n, padding=2)


def _describe(metrics: dict, baseline: dict) -> str:
    text = f"FID {metrics['fid']:.2f} [{metrics['fid_low']:.2f}, {metrics['fid_high']:.2f}]"
    if "fid_gain" in metrics:
        text += f" (gain over identity {metrics['fid_gain']:.2f} [{metrics['fid_gain_low']:.2f}, {metrics['fid_gain_high']:.2f}])"
    if "domain_share" in metrics:
        text += (f"  B-share {metrics['domain_share']:.2f} [{metrics['domain_share_low']:.2f}, "
                 f"{metrics['domain_share_high']:.2f}] (identity {baseline['domain_share']:.2f})")
    return text + f"  content {metrics['content']:.3f} (unrelated {baseline['content_unrelated']:.3f})"


def train(cfg: TrainConfig) -> dict:
    """Run (or resume) the training ``cfg`` describes; returns the summary written to summary.json."""
    device = resolve_device(cfg.device)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    run_dir = Path(cfg.run_dir)
    checkpoint_path = run_dir / "checkpoint.pt"
    if checkpoint_path.exists() and not cfg.resume:
        raise ValueError(f"{run_dir} already holds a run: pass --resume to continue it, or choose another --run-dir")
    if cfg.resume and not checkpoint_path.exists():
        raise ValueError(f"--resume given but {checkpoint_path} does not exist: start without --resume")
    torch.manual_seed(cfg.seed)

    data = load_unpaired(cfg.data, cfg.size, cfg.load_size, cfg.holdout, cfg.channels, cfg.seed)
    run_info = {"data": str(cfg.data), "size": cfg.size, "holdout": cfg.holdout, "seed": cfg.seed}
    model = CUTModel(_settings(cfg, data.channels, device)).to(device)
    batches = UnpairedBatches(data, cfg.batch_size, device, cfg.seed)
    steps_per_epoch = min(batches.steps_per_epoch, cfg.steps_per_epoch or batches.steps_per_epoch)
    total_epochs = model.settings.n_epochs + model.settings.n_epochs_decay
    evaluator = None
    if cfg.eval_every > 0:
        evaluator = TranslationEvaluator(
            data, device, cfg.eval_images, classifier_images=cfg.classifier_images,
            bootstrap_reps=cfg.eval_bootstrap, seed=cfg.seed, cache=run_dir / "eval_features.pt",
            cache_key={**run_info, "load_size": data.load_size, "channels": data.channels})
    logger = RunLogger(run_dir, tensorboard=cfg.tensorboard)

    epoch, step, best, baseline, elapsed = 0, 0, None, None, 0.0
    if cfg.resume:
        state = load_checkpoint(checkpoint_path, map_location=device)
        model.load_training_state(state["model"])
        batches.load_state_dict(state["data_rng"])
        restore_rng_state(state["rng"])
        epoch, step, best, baseline = state["epoch"], state["step"], state["best"], state["baseline"]
        elapsed = state["elapsed_seconds"]
        logger.truncate_after(step)
    else:
        save_config(cfg, run_dir)
        if evaluator is not None:
            baseline = evaluator.baseline()
            logger.log("eval", 0, epoch=0, **baseline)
    print(f"{cfg.mode}: {data}, {steps_per_epoch} steps x {total_epochs} epochs on {device}"
          f"{' (bf16)' if model.settings.bf16 else ''}; run folder {run_dir}", file=sys.stderr)

    bar = progress(total=total_epochs * steps_per_epoch, initial=step, desc=cfg.mode, unit="step")
    started = time.perf_counter() - elapsed
    while epoch < total_epochs:
        epoch += 1
        for index, (real_a, real_b) in enumerate(batches.epoch(finetune=epoch > model.settings.n_epochs)):
            if index == steps_per_epoch:
                break
            step_started = time.perf_counter()
            losses = model.train_step(real_a, real_b)
            step += 1
            bar.update()
            if step % cfg.log_every == 0:
                logger.log("train", step, epoch=epoch, lr=model.learning_rate,
                           seconds_per_step=time.perf_counter() - step_started,
                           **{k: v for k, v in losses.items() if k.startswith("loss")})
                bar.set_postfix(nce=f"{losses['loss_nce']:.3f}" if "loss_nce" in losses else "off",
                                g=f"{losses['loss_g_gan']:.3f}", d=f"{losses['loss_d']:.3f}")
        model.end_epoch()
        _sample_grid(model, data, cfg.samples, run_dir / "samples" / f"epoch_{epoch:03d}.png")

        if evaluator is not None and (epoch % cfg.eval_every == 0 or epoch == total_epochs):
            metrics = evaluator.evaluate(model)
            logger.log("eval", step, epoch=epoch, **metrics)
            bar.write(f"epoch {epoch}: {_describe(metrics, baseline)}")
            if best is None or metrics["fid"] < best["fid"]:
                best = {"epoch": epoch, "step": step, **metrics}
                save_checkpoint({"settings": model.settings.to_dict(), "generator": model.generator.state_dict(),
                                 "run": run_info, "epoch": epoch, "metrics": metrics}, run_dir / "best.pt")
                export_generator(model.generator, model.settings, run_dir / "generator_best.safetensors", run=run_info)
        elapsed = time.perf_counter() - started
        save_checkpoint({"model": model.training_state(), "run": run_info, "config": config_to_dict(cfg),
                         "epoch": epoch, "step": step, "best": best, "baseline": baseline,
                         "elapsed_seconds": elapsed, "rng": capture_rng_state(),
                         "data_rng": batches.state_dict()}, checkpoint_path)
        logger.flush()
    bar.close()
    export_generator(model.generator, model.settings, run_dir / "generator.safetensors", run=run_info)

    evaluations = [row for row in logger.read("eval") if row.get("epoch", 0) > 0]
    summary = {"mode": cfg.mode, "epochs": epoch, "steps": step, "wall_clock_seconds": round(elapsed, 1),
               "identity_baseline": baseline, "best": best, "last": evaluations[-1] if evaluations else None}
    text = json.dumps(summary, indent=2)
    atomic_write(run_dir / "summary.json", lambda f: f.write((text + "\n").encode()))
    logger.close()
    print(text)
    return summary


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_config(TrainConfig, argv, presets=PRESETS)
    return train(cfg)


if __name__ == "__main__":
    try:
        main()
    except (FileNotFoundError, ValueError, CheckpointError) as err:
        sys.exit(f"error: {err}")
