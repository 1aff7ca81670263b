"""Pre-train an encoder with one method; the whole training loop, readable top to bottom.

    python -m vision_benchmarks.pretrain --method simclr --dataset cifar10 --run-dir runs/simclr
    python -m vision_benchmarks.pretrain --method byol --minutes 20 --run-dir runs/byol     # time budget
    python -m vision_benchmarks.pretrain --run-dir runs/byol --resume --minutes 30       # 10 more minutes
    python -m vision_benchmarks.pretrain --method simclr --preset paper --device cuda
    torchrun --nproc_per_node 2 -m vision_benchmarks.pretrain --method simclr          # DDP

Writes into ``--run-dir`` (alias ``--out``): ``config.json`` (the resolved config),
``train.csv/jsonl`` (loss, lr, images/s, collapse monitors of the projections),
``eval.csv/jsonl`` (online kNN top-1 and the encoder's embedding std / effective rank on test
images), ``tensorboard/``, ``checkpoint.pt`` (atomic checkpoint: resume with ``--resume``;
``last.pt`` of older runs is still read), ``encoder.safetensors`` and ``backbone.safetensors``,
``monitors.png`` and ``summary.json``.

The run follows :mod:`core_ssl.run`: ``--resume`` continues in the folder given; flags given
with it must match the saved config, except ``--device``, ``--data-root``,
``--checkpoint-minutes`` and a longer ``--epochs`` / ``--minutes`` (which extend even a finished
run). The folder is locked while a process trains into it. SIGINT / SIGTERM save a checkpoint
after the current step, then exit 130 / 143; a non-finite loss stops the run with the last
good checkpoint kept.
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

from core_ssl.openmp import prefer_passive_waiting

prefer_passive_waiting()  # before torch loads: no OpenMP spin-waiting on a shared CPU

import torch  # noqa: E402
from torch import nn

from core_ssl import checkpoint, distributed, monitor
from core_ssl.cli import UsageError, run_command
from core_ssl.config import config_to_dict
from core_ssl.data import BatchIterator, ImageSet
from core_ssl.device import autocast, fused_optimizer, resolve_bf16, resolve_device, tune_convolutions
from core_ssl.lars import LARS, lars_param_groups, weight_decay_groups
from core_ssl.features import knn_evaluation
from core_ssl.logger import RunLogger, progress, read_jsonl
from core_ssl.pipeline import ConfigPipeline
from core_ssl.plotting import pyplot, save_figure
from core_ssl.run import RunFolder
from core_ssl.schedules import warmup_cosine_factor
from core_ssl.sync_batchnorm import convert_batchnorm

from vision_benchmarks.config import PRESETS, PretrainConfig
from vision_benchmarks.methods import Method, build_method, fit_to_training_set, resolve_method_defaults
from vision_benchmarks.methods.transforms import parse_views
from vision_benchmarks.datasets import fixed_subset, load_run_split

_LR_RESOLUTION = 1_000_000  # the warm-up cosine is evaluated at progress * this
COMMAND = "python -m vision_benchmarks.pretrain"
RUNTIME_FIELDS = ("device", "data_root", "checkpoint_minutes", "strict", "compile")  # may change on --resume
LENGTH_FIELDS = ("epochs", "minutes")  # may grow on --resume
NAN_HINT = "lower the learning rate (--lr), or turn bf16 off (--bf16 off)"


# ---------------------------------------------------------------------------------------------
# pieces the loop uses
# ---------------------------------------------------------------------------------------------

def load_train_test(cfg: PretrainConfig) -> tuple[ImageSet, ImageSet]:
    """The training set (or its fixed random subset of ``train_images``) and the test set.

    Raises :class:`UsageError` (exit 2) for an ``--image-size`` larger than the images or a
    ``--train-images`` beyond the training set, so :func:`pretrain` calls it before it creates
    anything."""
    train = load_run_split(cfg.dataset, "train", root=cfg.data_root, strict=cfg.strict)
    test = load_run_split(cfg.dataset, "test", root=cfg.data_root, strict=cfg.strict)
    check_sizes(cfg, side=train.images.shape[-1], count=len(train))
    if cfg.train_images is not None:
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(cfg.seed))
        train = train.subset(order[: cfg.train_images])
    return train, test


def check_sizes(cfg: PretrainConfig, side: int, count: int) -> None:
    """Refuse (:class:`UsageError`) an ``--image-size`` above the images' ``side`` and a
    ``--train-images`` above the ``count`` of training images."""
    if cfg.image_size > side:
        raise UsageError(f"--image-size {cfg.image_size} is larger than the {side} px images of {cfg.dataset}",
                         f"give --image-size {side} or less")
    if cfg.train_images is not None and not 0 < cfg.train_images <= count:
        raise UsageError(f"--train-images must lie in 1..{count} (the training images of {cfg.dataset}), "
                         f"got {cfg.train_images}", f"give at most {count}, or none to train on all of them")


def plot_monitors(run_dir: str | Path, title: str = "") -> Path:
    """``run_dir/monitors.png``: training loss, online kNN top-1, and the collapse monitors
    (embedding std x sqrt(d), effective rank of the encoder's test features) against the step."""
    run_dir = Path(run_dir)
    train, evals = read_jsonl(run_dir / "train.jsonl"), read_jsonl(run_dir / "eval.jsonl")
    plt = pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.4))
    panels = [(axes[0], train, "loss", "training loss"), (axes[1], evals, "knn_top1", "kNN top-1 (test)"),
              (axes[2], evals, "embedding_std_x_sqrt_dim", "embedding std x sqrt(d)"),
              (axes[3], evals, "effective_rank", "effective rank")]
    for ax, rows, key, label in panels:
        points = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
        if points:
            steps, values = zip(*points)
            ax.plot(steps, values, marker="o" if rows is evals else None, markersize=3)
        ax.set_xlabel("step")
        ax.set_title(label)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = run_dir / "monitors.png"
    return save_figure(fig, path, dpi=110)


def build_optimizer(cfg: PretrainConfig, parameters: list[nn.Parameter]) -> torch.optim.Optimizer:
    """SGD (momentum 0.9, the CIFAR recipes), LARS (momentum 0.9, trust coefficient 0.001, as
    SimCLR trains) or AdamW; no weight decay on biases and norms (nor LARS's trust ratio)."""
    if cfg.optimizer == "lars":
        return LARS(lars_param_groups(parameters, cfg.weight_decay), lr=cfg.lr, momentum=0.9)
    groups = weight_decay_groups(parameters, cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return fused_optimizer(torch.optim.SGD, groups, lr=cfg.lr, momentum=0.9)
    return fused_optimizer(torch.optim.AdamW, groups, lr=cfg.lr)


def distribute(method: Method, device: torch.device) -> nn.Module:
    """Under torchrun: batch norm over all processes (SyncBatchNorm on CUDA) and one DDP wrapper around the method (whose
    forward is the training step). On one process the method itself."""
    if distributed.world_size() == 1:
        return method
    method = convert_batchnorm(method, device)
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(method, device_ids=device_ids, **no_forward_buffer_sync())


def no_forward_buffer_sync() -> dict[str, bool]:
    """DDP's flag for "do not re-broadcast rank 0's buffers before every forward" (batch norm statistics
    are synchronised by SyncBatchNorm instead): ``forward_sync_buffers=False`` where torch has it (2.14+),
    else its older spelling ``broadcast_buffers=False`` (torch 2.11 - 2.13)."""
    parameters = inspect.signature(nn.parallel.DistributedDataParallel.__init__).parameters
    return {"forward_sync_buffers": False} if "forward_sync_buffers" in parameters else {"broadcast_buffers": False}


@torch.no_grad()
def online_evaluation(method: Method, knn_train: ImageSet, knn_test: ImageSet, device: torch.device,
                      bf16: bool) -> dict[str, float]:
    """kNN top-1 (k = 200, t = 0.1) of the backbone's features and their collapse monitors."""
    knn = knn_evaluation(method.backbone(), knn_train.images, knn_train.labels, knn_test.images, knn_test.labels,
                         knn_train.num_classes, device, bf16)
    summary = monitor.representation_summary(knn.test_features[:2048])
    return {"knn_top1": knn.top1, "embedding_std_x_sqrt_dim": summary["embedding_std_x_sqrt_dim"],
            "effective_rank": summary["effective_rank"]}


@dataclasses.dataclass
class Position:
    """Where a pre-training run stands; its fields are saved at the top level of every checkpoint."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    train_seconds: float = 0.0
    last_loss: float | None = None  # the loss of step ``step``, for the summary of a resumed run

    @classmethod
    def from_checkpoint(cls, saved: dict[str, Any]) -> "Position":
        """The position a checkpoint written by :func:`save_state` was saved at (one written
        before ``last_loss`` was recorded gets None)."""
        return cls(**{f.name: saved.get(f.name, f.default) for f in dataclasses.fields(cls)})


@dataclasses.dataclass
class Setup:
    """Everything one process trains with, built by :func:`build_setup` before the loop starts."""

    cfg: PretrainConfig  # as the method completed it: what config.json and every checkpoint record
    method: Method
    model: nn.Module  # the method, or its DDP wrapper under torchrun (whose forward is the training step)
    optimizer: torch.optim.Optimizer
    base_lrs: list[float]  # the optimizer's learning rates before any schedule or resumed state
    generator: torch.Generator  # draws the augmentation parameters (on the CPU)
    batches: BatchIterator  # this process's share of every batch
    knn_train: ImageSet
    knn_test: ImageSet
    device: torch.device
    bf16: bool
    rank: int
    world: int


def build_setup(cfg: PretrainConfig, train: ImageSet, test: ImageSet, rank: int, world: int, device: torch.device,
                bf16: bool) -> Setup:
    """The data, method, optimiser and augmentation generator of a fresh run (a resumed one then
    loads its state into them with :func:`restore_state`). Draws from torch's global generator
    (the initial weights), so it comes right after seeding it."""
    cfg = fit_to_training_set(cfg, len(train))  # e.g. MoCo's queue capped below the training set
    if device.type == "cuda":
        train = train.to(device)  # 150 MB for CIFAR-10: batches are then gathered on the GPU
    knn_train = fixed_subset(train, cfg.knn_train_images, cfg.seed + 1)
    knn_test = fixed_subset(test, cfg.knn_test_images, cfg.seed + 2)
    batches = BatchIterator(train, cfg.batch_size // world, seed=cfg.seed, device=device, rank=rank, world_size=world)
    method = build_method(cfg, train.num_classes, len(train)).to(device)
    cfg = method.cfg  # every setting the method derived (head widths, blur) goes into config.json
    if cfg.channels_last:
        method = method.to(memory_format=torch.channels_last)
    if cfg.compile:  # in place: the state dict keeps its keys, so checkpoints do not depend on it
        method.encoder.compile()
    # Augmentation parameters are drawn on the CPU and copied over, so CUDA never waits for the host.
    generator = torch.Generator().manual_seed(cfg.seed * 1000 + rank)
    method.generator = generator
    model = distribute(method, device)
    optimizer = build_optimizer(cfg, method.trainable_parameters())
    base_lrs = [group["lr"] for group in optimizer.param_groups]  # read before a resumed state overwrites them
    return Setup(cfg=cfg, method=method, model=model, optimizer=optimizer, base_lrs=base_lrs, generator=generator,
                 batches=batches, knn_train=knn_train, knn_test=knn_test, device=device, bf16=bf16, rank=rank,
                 world=world)


def save_state(run: RunFolder, setup: Setup, position: Position, losses: dict[str, Any]) -> None:
    """Atomic checkpoint of everything a resumed run needs (only the main process writes), after
    checking the last step's loss: NaN weights are never saved."""
    method = setup.method
    state = {
        "method": method.state_dict(),
        "optimizer": setup.optimizer.state_dict(),
        "auxiliary_optimizers": {k: o.state_dict() for k, o in method.auxiliary_optimizers().items()},
        "generator": setup.generator.get_state(),
        "rng": checkpoint.capture_rng_state(),
        "config": config_to_dict(setup.cfg),
        **dataclasses.asdict(position),
    }
    run.save(state, f"step {position.step}", losses=losses)


def restore_state(saved: dict[str, Any], setup: Setup) -> Position:
    """Load a checkpoint written by :func:`save_state` into ``setup`` (weights, optimisers, the
    augmentation generator) and into torch's global generators; returns where the run stood."""
    setup.method.load_state_dict(saved["method"])
    checkpoint.load_optimizer_state(setup.optimizer, saved["optimizer"])
    for name, aux in setup.method.auxiliary_optimizers().items():
        checkpoint.load_optimizer_state(aux, saved["auxiliary_optimizers"][name])
    setup.generator.set_state(saved["generator"].cpu())
    checkpoint.restore_rng_state(saved["rng"])
    return Position.from_checkpoint(saved)


# ---------------------------------------------------------------------------------------------
# the training loop
# ---------------------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    return pretrain(*PIPELINE.read(list(sys.argv[1:] if argv is None else argv)))


def check(cfg: PretrainConfig) -> None:
    """The checks beyond each field's declared bounds (:class:`UsageError`, exit 2)."""
    if cfg.views is not None:
        parse_views(cfg.views)


PIPELINE = ConfigPipeline(PretrainConfig, presets=PRESETS, run_dir_field="out", runtime=RUNTIME_FIELDS,
                          extendable=LENGTH_FIELDS, resolve=resolve_method_defaults, check=check)
"""Flags -> validated config (:mod:`core_ssl.pipeline`): bounds declared in :mod:`vision_benchmarks.config`."""


def pretrain(cfg: PretrainConfig, given: Iterable[str] | None = None) -> dict[str, Any]:
    """Run (or resume) one pre-training run; returns the summary also written to summary.json.

    ``given``: the fields named on the command line, which must match a resumed run's saved
    config (:func:`core_ssl.run.resume_config`); None = those ``cfg`` sets away from the defaults.
    The config goes through :data:`PIPELINE` (merged on resume, resolved, validated), and the
    data are loaded and checked against ``--image-size`` and ``--train-images``, before anything
    is created.
    """
    cfg = PIPELINE.finish(cfg, given)
    distributed.init_from_environment()
    rank, world = distributed.rank(), distributed.world_size()
    device = distributed.local_device(resolve_device(cfg.device))
    bf16 = resolve_bf16(cfg.bf16, device)
    if cfg.batch_size % world:
        raise UsageError(f"--batch-size {cfg.batch_size} must be divisible by the {world} processes",
                         "give a multiple of the process count")
    train, test = load_train_test(cfg)  # its size checks come before the run folder is made
    with RunFolder(cfg.out, cfg.resume, COMMAND, main_process=distributed.is_main_process(), hint=NAN_HINT) as run:
        return _pretrain(cfg, run, train, test, rank, world, device, bf16)


def _pretrain(cfg: PretrainConfig, run: RunFolder, train: ImageSet, test: ImageSet, rank: int, world: int,
              device: torch.device, bf16: bool) -> dict[str, Any]:
    """The run, top to bottom, in the open run folder: build (and on resume restore) what it
    trains, record the config, then evaluate the initialisation, train, and finish."""
    saved = run.load(map_location=device) if cfg.resume else None
    torch.manual_seed(cfg.seed)
    tune_convolutions(device)
    setup = build_setup(cfg, train, test, rank, world, device, bf16)
    position = Position()
    if saved is not None:
        position = restore_state(saved, setup)
        print(f"resuming {setup.cfg.out} at step {position.step} ({position.step / len(setup.batches):.2f} epochs "
              f"and {position.train_seconds / 60:.1f} training minutes done)")
        del saved
    run.save_config(setup.cfg)  # on resume: the folder it now lives in, and a lengthened schedule
    with RunLogger(setup.cfg.out) as logger:  # closed on every way out, an error or a signal included
        logger.truncate_after(position.step)
        loop = PretrainLoop(setup, run, logger, position)
        loop.evaluate_initialisation()
        with progress(total=100, desc=f"{setup.cfg.method}", unit="%",
                      bar_format="{l_bar}{bar}| {n:.1f}/{total}% [{elapsed}<{remaining}]") as bar:
            loop.train(bar)
        return loop.finish()


class PretrainLoop:
    """The training loop of one process: its state is ``position`` (saved in every checkpoint)
    plus the clocks and counters of the current logging interval, which a resumed run starts
    afresh.

    Under torchrun every process runs the same sequence of these methods, and the ones that
    decide the control flow (:meth:`share_done` under ``--minutes``, :meth:`already_evaluated`,
    :meth:`stop_requested`) agree through collectives, so the processes never part ways.
    """

    def __init__(self, setup: Setup, run: RunFolder, logger: RunLogger, position: Position):
        self.setup, self.cfg, self.run, self.logger, self.position = setup, setup.cfg, run, logger, position
        self.total_steps = self.cfg.epochs * len(setup.batches)
        self.budget_seconds = None if self.cfg.minutes is None else self.cfg.minutes * 60.0
        self.warmup = int(self.cfg.warmup_fraction * _LR_RESOLUTION)
        self.evaluated = {row["step"]: row for row in logger.read("eval")}  # a resumed run does not log a step twice
        self.step_loss: torch.Tensor | None = None  # the last step's loss, checked before every checkpoint
        self.images_since_log = 0
        self.log_clock = self.last_checkpoint = time.perf_counter()

    # -- where the run stands ------------------------------------------------------------------

    def share_done(self) -> float:
        """Share of the run done, in [0, 1]: by steps, or by training time under --minutes (then
        averaged over the processes, so their learning rates stay equal: a collective)."""
        pos, world = self.position, self.setup.world
        if self.budget_seconds is None:
            return 1.0 if self.total_steps == 0 else min(1.0, pos.step / self.total_steps)
        if self.budget_seconds == 0:
            return 1.0
        share = pos.train_seconds / self.budget_seconds
        if world > 1:  # every process must agree, or their learning rates would drift apart
            share = float(distributed.all_reduce_mean(torch.tensor(share, device=self.setup.device)))
        return min(1.0, share)

    def finished(self) -> bool:
        """Whether the run has done all its steps (or spent its time budget)."""
        return self.share_done() >= 1.0

    def stop_requested(self) -> bool:
        """SIGINT / SIGTERM received; under torchrun the processes agree at log steps (a collective there)."""
        world = self.setup.world
        if world == 1:
            return self.run.stop_signal is not None
        if self.position.step % self.cfg.log_every:
            return False
        flag = torch.tensor(float(self.run.stop_signal is not None), device=self.setup.device)
        return float(distributed.all_reduce_mean(flag)) > 0

    # -- evaluation and checkpoints ------------------------------------------------------------

    def already_evaluated(self) -> bool:
        """Whether this step's evaluation is logged (the main process decides for all: a collective
        under torchrun)."""
        setup = self.setup
        flag = float(self.position.step in self.evaluated)
        if setup.world > 1:
            flag = float(distributed.all_reduce_mean(
                torch.tensor(flag * setup.world * (setup.rank == 0), device=setup.device)))
        return flag > 0

    def evaluate_and_log(self) -> dict[str, float]:
        """The online evaluation of this step, logged to ``eval`` by the main process, which
        returns its metrics; the other processes return {} (after a barrier under torchrun)."""
        setup, pos = self.setup, self.position
        if distributed.is_main_process():
            metrics = online_evaluation(setup.method, setup.knn_train, setup.knn_test, setup.device, setup.bf16)
            self.logger.log("eval", pos.step, epoch=pos.epoch, train_minutes=pos.train_seconds / 60, **metrics)
            self.evaluated[pos.step] = metrics
        else:
            metrics = {}
        if distributed.is_initialized():
            torch.distributed.barrier()
        return metrics

    def evaluate_initialisation(self) -> None:
        """At step 0, evaluate the random initialisation (unless a resumed run already logged it)."""
        if self.position.step == 0 and not self.already_evaluated():
            metrics = self.evaluate_and_log()
            if metrics:
                print(f"{self.cfg.method}: step 0 (random init) kNN top-1 {metrics['knn_top1']:.3f}")

    def save_checkpoint(self) -> None:
        """Save the run as it stands (:func:`save_state`), after checking the last step's loss."""
        losses = {"loss": self.step_loss} if self.step_loss is not None else {}
        if self.step_loss is not None:
            self.position.last_loss = float(self.step_loss)
        save_state(self.run, self.setup, self.position, losses=losses)
        self.last_checkpoint = time.perf_counter()

    def checkpoint_if_due(self) -> None:
        """Save a checkpoint when ``--checkpoint-minutes`` have passed since the last one."""
        if time.perf_counter() - self.last_checkpoint > 60 * self.cfg.checkpoint_minutes:
            self.save_checkpoint()

    # -- training ------------------------------------------------------------------------------

    def train(self, bar: Any) -> None:
        """Train until :meth:`finished`, epoch by epoch from where the position stands; ``bar``
        shows the share done in percent. Raises :meth:`RunFolder.interrupted` after saving when a
        stop was requested."""
        self.images_since_log, self.log_clock = 0, time.perf_counter()
        self.last_checkpoint = time.perf_counter()
        bar.update(100 * self.share_done())
        while not self.finished():
            if self.train_epoch(bar):
                self.end_epoch(bar)

    def train_epoch(self, bar: Any) -> bool:
        """Train the rest of the current epoch (from ``position.batch_in_epoch``); returns True
        when it ran to its end, False when the run finished within it."""
        self.setup.batches.set_epoch(self.position.epoch)
        for images, labels, indices in itertools.islice(self.setup.batches, self.position.batch_in_epoch, None):
            out = self.train_step(images, labels, indices)
            if self.position.step % self.cfg.log_every == 0:
                self.log_step(out, bar)
            bar.update(100 * self.share_done() - bar.n)
            self.checkpoint_if_due()
            if self.stop_requested():
                self.save_checkpoint()
                raise self.run.interrupted()
            if self.finished():
                return False
        return True

    def set_learning_rates(self, share_done: float) -> None:
        """Every parameter group at its base rate times the warm-up cosine at ``share_done``."""
        factor = warmup_cosine_factor(int(share_done * _LR_RESOLUTION), _LR_RESOLUTION, self.warmup)
        for group, base_lr in zip(self.setup.optimizer.param_groups, self.setup.base_lrs):
            group["lr"] = base_lr * factor

    def train_step(self, images: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor) -> dict[str, Any]:
        """One optimisation step on this process's batch: the position advances by one step and
        the step's training time (waiting for the GPU at log steps, or at every step under
        --minutes); returns the method's outputs (``loss``, other scalars, ``embeddings``)."""
        setup, pos = self.setup, self.position
        started = time.perf_counter()
        share_done = self.share_done()
        self.set_learning_rates(share_done)
        with autocast(setup.device, setup.bf16):
            out = setup.model(images, labels, indices)
        setup.optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        setup.optimizer.step()
        self.step_loss = out["loss"].detach()
        setup.method.after_optimizer_step(share_done)
        pos.step += 1
        pos.batch_in_epoch += 1
        self.images_since_log += len(images) * setup.world
        if setup.device.type == "cuda" and (pos.step % self.cfg.log_every == 0 or self.budget_seconds is not None):
            torch.cuda.synchronize()  # time the work, not its queueing (under a budget: every step)
        pos.train_seconds += time.perf_counter() - started
        return out

    def log_step(self, out: dict[str, Any], bar: Any) -> None:
        """Log the step's scalars, collapse monitors, learning rate and images/s to ``train``
        (raising :class:`core_ssl.run.NonFiniteLoss` for a non-finite loss), and start the next
        logging interval."""
        pos = self.position
        seconds = time.perf_counter() - self.log_clock
        scalars = {k: float(v.detach()) if torch.is_tensor(v) else float(v)
                   for k, v in out.items() if k != "embeddings"}
        self.run.check_finite(f"step {pos.step}", **{k: v for k, v in scalars.items() if "loss" in k})
        if "embeddings" in out:
            z1, z2 = (z.detach() for z in out["embeddings"])
            scalars.update(monitor.representation_summary(z1, z2))
        images_per_second = self.images_since_log / seconds
        self.logger.log("train", pos.step, epoch=pos.epoch, lr=self.setup.optimizer.param_groups[0]["lr"],
                        images_per_second=images_per_second, **scalars)
        bar.set_postfix(loss=f"{scalars['loss']:.3f}", img_s=f"{images_per_second:.0f}")
        self.images_since_log, self.log_clock = 0, time.perf_counter()

    def end_epoch(self, bar: Any) -> None:
        """After an epoch ran to its end: move the position to the next epoch, evaluate when
        ``--knn-every`` says so (and the run goes on), save a checkpoint, and restart the logging
        interval (the evaluation is not training time)."""
        pos, cfg = self.position, self.cfg
        pos.epoch, pos.batch_in_epoch = pos.epoch + 1, 0
        if cfg.knn_every and pos.epoch % cfg.knn_every == 0 and not self.finished() and not self.already_evaluated():
            metrics = self.evaluate_and_log()
            if metrics:
                bar.write(f"epoch {pos.epoch}: kNN top-1 {metrics['knn_top1']:.3f}, effective rank "
                          f"{metrics['effective_rank']:.1f} ({pos.train_seconds / 60:.1f} training min)")
        self.save_checkpoint()
        self.log_clock, self.images_since_log = time.perf_counter(), 0

    # -- the end -------------------------------------------------------------------------------

    def finish(self) -> dict[str, Any]:
        """The final evaluation (unless this step's is logged), the last checkpoint, and on the
        main process the exported weights, ``summary.json``, ``monitors.png`` and the closing
        line; returns the summary ({} on the other processes)."""
        setup, cfg, pos = self.setup, self.cfg, self.position
        final = self.evaluated.get(pos.step, {}) if self.already_evaluated() else self.evaluate_and_log()
        self.save_checkpoint()
        if not distributed.is_main_process():
            return {}
        weights_metadata = {"method": cfg.method, "encoder": cfg.encoder}
        checkpoint.export_weights(setup.method.encoder.state_dict(), cfg.out / "encoder.safetensors", weights_metadata)
        checkpoint.export_weights(setup.method.backbone().state_dict(), cfg.out / "backbone.safetensors",
                                  weights_metadata)
        summary = {"method": cfg.method, "steps": pos.step, "epochs": round(pos.step / len(setup.batches), 3),
                   "train_minutes": round(pos.train_seconds / 60, 3),
                   "images_per_second": round(pos.step * cfg.batch_size / pos.train_seconds, 1) if pos.step else None,
                   "final_loss": pos.last_loss if self.step_loss is None else float(self.step_loss),
                   "knn_top1": final["knn_top1"], "effective_rank": final["effective_rank"],
                   "embedding_std_x_sqrt_dim": final["embedding_std_x_sqrt_dim"]}
        self.run.write_summary(summary)
        plot_monitors(cfg.out, title=f"{cfg.method} ({cfg.encoder}, {cfg.dataset})")
        print(f"{cfg.method}: {pos.step} steps in {pos.train_seconds / 60:.1f} training minutes, "
              f"kNN top-1 {final['knn_top1']:.3f}; see {cfg.out}")
        return summary


if __name__ == "__main__":
    run_command(main)
