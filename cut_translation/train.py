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
from typing import Any, Iterable, Literal, Sequence

from core_ssl.openmp import prefer_passive_waiting

prefer_passive_waiting()  # before torch loads: no OpenMP spin-waiting on a shared CPU

import torch  # noqa: E402
from torchvision.utils import save_image  # noqa: E402

from core_ssl.checkpoint import capture_rng_state, restore_rng_state, save_checkpoint
from core_ssl.cli import UsageError, run_command
from core_ssl.config import config_to_dict, replace_config
from core_ssl.cuda_graphs import graph_support
from core_ssl.device import resolve_bf16, resolve_device, tune_convolutions
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
RUNTIME_FIELDS = ("device", "threads", "eval_cache", "strict", "compile", "cuda_graphs")  # may change on --resume
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
    minutes: float | None = field(default=None, metadata={"help": "train for about this many minutes, evaluations included: after each epoch at constant lr the run plans the epochs (constant, then decaying) that fill them at the pace measured so far, in the ratio of --epochs to --epochs-decay (the mode's: CUT 1:1, FastCUT 3:1); once the decay has begun the plan stays. Checkpoints and summary.json record the plan", "gt": 0})
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
    compile: bool = field(default=False, metadata={"help": "compile the generator and discriminator with torch.compile (the first steps then compile for a minute or more). Speed only, and it may change on --resume"})
    cuda_graphs: bool = field(default=False, metadata={"help": "replay each training step from a CUDA graph (one launch instead of a couple of thousand; the patch locations are then drawn on the GPU). CUDA only, not with --compile. Speed only, and it may change on --resume"})
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
    if cfg.cuda_graphs:
        if cfg.compile:
            raise UsageError("--cuda-graphs and --compile cannot be combined",
                             "choose one: --cuda-graphs replays the whole step, --compile fuses the networks' kernels")
        problem = graph_support(resolve_device(cfg.device))
        if problem:
            raise UsageError(f"--cuda-graphs: {problem}", "leave --cuda-graphs off, or run with --device cuda")
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
    tune_convolutions(device)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    with RunFolder(cfg.run_dir, cfg.resume, COMMAND, hint=NAN_HINT) as run:
        return _train(cfg, run, device)


@dataclass
class Position:
    """Where a CUT run stands; its fields are saved at the top level of every checkpoint (the
    layout checkpoints have always had, so older ones resume too).

    ``epoch`` counts the complete epochs; ``batch_in_epoch`` the steps of the next one done
    before a SIGINT / SIGTERM (0 at an epoch's end); ``elapsed_seconds`` is the wall-clock time
    of training, evaluations included, up to the last checkpoint.
    """

    epoch: int = 0
    batch_in_epoch: int = 0
    step: int = 0
    elapsed_seconds: float = 0.0

    @classmethod
    def from_checkpoint(cls, saved: dict) -> "Position":
        """The position a checkpoint was saved at; one without ``batch_in_epoch`` (written only at
        epoch ends) stands at the start of an epoch."""
        return cls(epoch=saved["epoch"], batch_in_epoch=saved.get("batch_in_epoch", 0), step=saved["step"],
                   elapsed_seconds=saved["elapsed_seconds"])

    @property
    def current_epoch(self) -> int:
        """The 1-based number of the epoch being trained (the one after the complete ones)."""
        return self.epoch + 1


@dataclass
class Scores:
    """The evaluations a run carries from checkpoint to checkpoint: the identity baseline (epoch
    0; None without evaluation) and the evaluation with the lowest FID so far."""

    baseline: dict | None = None
    best: dict | None = None


@dataclass
class Training:
    """What one CUT run trains with, built once by :func:`build_training` in the open run folder."""

    cfg: TrainConfig
    run: RunFolder
    data: UnpairedData
    model: CUTModel
    batches: UnpairedBatches
    steps_per_epoch: int  # the cap of --steps-per-epoch applied
    evaluator: TranslationEvaluator | None  # None with --eval-every 0
    run_info: dict  # what identifies the run's data in its exported generators and checkpoints
    planned: tuple[int, int] | None = None  # (constant, decay) epochs --minutes planned (after each constant epoch)
    epoch_ends: list[float] = field(default_factory=list)  # the run's clock at each epoch end in this process
    process_started_at: float = 0.0  # the run's clock when this process started training

    @property
    def total_epochs(self) -> int:
        """Epochs at constant learning rate plus epochs of decay."""
        return self.model.settings.n_epochs + self.model.settings.n_epochs_decay


def build_training(cfg: TrainConfig, run: RunFolder, device: torch.device) -> Training:
    """Load the data and build the model, the batch iterator and the evaluator (which computes,
    or reads from its cache, the real images' features) of a run; draws the initial weights from
    torch's global generator, so it comes right after seeding it."""
    data = load_unpaired(cfg.data, cfg.size, cfg.load_size, cfg.holdout, cfg.channels, cfg.seed, strict=cfg.strict)
    run_info = {"data": str(cfg.data), "size": cfg.size, "holdout": cfg.holdout, "seed": cfg.seed}
    model = CUTModel(_settings(cfg, data.channels, device), cuda_graphs=cfg.cuda_graphs).to(device)
    if cfg.compile:
        model.compile_networks()
    batches = UnpairedBatches(data, cfg.batch_size, device, cfg.seed)
    steps_per_epoch = min(batches.steps_per_epoch, cfg.steps_per_epoch or batches.steps_per_epoch)
    evaluator = None
    if cfg.eval_every > 0:
        evaluator = TranslationEvaluator(
            data, device, cfg.eval_images, classifier_images=cfg.classifier_images,
            bootstrap_reps=cfg.eval_bootstrap, seed=cfg.seed,
            cache=Path(cfg.eval_cache) if cfg.eval_cache is not None else run.path / "eval_features.pt",
            cache_key={**run_info, "load_size": data.load_size, "channels": data.channels})
    return Training(cfg=cfg, run=run, data=data, model=model, batches=batches, steps_per_epoch=steps_per_epoch,
                    evaluator=evaluator, run_info=run_info)


def save_training_state(training: Training, position: Position, scores: Scores, data_rng: dict,
                        losses: dict) -> None:
    """The checkpoint: ``position`` (``epoch`` complete epochs and ``batch_in_epoch`` steps of the
    next), the scores, the model's training state and the random generators; ``data_rng`` is the
    batch generator at the start of that next epoch. ``losses`` (the last step's) are checked
    first: NaN weights are never saved."""
    training.run.save({"model": training.model.training_state(), "run": training.run_info,
                       "config": config_to_dict(training.cfg), "epoch": position.epoch,
                       "batch_in_epoch": position.batch_in_epoch, "step": position.step, "best": scores.best,
                       "baseline": scores.baseline, "elapsed_seconds": position.elapsed_seconds,
                       "rng": capture_rng_state(), "data_rng": data_rng,
                       **({"planned_epochs": list(training.planned)} if training.planned else {})},  # --minutes
                      f"step {position.step}", losses=losses)


def restore_training_state(training: Training, saved: dict) -> tuple[Position, Scores]:
    """Load a checkpoint written by :func:`save_training_state` into the model, the batch
    generator (at the start of the epoch the run stands in) and torch's global generators;
    returns where the run stood and its scores."""
    training.model.load_training_state(saved["model"])
    if saved.get("planned_epochs"):  # --minutes planned the run after its first epoch
        given = (training.cfg.epochs, training.cfg.epochs_decay)
        if given != (saved["config"]["epochs"], saved["config"]["epochs_decay"]):
            raise UsageError(f"this run's epochs were planned by --minutes {training.cfg.minutes:g} "
                             f"({saved['planned_epochs'][0]} + {saved['planned_epochs'][1]}): --epochs / "
                             "--epochs-decay cannot lengthen it",
                             "resume it without them, or start a new run to train longer")
        training.planned = tuple(saved["planned_epochs"])
        training.model.set_epochs(*training.planned)
    training.batches.load_state_dict(saved["data_rng"])
    restore_rng_state(saved["rng"])
    return Position.from_checkpoint(saved), Scores(baseline=saved["baseline"], best=saved["best"])


def start_or_resume(training: Training, logger: RunLogger, device: torch.device) -> tuple[Position, Scores]:
    """A resumed run: its checkpoint restored and the logs after its step dropped. A fresh run:
    position 0, and the identity baseline evaluated and logged as epoch 0 (when evaluating)."""
    if training.cfg.resume:
        saved = training.run.load(map_location=device)
        position, scores = restore_training_state(training, saved)
        logger.truncate_after(position.step)
        return position, scores
    scores = Scores()
    if training.evaluator is not None:
        scores.baseline = training.evaluator.baseline()
        logger.log("eval", 0, epoch=0, **scores.baseline)
    return Position(), scores


def train_epoch(training: Training, position: Position, scores: Scores, logger: RunLogger, bar: Any,
                started: float) -> dict:
    """Train the rest of the epoch after ``position.epoch`` (from ``position.batch_in_epoch``),
    logging every ``--log-every`` steps; returns the last step's losses. After a SIGINT / SIGTERM
    mid-epoch: saves a checkpoint (the run's time measured from ``started``) and raises
    :meth:`RunFolder.interrupted`; at the epoch's last step the epoch is finished first."""
    cfg, model, run = training.cfg, training.model, training.run
    data_rng = training.batches.state_dict()  # the batch generator at the epoch's start
    epoch_batches = itertools.islice(training.batches.epoch(finetune=position.current_epoch > model.settings.n_epochs),
                                     position.batch_in_epoch, training.steps_per_epoch)
    losses: dict = {}
    for real_a, real_b in epoch_batches:
        step_started = time.perf_counter()
        losses = model.train_step(real_a, real_b)
        position.step += 1
        position.batch_in_epoch += 1
        bar.update()
        if position.step % cfg.log_every == 0:
            log_losses(run, logger, bar, position, losses, model.learning_rate, time.perf_counter() - step_started)
        if run.stop_signal is not None and position.batch_in_epoch < training.steps_per_epoch:  # mid-epoch
            position.elapsed_seconds = time.perf_counter() - started
            save_training_state(training, position, scores, data_rng, _loss_terms(losses))
            raise run.interrupted()
    return losses


def log_losses(run: RunFolder, logger: RunLogger, bar: Any, position: Position, losses: dict, learning_rate: float,
               seconds_per_step: float) -> None:
    """Log the step's losses to ``train`` and the progress bar, after checking they are finite
    (:class:`core_ssl.run.NonFiniteLoss` otherwise)."""
    loss_values = {k: float(v) for k, v in _loss_terms(losses).items()}
    run.check_finite(f"step {position.step}", **loss_values)
    logger.log("train", position.step, epoch=position.current_epoch, lr=learning_rate,
               seconds_per_step=seconds_per_step, **loss_values)
    bar.set_postfix(nce=f"{losses['loss_nce']:.3f}" if "loss_nce" in losses else "off",
                    g=f"{losses['loss_g_gan']:.3f}", d=f"{losses['loss_d']:.3f}")


def epochs_for_minutes(minutes: float, elapsed: float, epoch_seconds: float, done: int, epochs: int,
                       epochs_decay: int) -> tuple[int, int]:
    """The (constant, decay) epochs that fill ``minutes`` when ``done`` epochs took ``elapsed``
    seconds and an epoch now takes ``epoch_seconds``: ``total = done + floor((60 * minutes -
    elapsed) / epoch_seconds)`` (at least ``done``, at least 1), split in the ratio of ``epochs``
    to ``epochs_decay``, with no fewer constant epochs than are done (the decay never starts in
    the past)."""
    total = max(1, done + max(0, int((60.0 * minutes - elapsed) // max(epoch_seconds, 1e-9))))
    share = 1.0 if epochs + epochs_decay == 0 else epochs / (epochs + epochs_decay)
    constant = min(total, max(1, done, round(total * share)))
    return constant, total - constant


def plan_minutes(training: Training, position: Position, elapsed: float, bar: Any) -> None:
    """``--minutes``: after each epoch at the constant rate (``elapsed``: the run's clock), plan the
    run's epochs again to fill the budget (:func:`epochs_for_minutes`, an epoch's time the mean of
    those timed since this process started, the first left out once there are others: it carries
    the warm-up) and set the model's schedules to them. Once the decay has begun the plan stays.
    The checkpoints carry the plan (config.json keeps the flags as given)."""
    cfg = training.cfg
    training.epoch_ends.append(elapsed)
    ends = training.epoch_ends
    durations = [b - a for a, b in zip(ends, ends[1:])] or [ends[0] - training.process_started_at]
    epoch_seconds = sum(durations) / len(durations)
    before = training.planned
    training.planned = epochs_for_minutes(cfg.minutes, elapsed, epoch_seconds, position.epoch, cfg.epochs,
                                          cfg.epochs_decay)
    training.model.set_epochs(*training.planned)
    bar.total = training.total_epochs * training.steps_per_epoch
    bar.refresh()
    if before is None or abs(sum(training.planned) - sum(before)) >= max(1.0, 0.05 * sum(before)):  # news only
        bar.write(f"--minutes {cfg.minutes:g}: {position.epoch} epoch(s) in {elapsed:.1f} s, {epoch_seconds:.1f} s "
                  f"each now: {training.planned[0]} + {training.planned[1]} epochs")


def end_epoch(training: Training, position: Position, scores: Scores, logger: RunLogger, bar: Any,
              started: float, losses: dict) -> None:
    """After an epoch's last step: count it complete, step the learning-rate schedules, check the
    generator's weights, write the sample grid, evaluate (every ``--eval-every`` epochs and after
    the last; a new lowest FID is written to best.pt and generator_best.safetensors), and save the
    checkpoint with the run's time measured from ``started``."""
    cfg, model, run = training.cfg, training.model, training.run
    position.epoch, position.batch_in_epoch = position.epoch + 1, 0
    epoch = position.epoch
    model.end_epoch()
    run.check_weights(f"epoch {epoch} (step {position.step})", model.generator.state_dict())
    _sample_grid(model, training.data, cfg.samples, run.path / "samples" / f"epoch_{epoch:03d}.png")
    if cfg.minutes is not None and (training.planned is None or epoch <= training.planned[0]):  # not yet decaying
        plan_minutes(training, position, time.perf_counter() - started, bar)
    if training.evaluator is not None and (epoch % cfg.eval_every == 0 or epoch == training.total_epochs):
        evaluate_epoch(training, position, scores, logger, bar)
    position.elapsed_seconds = time.perf_counter() - started
    save_training_state(training, position, scores, training.batches.state_dict(), _loss_terms(losses))
    position.elapsed_seconds = time.perf_counter() - started  # the summary's time includes the checkpoint's writing
    logger.flush()


def evaluate_epoch(training: Training, position: Position, scores: Scores, logger: RunLogger, bar: Any) -> None:
    """Evaluate the model after the epoch ``position`` has just completed and log it to ``eval``;
    a new lowest FID becomes ``scores.best`` and is written to best.pt and generator_best.safetensors."""
    model, run_dir = training.model, training.run.path
    metrics = training.evaluator.evaluate(model)
    logger.log("eval", position.step, epoch=position.epoch, **metrics)
    bar.write(f"epoch {position.epoch}: {_describe(metrics, scores.baseline)}")
    if scores.best is None or metrics["fid"] < scores.best["fid"]:
        scores.best = {"epoch": position.epoch, "step": position.step, **metrics}
        save_checkpoint({"settings": model.settings.to_dict(), "generator": model.generator.state_dict(),
                         "run": training.run_info, "epoch": position.epoch, "metrics": metrics}, run_dir / "best.pt")
        export_generator(model.generator, model.settings, run_dir / "generator_best.safetensors",
                         run=training.run_info)


def finish(training: Training, position: Position, scores: Scores, logger: RunLogger) -> dict:
    """Export the last generator and write summary.json (baseline, best and last evaluation,
    epochs, steps, wall-clock time); returns the summary."""
    model = training.model
    export_generator(model.generator, model.settings, training.run.path / "generator.safetensors",
                     run=training.run_info)
    evaluations = [row for row in logger.read("eval") if row.get("epoch", 0) > 0]
    summary = {"mode": training.cfg.mode, "epochs": position.epoch, "steps": position.step,
               **({"planned_epochs": list(training.planned), "minutes": training.cfg.minutes} if training.planned else {}),
               "wall_clock_seconds": round(position.elapsed_seconds, 1), "identity_baseline": scores.baseline,
               "best": scores.best, "last": evaluations[-1] if evaluations else None}
    training.run.write_summary(summary)
    return summary


def _train(cfg: TrainConfig, run: RunFolder, device: torch.device) -> dict:
    """The loop, top to bottom, in the open run folder: build what the run trains, start (or
    resume) it, record the config, train epoch by epoch, finish. A SIGINT / SIGTERM stops it
    after saving: mid-epoch in :func:`train_epoch`, else after the epoch's checkpoint."""
    torch.manual_seed(cfg.seed)
    training = build_training(cfg, run, device)
    model = training.model
    with RunLogger(run.path, tensorboard=cfg.tensorboard) as logger:  # closed on every way out
        position, scores = start_or_resume(training, logger, device)
        total_epochs = training.total_epochs  # a resumed --minutes run: its plan
        run.save_config(cfg)  # on resume: the folder it now lives in, and a lengthened schedule
        plan = f" (replanned after the first to fill {cfg.minutes:g} minutes)" if cfg.minutes and not training.planned else ""
        print(f"{cfg.mode}: {training.data}, {training.steps_per_epoch} steps x {total_epochs} epochs{plan} on {device}"
              f"{' (bf16)' if model.settings.bf16 else ''}; run folder {run.path}", file=sys.stderr)
        with progress(total=total_epochs * training.steps_per_epoch, initial=position.step, desc=cfg.mode,
                      unit="step") as bar:
            started = time.perf_counter() - position.elapsed_seconds  # the run's clock, resumed where it stood
            training.process_started_at = position.elapsed_seconds
            while position.epoch < training.total_epochs:  # --minutes may change the plan after epoch 1
                losses = train_epoch(training, position, scores, logger, bar, started)
                end_epoch(training, position, scores, logger, bar, started, losses)
                if run.stop_signal is not None and position.epoch < training.total_epochs:
                    raise run.interrupted()
        summary = finish(training, position, scores, logger)
    print(json.dumps(summary, indent=2))
    return summary


def _loss_terms(losses: dict) -> dict:
    """The loss terms among a training step's outputs (the keys that start with ``loss``)."""
    return {k: v for k, v in losses.items() if k.startswith("loss")}


def main(argv: Sequence[str] | None = None) -> dict:
    """Parse the flags once (:data:`PIPELINE`) and train."""
    return train(*PIPELINE.read(list(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    run_command(main)
