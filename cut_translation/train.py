"""Train CUT or FastCUT on unpaired images: ``python -m cut_translation.train --data PATH --mode cut``.

The run folder (``--run-dir``) receives:

- ``config.json``: the settings of the run;
- ``train.csv`` / ``train.jsonl``: losses, learning rate and seconds per step, every ``--log-every`` steps;
- ``eval.csv`` / ``eval.jsonl``: on the held-out split, every ``--eval-every`` epochs and after
  the last one: FID / KID, their paired gains over the identity baseline, the domain-B share of
  a classifier on Inception features, the content (edge) correlation, each with a bootstrap
  interval (``*_low``, ``*_high``); epoch 0 is the identity baseline (untranslated A images)
  with the other ends of the scales (``domain_share_real_b``, ``content_unrelated``);
- ``eval_features.pt``: the real images' Inception features, computed once per run (or kept
  in ``--eval-cache``, a file that runs on the same data, size, hold-out and seed share; its
  key is checked, so a file from other settings is recomputed, never misused);
- ``tensorboard/``: the same scalars;
- ``samples/epoch_NNN.png``: held-out images, one column each; rows: input A, G(A), input B,
  G(B) (the identity mapping);
- ``checkpoint.pt``: everything needed to ``--resume`` (written atomically after every epoch);
- ``best.pt`` and ``generator_best.safetensors``: the generator of the epoch with the lowest FID;
  ``generator.safetensors``: the last generator;
- ``summary.json``: baseline, best and last FID / KID, epochs and wall-clock time.

The run follows :mod:`core_ssl.run`: ``--resume`` continues the run in the folder given; flags
given with it must match the saved config (the mode's defaults filled in), except ``--device``,
``--threads`` and a longer ``--epochs`` / ``--epochs-decay``. The folder is locked while a
process trains into it. SIGINT / SIGTERM save a checkpoint after the current step (resumed
mid-epoch exactly), then exit 130 / 143; a non-finite loss or generator stops the run with the
last good checkpoint kept.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal, Sequence

from core_ssl.openmp import prefer_passive_waiting

prefer_passive_waiting()  # before torch loads: no OpenMP spin-waiting on a shared CPU

import torch  # noqa: E402
from torchvision.utils import save_image  # noqa: E402

from core_ssl.checkpoint import capture_rng_state, restore_rng_state, save_checkpoint
from core_ssl.cli import UsageError, run_command
from core_ssl.config import config_to_dict, replace_config
from core_ssl.device import resolve_bf16, resolve_device
from core_ssl.logger import RunLogger, progress
from core_ssl.pipeline import ConfigPipeline
from core_ssl.run import RunFolder
from cut_translation import domain_classifier
from cut_translation.data import UnpairedBatches, UnpairedData, load_unpaired, to_model_range
from cut_translation.evaluate import TranslationEvaluator
from cut_translation.export import export_generator
from cut_translation.model import CUTModel, CUTSettings

__all__ = ["TrainConfig", "PRESETS", "train", "main"]

COMMAND = "python -m cut_translation.train"
RUNTIME_FIELDS = ("device", "threads", "eval_cache", "strict")  # may change on --resume
LENGTH_FIELDS = ("epochs", "epochs_decay")  # may grow on --resume
MODE_FIELDS = ("epochs", "epochs_decay", "lambda_nce", "nce_idt", "flip_equivariance")  # None = the mode's default
NAN_HINT = "lower the learning rate (--lr), or turn bf16 off (--bf16 off)"


@dataclass
class TrainConfig:
    """Train CUT / FastCUT (Park et al. 2020) to translate domain A (trainA/) into domain B (trainB/)."""

    data: str = field(default="catdog-128.zip", metadata={"help": "folder or zip with trainA/ and trainB/, or SOURCE:CLASS_A,CLASS_B for two classes of a {train,test}/<class>/ dataset (relative paths are also looked up in the data root)"})
    mode: Literal["cut", "fastcut"] = field(default="cut", metadata={"help": "CUT (identity NCE) or FastCUT (lambda_NCE 10, flip equivariance)"})
    run_dir: Path = field(default=Path("runs/cut"), metadata={"help": "folder for logs, samples and checkpoints", "nonempty": True})
    resume: bool = field(default=False, metadata={"help": "continue the run in --run-dir from its checkpoint.pt"})
    size: int = field(default=128, metadata={"help": "training crop and evaluation size (divisible by 4, >= 32)", "min": 32})
    load_size: int | None = field(default=None, metadata={"help": "resize before the random crop; None = round(size * 286 / 256)", "min": 32})
    holdout: int = field(default=200, metadata={"help": "images per domain held out for FID / KID (when there is no testA/testB)", "min": 0})
    channels: int | None = field(default=None, metadata={"help": "1 (grey) or 3; None = colour unless both domains are grey", "choices": [1, 3]})
    batch_size: int = field(default=1, metadata={"help": "images per domain per step (1 in the paper)", "min": 1})
    epochs: int | None = field(default=None, metadata={"help": "epochs at constant lr; None = 200 CUT, 150 FastCUT", "min": 0})
    epochs_decay: int | None = field(default=None, metadata={"help": "epochs of linear lr decay to 0; None = 200 CUT, 50 FastCUT", "min": 0})
    steps_per_epoch: int | None = field(default=None, metadata={"help": "cap the steps of an epoch; None = max(|A|, |B|) / batch", "min": 1})
    ngf: int = field(default=64, metadata={"help": "generator width", "min": 1})
    n_blocks: int = field(default=9, metadata={"help": "generator residual blocks (9; 6 for small images)", "min": 1})
    ndf: int = field(default=64, metadata={"help": "discriminator width", "min": 1})
    lambda_gan: float = field(default=1.0, metadata={"help": "weight of the GAN loss", "min": 0})
    lambda_nce: float | None = field(default=None, metadata={"help": "weight of PatchNCE; None = 1 CUT, 10 FastCUT", "min": 0})
    nce_idt: bool | None = field(default=None, metadata={"help": "identity PatchNCE on domain B; None = on for CUT"})
    flip_equivariance: bool | None = field(default=None, metadata={"help": "flip-equivariance; None = on for FastCUT"})
    num_patches: int = field(default=256, metadata={"help": "sampled locations per NCE layer", "min": 1})
    temperature: float = field(default=0.07, metadata={"help": "PatchNCE temperature", "gt": 0})
    lr: float = field(default=2e-4, metadata={"help": "Adam learning rate (betas 0.5, 0.999)", "gt": 0})
    bf16: str = field(default="auto", metadata={"help": "bf16 autocast for the networks, losses in fp32: auto = on where the device runs bf16 natively (CUDA, CPUs with AVX512-BF16 or AMX) | on | off", "choices": ["auto", "on", "off"]})
    eval_every: int = field(default=5, metadata={"help": "FID / KID every N epochs (0: never)", "min": 0})
    eval_images: int | None = field(default=None, metadata={"help": "held-out images per domain used for the evaluation; None = all", "min": 1})
    classifier_images: int = field(default=400, metadata={"help": "training images per domain for the domain classifier (0: none)", "min": 0})
    eval_bootstrap: int = field(default=1000, metadata={"help": "bootstrap replicates per evaluation interval", "min": 1})
    eval_cache: Path | None = field(default=None, metadata={"help": "file keeping the real images' Inception features, shareable by runs with the same data, size, hold-out and seed (default: <run-dir>/eval_features.pt)"})
    samples: int = field(default=6, metadata={"help": "held-out images in each sample grid", "min": 1})
    log_every: int = field(default=50, metadata={"help": "log losses every N steps", "min": 1})
    seed: int = field(default=0, metadata={"help": "random seed (initialisation, data order, held-out split)", "min": 0})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda | cuda:N"})
    threads: int | None = field(default=None, metadata={"help": "CPU threads for torch; None = one per core", "min": 1})
    tensorboard: bool = field(default=True, metadata={"help": "write TensorBoard logs"})
    strict: bool = field(default=False, metadata={"help": "stop at the first unreadable image instead of skipping it "
                                                         "with a warning that names it"})


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
    """The model's settings from a config whose mode defaults are already filled in by
    :func:`resolve_mode_defaults` (as :data:`PIPELINE` does): the mode's defaults are looked up
    there only, once. Raises ValueError for a config that skipped it."""
    unresolved = [name for name in MODE_FIELDS if getattr(cfg, name) is None]
    if unresolved:
        raise ValueError(f"{', '.join(unresolved)} of the config are not resolved: pass it through "
                         "resolve_mode_defaults (or PIPELINE.finish) first")
    return CUTSettings(
        in_channels=channels, ngf=cfg.ngf, n_blocks=cfg.n_blocks, ndf=cfg.ndf, num_patches=cfg.num_patches,
        temperature=cfg.temperature, lambda_gan=cfg.lambda_gan, lambda_nce=cfg.lambda_nce, nce_idt=cfg.nce_idt,
        flip_equivariance=cfg.flip_equivariance, lr=cfg.lr, n_epochs=cfg.epochs, n_epochs_decay=cfg.epochs_decay,
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
    text = (f"FID {metrics['fid']:.2f} (these n images; large-sample FID "
            f"[{metrics['fid_low']:.2f}, {metrics['fid_high']:.2f}])")
    if "fid_gain" in metrics:
        text += (f" (gain over identity {metrics['fid_gain']:.2f}, large-sample "
                 f"[{metrics['fid_gain_low']:.2f}, {metrics['fid_gain_high']:.2f}])")
    if "domain_share" in metrics:
        text += (f"  B-share {metrics['domain_share']:.2f} [{metrics['domain_share_low']:.2f}, "
                 f"{metrics['domain_share_high']:.2f}] (identity {baseline['domain_share']:.2f})")
    return text + f"  content {metrics['content']:.3f} (unrelated {baseline['content_unrelated']:.3f})"


def resolve_mode_defaults(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with the fields left at None for the mode (:data:`MODE_FIELDS`: epochs, loss
    weights, NCE options) filled in, as :meth:`CUTSettings.for_mode` fills them; this is what
    config.json records. The one place a run's config meets the mode's defaults: the model's
    settings are then read from the filled-in config (:func:`_settings`). Idempotent."""
    mode = CUTSettings.for_mode(cfg.mode, lambda_nce=cfg.lambda_nce, nce_idt=cfg.nce_idt,
                                flip_equivariance=cfg.flip_equivariance, n_epochs=cfg.epochs,
                                n_epochs_decay=cfg.epochs_decay)
    return replace_config(cfg, epochs=mode.n_epochs, epochs_decay=mode.n_epochs_decay, lambda_nce=mode.lambda_nce,
                          nce_idt=mode.nce_idt, flip_equivariance=mode.flip_equivariance)


def check(cfg: TrainConfig) -> None:
    """The checks beyond each field's declared bounds (:class:`UsageError`, exit 2)."""
    if cfg.size % 4:
        raise UsageError(f"--size must be divisible by 4, got {cfg.size}", "give e.g. 32, 64 or 128")
    if cfg.load_size is not None and cfg.load_size < cfg.size:
        raise UsageError(f"--load-size {cfg.load_size} is smaller than --size {cfg.size}: the random crop is taken "
                         "from the loaded image", "give a --load-size of at least --size, or leave it out")
    if 0 < cfg.classifier_images < domain_classifier.MIN_IMAGES:
        raise UsageError(f"--classifier-images must be 0 (no domain classifier) or at least {domain_classifier.MIN_IMAGES}, "
                         f"got {cfg.classifier_images}", f"give 0 or {domain_classifier.MIN_IMAGES} or more")


PIPELINE = ConfigPipeline(TrainConfig, presets=PRESETS, run_dir_field="run_dir", runtime=RUNTIME_FIELDS,
                          extendable=LENGTH_FIELDS, resolve=resolve_mode_defaults, check=check)
"""Flags -> validated config (:mod:`core_ssl.pipeline`): the mode's defaults filled in, every field
within the bounds its declaration states."""


def validate(cfg: TrainConfig) -> None:
    """Refuse settings that cannot work before anything starts (:class:`UsageError`, exit 2)."""
    PIPELINE.validate(cfg)


def train(cfg: TrainConfig, given: Iterable[str] | None = None) -> dict:
    """Run (or resume) the training ``cfg`` describes in its locked run folder; returns the
    summary written to summary.json. ``cfg`` goes through :data:`PIPELINE` first (merged with
    the saved config on resume, the mode's defaults filled in, validated); ``given``: the fields
    named on the command line (None = those set away from the defaults)."""
    cfg = PIPELINE.finish(cfg, given)
    device = resolve_device(cfg.device)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    with RunFolder(cfg.run_dir, cfg.resume, COMMAND, hint=NAN_HINT) as run:
        return _train(cfg, run, device)


def _train(cfg: TrainConfig, run: RunFolder, device: torch.device) -> dict:
    """The loop, top to bottom, in the open run folder."""
    run_dir = run.path
    torch.manual_seed(cfg.seed)

    data = load_unpaired(cfg.data, cfg.size, cfg.load_size, cfg.holdout, cfg.channels, cfg.seed, strict=cfg.strict)
    run_info = {"data": str(cfg.data), "size": cfg.size, "holdout": cfg.holdout, "seed": cfg.seed}
    model = CUTModel(_settings(cfg, data.channels, device)).to(device)
    batches = UnpairedBatches(data, cfg.batch_size, device, cfg.seed)
    steps_per_epoch = min(batches.steps_per_epoch, cfg.steps_per_epoch or batches.steps_per_epoch)
    total_epochs = model.settings.n_epochs + model.settings.n_epochs_decay
    evaluator = None
    if cfg.eval_every > 0:
        evaluator = TranslationEvaluator(
            data, device, cfg.eval_images, classifier_images=cfg.classifier_images,
            bootstrap_reps=cfg.eval_bootstrap, seed=cfg.seed,
            cache=Path(cfg.eval_cache) if cfg.eval_cache is not None else run_dir / "eval_features.pt",
            cache_key={**run_info, "load_size": data.load_size, "channels": data.channels})
    logger = RunLogger(run_dir, tensorboard=cfg.tensorboard)

    epoch, step, best, baseline, elapsed, skip = 0, 0, None, None, 0.0, 0
    if cfg.resume:
        state = run.load(map_location=device)
        model.load_training_state(state["model"])
        batches.load_state_dict(state["data_rng"])
        restore_rng_state(state["rng"])
        epoch, step, best, baseline = state["epoch"], state["step"], state["best"], state["baseline"]
        elapsed = state["elapsed_seconds"]
        skip = state.get("batch_in_epoch", 0)  # steps of the unfinished epoch done before a SIGINT / SIGTERM
        logger.truncate_after(step)
        del state
    elif evaluator is not None:
        baseline = evaluator.baseline()
        logger.log("eval", 0, epoch=0, **baseline)
    run.save_config(cfg)  # on resume: the folder it now lives in, and a lengthened schedule
    print(f"{cfg.mode}: {data}, {steps_per_epoch} steps x {total_epochs} epochs on {device}"
          f"{' (bf16)' if model.settings.bf16 else ''}; run folder {run_dir}", file=sys.stderr)

    def save_training_state(batch_in_epoch: int, data_rng: dict, losses: dict) -> None:
        """The checkpoint: ``epoch`` complete epochs and ``batch_in_epoch`` steps of the next;
        ``data_rng`` is the batch generator at the start of that next epoch."""
        run.save({"model": model.training_state(), "run": run_info, "config": config_to_dict(cfg),
                  "epoch": epoch - (batch_in_epoch > 0), "batch_in_epoch": batch_in_epoch, "step": step,
                  "best": best, "baseline": baseline, "elapsed_seconds": time.perf_counter() - started,
                  "rng": capture_rng_state(), "data_rng": data_rng}, f"step {step}", losses=losses)

    bar = progress(total=total_epochs * steps_per_epoch, initial=step, desc=cfg.mode, unit="step")
    started = time.perf_counter() - elapsed
    losses: dict = {}
    while epoch < total_epochs:
        epoch += 1
        epoch_data_rng = batches.state_dict()
        epoch_batches = itertools.islice(batches.epoch(finetune=epoch > model.settings.n_epochs), skip, steps_per_epoch)
        for index, (real_a, real_b) in enumerate(epoch_batches, start=skip):
            step_started = time.perf_counter()
            losses = model.train_step(real_a, real_b)
            step += 1
            bar.update()
            if step % cfg.log_every == 0:
                loss_values = {k: float(v) for k, v in losses.items() if k.startswith("loss")}
                run.check_finite(f"step {step}", **loss_values)
                logger.log("train", step, epoch=epoch, lr=model.learning_rate,
                           seconds_per_step=time.perf_counter() - step_started, **loss_values)
                bar.set_postfix(nce=f"{losses['loss_nce']:.3f}" if "loss_nce" in losses else "off",
                                g=f"{losses['loss_g_gan']:.3f}", d=f"{losses['loss_d']:.3f}")
            if run.stop_signal is not None and index + 1 < steps_per_epoch:  # mid-epoch: save and stop
                save_training_state(index + 1, epoch_data_rng, _loss_terms(losses))
                bar.close()
                logger.close()
                raise run.interrupted()
        skip = 0
        model.end_epoch()
        run.check_weights(f"epoch {epoch} (step {step})", model.generator.state_dict())
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
        save_training_state(0, batches.state_dict(), _loss_terms(losses))
        elapsed = time.perf_counter() - started
        logger.flush()
        if run.stop_signal is not None and epoch < total_epochs:
            bar.close()
            logger.close()
            raise run.interrupted()
    bar.close()
    export_generator(model.generator, model.settings, run_dir / "generator.safetensors", run=run_info)

    evaluations = [row for row in logger.read("eval") if row.get("epoch", 0) > 0]
    summary = {"mode": cfg.mode, "epochs": epoch, "steps": step, "wall_clock_seconds": round(elapsed, 1),
               "identity_baseline": baseline, "best": best, "last": evaluations[-1] if evaluations else None}
    run.write_summary(summary)
    logger.close()
    print(json.dumps(summary, indent=2))
    return summary


def _loss_terms(losses: dict) -> dict:
    return {k: v for k, v in losses.items() if k.startswith("loss")}


def main(argv: Sequence[str] | None = None) -> dict:
    """Parse the flags once (:data:`PIPELINE`) and train."""
    return train(*PIPELINE.read(list(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    run_command(main)
