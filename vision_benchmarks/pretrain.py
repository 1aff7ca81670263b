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
from core_ssl.device import autocast, fused_optimizer, resolve_bf16, resolve_device
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
RUNTIME_FIELDS = ("device", "data_root", "checkpoint_minutes", "strict")  # may change on --resume
LENGTH_FIELDS = ("epochs", "minutes")  # may grow on --resume
NAN_HINT = "lower the learning rate (--lr), or turn bf16 off (--bf16 off)"


# ---------------------------------------------------------------------------------------------
# pieces the loop uses
# ---------------------------------------------------------------------------------------------

def load_train_test(cfg: PretrainConfig) -> tuple[ImageSet, ImageSet]:
    """The training set (or its fixed random subset of ``train_images``) and the test set."""
    train = load_run_split(cfg.dataset, "train", root=cfg.data_root, strict=cfg.strict)
    test = load_run_split(cfg.dataset, "test", root=cfg.data_root, strict=cfg.strict)
    if train.images.shape[-1] != cfg.image_size and cfg.image_size > train.images.shape[-1]:
        raise ValueError(f"--image-size {cfg.image_size} is larger than the {train.images.shape[-1]} px images; "
                         "use a size <= the image side")
    if cfg.train_images is not None:
        if not 0 < cfg.train_images <= len(train):
            raise ValueError(f"--train-images must lie in 1..{len(train)}, got {cfg.train_images}")
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(cfg.seed))
        train = train.subset(order[: cfg.train_images])
    return train, test


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
    """SGD (momentum 0.9, the CIFAR recipes) or AdamW; no weight decay on biases and norms."""
    decay = [p for p in parameters if p.dim() > 1]
    no_decay = [p for p in parameters if p.dim() <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
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

    @classmethod
    def from_checkpoint(cls, saved: dict[str, Any]) -> "Position":
        return cls(**{f.name: saved[f.name] for f in dataclasses.fields(cls)})


def save_state(run: RunFolder, method: Method, optimizer: torch.optim.Optimizer, generator: torch.Generator,
               cfg: PretrainConfig, position: dict[str, Any], losses: dict[str, Any]) -> None:
    """Atomic checkpoint of everything a resumed run needs (only the main process writes), after
    checking the last step's loss: NaN weights are never saved."""
    state = {
        "method": method.state_dict(),
        "optimizer": optimizer.state_dict(),
        "auxiliary_optimizers": {k: o.state_dict() for k, o in method.auxiliary_optimizers().items()},
        "generator": generator.get_state(),
        "rng": checkpoint.capture_rng_state(),
        "config": config_to_dict(cfg),
        **position,
    }
    run.save(state, f"step {position['step']}", losses=losses)


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
    The config goes through :data:`PIPELINE` (merged on resume, resolved, validated) before
    anything is created.
    """
    cfg = PIPELINE.finish(cfg, given)
    distributed.init_from_environment()
    rank, world = distributed.rank(), distributed.world_size()
    device = distributed.local_device(resolve_device(cfg.device))
    bf16 = resolve_bf16(cfg.bf16, device)
    if cfg.batch_size % world:
        raise UsageError(f"--batch-size {cfg.batch_size} must be divisible by the {world} processes",
                         "give a multiple of the process count")
    with RunFolder(cfg.out, cfg.resume, COMMAND, main_process=distributed.is_main_process(), hint=NAN_HINT) as run:
        return _pretrain(cfg, run, rank, world, device, bf16)


def _pretrain(cfg: PretrainConfig, run: RunFolder, rank: int, world: int, device: torch.device,
              bf16: bool) -> dict[str, Any]:
    """The loop, top to bottom, in the open run folder."""
    saved = run.load(map_location=device) if cfg.resume else None
    torch.manual_seed(cfg.seed)
    torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick its fastest kernels

    # data, method, optimiser
    train, test = load_train_test(cfg)
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
    # Augmentation parameters are drawn on the CPU and copied over, so CUDA never waits for the host.
    generator = torch.Generator().manual_seed(cfg.seed * 1000 + rank)
    method.generator = generator
    model = distribute(method, device)
    optimizer = build_optimizer(cfg, method.trainable_parameters())
    warmup = int(cfg.warmup_fraction * _LR_RESOLUTION)
    base_lrs = [group["lr"] for group in optimizer.param_groups]  # read before a resumed state overwrites them
    total_steps = cfg.epochs * len(batches)
    budget_seconds = None if cfg.minutes is None else cfg.minutes * 60.0

    pos = Position()
    if cfg.resume:
        method.load_state_dict(saved["method"])
        optimizer.load_state_dict(saved["optimizer"])
        for name, aux in method.auxiliary_optimizers().items():
            aux.load_state_dict(saved["auxiliary_optimizers"][name])
        generator.set_state(saved["generator"].cpu())
        checkpoint.restore_rng_state(saved["rng"])
        pos = Position.from_checkpoint(saved)
        print(f"resuming {cfg.out} at step {pos.step} (epoch {pos.epoch}, batch {pos.batch_in_epoch}, "
              f"{pos.train_seconds / 60:.1f} training minutes done)")
        del saved
    run.save_config(cfg)  # on resume: the folder it now lives in, and a lengthened schedule
    with RunLogger(cfg.out) as logger:  # closed on every way out, an error or a signal included
        logger.truncate_after(pos.step)

        def run_progress() -> float:
            """Share of the run done, in [0, 1]: by steps, or by training time under --minutes."""
            if budget_seconds is None:
                return 1.0 if total_steps == 0 else min(1.0, pos.step / total_steps)
            if budget_seconds == 0:
                return 1.0
            share = pos.train_seconds / budget_seconds
            if world > 1:  # every process must agree, or their learning rates would drift apart
                share = float(distributed.all_reduce_mean(torch.tensor(share, device=device)))
            return min(1.0, share)

        def finished() -> bool:
            return run_progress() >= 1.0

        evaluated = {row["step"]: row for row in logger.read("eval")}  # a resumed run does not log a step twice

        def evaluate_and_log() -> dict[str, float]:
            if distributed.is_main_process():
                metrics = online_evaluation(method, knn_train, knn_test, device, bf16)
                logger.log("eval", pos.step, epoch=pos.epoch, train_minutes=pos.train_seconds / 60, **metrics)
                evaluated[pos.step] = metrics
            else:
                metrics = {}
            if distributed.is_initialized():
                torch.distributed.barrier()
            return metrics

        def already_evaluated() -> bool:
            """Whether this step's evaluation is logged (the main process decides for all)."""
            flag = float(pos.step in evaluated)
            if world > 1:
                flag = float(distributed.all_reduce_mean(torch.tensor(flag * world * (rank == 0), device=device)))
            return flag > 0

        def checkpoint_now() -> None:
            save_state(run, method, optimizer, generator, cfg, dataclasses.asdict(pos),
                       losses={"loss": step_loss} if step_loss is not None else {})

        def stop_requested() -> bool:
            """SIGINT / SIGTERM received; under torchrun the processes agree at log steps."""
            if world == 1:
                return run.stop_signal is not None
            if pos.step % cfg.log_every:
                return False
            flag = torch.tensor(float(run.stop_signal is not None), device=device)
            return float(distributed.all_reduce_mean(flag)) > 0

        if pos.step == 0 and not already_evaluated():
            metrics = evaluate_and_log()
            if metrics:
                print(f"{cfg.method}: step 0 (random init) kNN top-1 {metrics['knn_top1']:.3f}")
        images_seen_since_log, log_clock, last_loss, step_loss = 0, time.perf_counter(), None, None
        last_checkpoint = time.perf_counter()
        with progress(total=100, desc=f"{cfg.method}", unit="%",
                      bar_format="{l_bar}{bar}| {n:.1f}/{total}% [{elapsed}<{remaining}]") as bar:
            bar.update(100 * run_progress())
            while not finished():
                batches.set_epoch(pos.epoch)
                for images, labels, indices in itertools.islice(batches, pos.batch_in_epoch, None):
                    started = time.perf_counter()
                    progress_now = run_progress()
                    for group, base_lr in zip(optimizer.param_groups, base_lrs):
                        group["lr"] = base_lr * warmup_cosine_factor(int(progress_now * _LR_RESOLUTION), _LR_RESOLUTION, warmup)
                    with autocast(device, bf16):
                        out = model(images, labels, indices)
                    optimizer.zero_grad(set_to_none=True)
                    out["loss"].backward()
                    optimizer.step()
                    last_loss = step_loss = out["loss"].detach()
                    method.after_optimizer_step(progress_now)
                    pos.step += 1
                    pos.batch_in_epoch += 1
                    images_seen_since_log += len(images) * world
                    if device.type == "cuda" and (pos.step % cfg.log_every == 0 or budget_seconds is not None):
                        torch.cuda.synchronize()  # time the work, not its queueing (under a budget: every step)
                    pos.train_seconds += time.perf_counter() - started

                    if pos.step % cfg.log_every == 0:
                        seconds = time.perf_counter() - log_clock
                        scalars = {k: float(v.detach()) if torch.is_tensor(v) else float(v) for k, v in out.items() if k != "embeddings"}
                        run.check_finite(f"step {pos.step}", **{k: v for k, v in scalars.items() if "loss" in k})
                        if "embeddings" in out:
                            z1, z2 = (z.detach() for z in out["embeddings"])
                            scalars.update(monitor.representation_summary(z1, z2))
                        logger.log("train", pos.step, epoch=pos.epoch, lr=optimizer.param_groups[0]["lr"],
                                   images_per_second=images_seen_since_log / seconds, **scalars)
                        bar.set_postfix(loss=f"{scalars['loss']:.3f}", img_s=f"{images_seen_since_log / seconds:.0f}")
                        images_seen_since_log, log_clock, last_loss = 0, time.perf_counter(), None
                    bar.update(100 * run_progress() - bar.n)
                    if time.perf_counter() - last_checkpoint > 60 * cfg.checkpoint_minutes:
                        checkpoint_now()
                        last_checkpoint = time.perf_counter()
                    if stop_requested():
                        checkpoint_now()
                        raise run.interrupted()
                    if finished():
                        break
                else:  # the epoch ran to its end
                    pos.epoch, pos.batch_in_epoch = pos.epoch + 1, 0
                    if cfg.knn_every and pos.epoch % cfg.knn_every == 0 and not finished() and not already_evaluated():
                        metrics = evaluate_and_log()
                        if metrics:
                            bar.write(f"epoch {pos.epoch}: kNN top-1 {metrics['knn_top1']:.3f}, effective rank "
                                      f"{metrics['effective_rank']:.1f} ({pos.train_seconds / 60:.1f} training min)")
                    checkpoint_now()
                    last_checkpoint = time.perf_counter()
                    log_clock, images_seen_since_log = time.perf_counter(), 0

        final = evaluated.get(pos.step, {}) if already_evaluated() else evaluate_and_log()
        checkpoint_now()
        summary: dict[str, Any] = {}
        if distributed.is_main_process():
            checkpoint.export_weights(method.encoder.state_dict(), cfg.out / "encoder.safetensors",
                                      {"method": cfg.method, "encoder": cfg.encoder})
            checkpoint.export_weights(method.backbone().state_dict(), cfg.out / "backbone.safetensors",
                                      {"method": cfg.method, "encoder": cfg.encoder})
            summary = {"method": cfg.method, "steps": pos.step, "epochs": round(pos.step / len(batches), 3),
                       "train_minutes": round(pos.train_seconds / 60, 3),
                       "images_per_second": round(pos.step * cfg.batch_size / pos.train_seconds, 1) if pos.step else None,
                       "final_loss": None if last_loss is None else float(last_loss),
                       "knn_top1": final["knn_top1"], "effective_rank": final["effective_rank"],
                       "embedding_std_x_sqrt_dim": final["embedding_std_x_sqrt_dim"]}
            run.write_summary(summary)
            plot_monitors(cfg.out, title=f"{cfg.method} ({cfg.encoder}, {cfg.dataset})")
            print(f"{cfg.method}: {pos.step} steps in {pos.train_seconds / 60:.1f} training minutes, "
                  f"kNN top-1 {final['knn_top1']:.3f}; see {cfg.out}")
        return summary


if __name__ == "__main__":
    run_command(main)
