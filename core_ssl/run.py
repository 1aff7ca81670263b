"""One run lifecycle for every training command: the run folder, resume, lock, signals, NaN.

A training command opens its folder with :class:`RunFolder` and keeps to these rules:

- **One folder, one file name.** ``--run-dir`` names the folder; the checkpoint is
  ``checkpoint.pt`` (``last.pt`` of older vision runs is still read); ``config.json`` and
  ``summary.json`` are written atomically.
- **Resume in place.** ``--resume`` continues the run in the folder given on the command line,
  wherever it was first written (a copied or moved folder resumes where it now is).
- **Flags on resume.** :func:`resume_config`: flags named with ``--resume`` must agree with the
  saved config, except runtime ones (device, threads, progress bar) and those that lengthen
  training (``--epochs``, ``--total-env-steps``, ``--minutes``), which may grow and so extend
  even a finished run. Any other difference is refused with the list of differences.
- **Only its own files.** Opening a fresh run writes the marker ``.core_ssl_run`` (JSON: the
  command) into the folder first; this is how a folder is recognised as one of this toolkit's
  runs. A folder that is neither empty nor marked (another tool's output, a user's files, even
  one holding a ``config.json``) is refused with :class:`NotARunFolder` before anything in it is
  created, removed or overwritten.
- **Fresh starts are fresh.** Starting without ``--resume`` in a folder that holds a
  checkpoint is refused; in a marked folder a run left before its first checkpoint, that run's
  logs are removed first, so nothing is appended to them.
- **One writer.** The folder is locked (``fcntl.flock`` on ``.lock``) for the life of the
  process; a second process stops at once with :class:`RunLocked`.
- **Signals.** The first SIGINT / SIGTERM only sets :attr:`RunFolder.stop_signal`; the loop
  saves a checkpoint at its next safe point and raises :meth:`RunFolder.interrupted`
  (exit 130 / 143 through :func:`core_ssl.cli.run_command`, with the command that resumes).
  A second signal stops at once, without saving.
- **Non-finite losses.** :meth:`RunFolder.check_finite` on values the loop already computed
  (the logged losses, and the last loss before every checkpoint) raises :class:`NonFiniteLoss`
  naming the loss and the step; the last good checkpoint is never overwritten by NaN weights.
- **Machine facts.** Every start and resume appends one line to ``machine.jsonl``
  (:func:`core_ssl.device.machine_facts`: CPU model, SIMD level, native bf16, threads, torch,
  GPU), so a result names the machine it ran on and its times are read against it.
- A folder this process created and left without a file of its own (a failure before anything
  was written; the lock and the marker do not count) is removed again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import math
import os
import shutil
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Iterable, Sequence, TypeVar

from core_ssl.checkpoint import atomic_write, load_checkpoint, save_checkpoint
from core_ssl.cli import CommandError, RunInterrupted, UsageError
from core_ssl.config import CONFIG_FILE, save_config

T = TypeVar("T")
CHECKPOINT_FILE = "checkpoint.pt"
LEGACY_CHECKPOINT_FILES = ("last.pt",)
LOCK_FILE = ".lock"
RUN_MARKER = ".core_ssl_run"  # written by RunFolder.open into every run folder it starts
SUMMARY_FILE = "summary.json"
MACHINE_FILE = "machine.jsonl"


class RunLocked(CommandError):
    """Another process holds the run folder's lock."""


class NotARunFolder(UsageError):
    """A non-empty folder without the run marker was given as a run folder (exit 2)."""


class ConfigMismatch(UsageError):
    """Flags given with --resume that disagree with the run's saved config."""


class NonFiniteLoss(CommandError):
    """A loss became NaN or infinite; the run stopped without saving the broken weights."""


def find_checkpoint(run_dir: str | Path) -> Path | None:
    """The run's checkpoint: ``checkpoint.pt``, else a legacy name (``last.pt``); None if neither."""
    for name in (CHECKPOINT_FILE, *LEGACY_CHECKPOINT_FILES):
        path = Path(run_dir) / name
        if path.is_file():
            return path
    return None


def write_json(path: str | Path, value: Any) -> Path:
    """Write ``value`` as indented JSON, atomically (a reader sees the old or the new file, never half)."""
    text = json.dumps(value, indent=2, default=str) + "\n"
    return atomic_write(path, lambda f: f.write(text.encode()))


def given_fields(cls: type, argv: Sequence[str], presets: dict[str, dict[str, Any]] | None = None) -> set[str]:
    """Config fields named on the command line: its flags, and the fields of a ``--preset`` named
    there (step 1 of :class:`core_ssl.pipeline.ConfigPipeline`, which the commands use)."""
    from core_ssl.pipeline import ConfigPipeline

    return ConfigPipeline(cls, presets=presets).read(argv)[1]


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def resume_config(saved: T, requested: T, given: Iterable[str], run_dir_field: str,
                  runtime: Iterable[str] = (), extendable: Iterable[str] = ()) -> T:
    """The config a resumed run continues with: ``saved``, in the folder of ``requested``.

    For each field in ``given`` (named on the command line): a ``runtime`` field takes the
    requested value; an ``extendable`` field (training length) takes it when it is at least the
    saved one; any other field must equal the saved value. ``run_dir_field`` is always the
    requested folder. Raises :class:`ConfigMismatch` listing every difference.
    """
    runtime, extendable = set(runtime) | {run_dir_field, "resume"}, set(extendable)
    updates: dict[str, Any] = {run_dir_field: getattr(requested, run_dir_field), "resume": True}
    differences = []
    for name in sorted(set(given) - {run_dir_field, "resume"}):
        old, new = getattr(saved, name), getattr(requested, name)
        if name in runtime:
            updates[name] = new
        elif _same(old, new):
            continue
        elif name in extendable and old is not None and new is not None and new >= old:
            updates[name] = new
        elif name in extendable:
            differences.append(f"{_flag(name)}: saved {old}, given {new} (training may be lengthened, not shortened)")
        else:
            differences.append(f"{_flag(name)}: saved {old}, given {new}")
    if differences:
        lengthen = ", ".join(_flag(n) for n in sorted(extendable)) or "none"
        raise ConfigMismatch(
            "--resume continues the run with its saved settings, and these flags differ from them: "
            + "; ".join(differences),
            f"drop them (or give the saved values); only the runtime flags and a longer training "
            f"({lengthen}) may change on resume. For other settings start a new run in another folder.")
    return dataclasses.replace(saved, **updates)  # type: ignore[type-var]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and float(a) == float(b)
    return str(a) == str(b) if isinstance(a, Path) or isinstance(b, Path) else a == b


def is_run_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder a run of this toolkit was started in (it holds :data:`RUN_MARKER`)."""
    return (Path(path) / RUN_MARKER).is_file()


def write_marker(run_dir: Path, command: str) -> None:
    """Write :data:`RUN_MARKER` (the command that started the run) into ``run_dir``."""
    write_json(run_dir / RUN_MARKER, {"written_by": "core_ssl.run.RunFolder", "command": command})


def foreign_files(path: Path) -> list[str]:
    """The names in ``path`` (sorted) other than the lock and the marker; [] if it does not exist."""
    if not path.is_dir():
        return []
    return sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir() if p.name not in (LOCK_FILE, RUN_MARKER))


def check_run_folder(path: str | Path, resume: bool, flag: str = "--run-dir") -> None:
    """Refuse (:class:`NotARunFolder`) to start a fresh run in ``path`` when it is a file, or a
    folder that holds anything but is not marked as a run of this toolkit; nothing is touched.
    A resumed run is checked by its checkpoint instead (runs written before the marker have none)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotARunFolder(f"{flag} {path} is a file, not a folder", f"give a new or empty folder as {flag}")
    if resume or is_run_folder(path):
        return
    names = foreign_files(path)
    if names:
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise NotARunFolder(
            f"{flag} {path} is not empty ({shown}) and is not a run folder of this toolkit (no {RUN_MARKER} "
            "marker), so a run there could overwrite files it did not write",
            f"give a new or empty folder as {flag}; nothing in {path} was changed")


def discard_logs(run_dir: Path) -> list[str]:
    """Remove what a run killed before its first checkpoint left: its metric streams (each
    ``*.jsonl`` with its ``*.csv``), ``tensorboard/``, ``config.json`` and ``summary.json``.
    Only in a folder marked as one of this toolkit's runs (:func:`is_run_folder`); returns the
    names removed."""
    if not is_run_folder(run_dir):
        return []
    removed = []
    for jsonl in sorted(run_dir.glob("*.jsonl")):
        for path in (jsonl, jsonl.with_suffix(".csv")):
            if path.is_file():
                path.unlink()
                removed.append(path.name)
    if (run_dir / "tensorboard").is_dir():
        shutil.rmtree(run_dir / "tensorboard")
        removed.append("tensorboard/")
    for name in (SUMMARY_FILE, CONFIG_FILE):
        if (run_dir / name).is_file():
            (run_dir / name).unlink()
            removed.append(name)
    return removed


def nonfinite(values: dict[str, Any]) -> tuple[str, float] | None:
    """The first (name, value) among ``values`` (numbers or one-element tensors) that is NaN or infinite."""
    for name, value in values.items():
        number = float(value.detach()) if hasattr(value, "detach") else value
        if isinstance(number, (int, float)) and not math.isfinite(number):
            return name, number
    return None


def first_nonfinite_tensor(state: Any, prefix: str = "") -> str | None:
    """The key path (``agent/critic/q1.weight``) of the first floating-point tensor in a nested
    dict / list holding a NaN or an infinity; None if there is none. One pass over the tensors."""
    if isinstance(state, dict):
        items = state.items()
    elif isinstance(state, (list, tuple)):
        items = enumerate(state)
    else:
        is_float = getattr(state, "is_floating_point", None)
        return prefix.rstrip("/") if is_float is not None and is_float() and not bool(state.isfinite().all()) else None
    for key, value in items:
        found = first_nonfinite_tensor(value, f"{prefix}{key}/")
        if found is not None:
            return found
    return None


class RunFolder:
    """The folder of one training run, opened as a context manager; see the module docstring.

    Args:
        path: the run folder (from ``--run-dir``).
        resume: whether ``--resume`` was given.
        command: how the command is started (``python -m rl_curl.train``), for messages.
        main_process: False on the other ranks of a ``torchrun`` job: they neither lock, create
            nor clean the folder (rank 0 does).
        hint: the likely fix printed when a loss becomes NaN or infinite.
    """

    def __init__(self, path: str | Path, resume: bool, command: str, main_process: bool = True,
                 hint: str = "lower the learning rate (--lr), or turn bf16 off (--bf16 off)"):
        self.path = Path(path)
        self.resume = resume
        self.command = command
        self.main_process = main_process
        self.hint = hint
        self.checkpoint_path = self.path / CHECKPOINT_FILE
        self.stop_signal: int | None = None
        self.saved_at: str | None = None  # where the last checkpoint this process wrote stands
        self._lock_fd: int | None = None
        self._created = False
        self._previous_handlers: dict[int, Any] = {}

    # -- opening and closing ---------------------------------------------------------------

    def __enter__(self) -> "RunFolder":
        self.open()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    def open(self) -> None:
        """Check the folder against --resume, create and lock it, install the signal handlers.

        Only the main process checks and claims the folder: another rank of a ``torchrun`` job
        looking at it while rank 0 writes its lock and marker would see a folder that is neither
        empty nor marked yet. If rank 0 refuses the folder, the job ends there."""
        if self.main_process:
            self._check_and_claim()
        self._install_signal_handlers()

    def _check_and_claim(self) -> None:
        existing = find_checkpoint(self.path) if self.path.is_dir() else None
        if self.resume and existing is None:
            raise CommandError(f"--resume: {self.path} holds no checkpoint ({CHECKPOINT_FILE})",
                               "check the folder, or start without --resume (a run stopped before its "
                               "first checkpoint starts again from the beginning)")
        if not self.resume and existing is not None:
            raise CommandError(f"{self.path} already holds a run ({existing.name})",
                               "pass --resume to continue it, or choose another --run-dir")
        check_run_folder(self.path, self.resume)
        self._created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock()
        if not self.resume:
            try:
                check_run_folder(self.path, self.resume)  # again under the lock: another process may have written
            except NotARunFolder:
                self.close()
                raise
            removed = discard_logs(self.path)
            if removed:
                print(f"{self.path}: removed the logs of a run stopped before its first checkpoint "
                      f"({', '.join(removed)})", file=sys.stderr)
            write_marker(self.path, self.command)

    def _lock(self) -> None:
        fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunLocked(f"{self.path} is in use: process {holder} is training into it",
                            "wait for it to finish (or stop it), or choose another --run-dir") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def close(self) -> None:
        """Restore the signal handlers, release the lock, remove the folder if it was created and left empty."""
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers.clear()
        if self._lock_fd is None:
            return
        with contextlib.suppress(OSError):
            if self._created and not foreign_files(self.path):
                for name in (RUN_MARKER, LOCK_FILE):
                    (self.path / name).unlink(missing_ok=True)
                self.path.rmdir()
        os.close(self._lock_fd)
        self._lock_fd = None

    # -- checkpoints ---------------------------------------------------------------------------

    def load(self, map_location: Any = "cpu") -> dict[str, Any]:
        """The run's checkpoint (``checkpoint.pt``, or a legacy ``last.pt``)."""
        path = find_checkpoint(self.path)
        if path is None:
            raise CommandError(f"{self.path} holds no checkpoint", "start without --resume")
        return load_checkpoint(path, map_location=map_location)

    def save(self, state: dict[str, Any], position: str, losses: dict[str, Any] | None = None) -> None:
        """Atomically write ``checkpoint.pt`` (main process only); ``position`` says where the run
        stands (``step 400``), for the messages after an interruption or a non-finite loss.
        ``losses`` (the last ones computed) are checked first: NaN weights are never saved."""
        if losses:
            self.check_finite(position, **losses)
        self.check_weights(position, state)  # an update can blow up the weights after a finite loss
        if self.main_process:
            save_checkpoint(state, self.checkpoint_path)
        self.saved_at = position

    def save_config(self, cfg: Any) -> None:
        """Write ``config.json`` atomically and append this start's machine facts to
        ``machine.jsonl`` (main process only)."""
        if self.main_process:
            save_config(cfg, self.path)
            self.record_machine()

    def record_machine(self) -> dict[str, Any]:
        """Append the machine facts of this start (or resume) to ``machine.jsonl``; returns them."""
        import datetime

        from core_ssl.device import machine_facts

        facts = {"time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                 "resume": self.resume, **machine_facts()}
        with open(self.path / MACHINE_FILE, "a") as f:
            f.write(json.dumps(facts) + "\n")
        return facts

    def write_summary(self, summary: dict[str, Any]) -> None:
        """Write ``summary.json`` atomically (main process only)."""
        if self.main_process:
            write_json(self.path / SUMMARY_FILE, summary)

    # -- stopping --------------------------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signals are only delivered to the main thread
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous_handlers[signum] = signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.stop_signal is not None:  # the second one: stop now, without saving
            raise KeyboardInterrupt
        self.stop_signal = signum
        print(f"\n{signal.Signals(signum).name} received: saving a checkpoint at the next safe point, then "
              "stopping (send it again to stop at once without saving)", file=sys.stderr)

    def interrupted(self) -> RunInterrupted:
        """The exception to raise once the checkpoint after a signal is saved."""
        saved = f"checkpoint saved at {self.saved_at}" if self.saved_at else "nothing to save yet"
        return RunInterrupted(self.stop_signal or signal.SIGINT, self.path, saved,
                              f"continue with: {self.command} --run-dir {self.path} --resume")

    def check_finite(self, position: str, **values: Any) -> None:
        """Raise :class:`NonFiniteLoss` if any value (a float or a one-element tensor) is NaN or infinite."""
        bad = nonfinite(values)
        if bad is None:
            return
        name, value = bad
        raise self._non_finite(f"{name} became {value}", position)

    def check_weights(self, position: str, state: Any) -> None:
        """Raise :class:`NonFiniteLoss` naming the first tensor of ``state`` (a nested dict of
        tensors, e.g. a state dict) holding a NaN or an infinity."""
        bad = first_nonfinite_tensor(state)
        if bad is not None:
            raise self._non_finite(f"{bad} became non-finite", position)

    def _non_finite(self, what: str, position: str) -> NonFiniteLoss:
        if self.saved_at:
            kept = f"the last good checkpoint ({self.checkpoint_path.name}, {self.saved_at}) is kept"
        elif find_checkpoint(self.path):
            kept = f"the checkpoint it was resumed from ({find_checkpoint(self.path).name}) is kept"
        else:
            kept = "no checkpoint was written"
        if self.saved_at or find_checkpoint(self.path):
            fix = (f"{self.hint}, in a new run in another --run-dir (--resume continues only with this run's "
                   "saved settings)")
        else:
            fix = f"{self.hint}, and start again (the same --run-dir may be used: it holds no checkpoint)"
        return NonFiniteLoss(f"{what} at {position}; the run stopped and {kept}", fix)
