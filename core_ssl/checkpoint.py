"""Checkpoints that survive a crash and never execute code.

- :func:`atomic_write` / :func:`save_checkpoint`: write to a temporary file in the same
  folder, flush it to disk, then ``os.replace`` it over the target. A run killed mid-write
  leaves the previous checkpoint intact, never a truncated one; its temporary file is removed
  by the next successful write.
- :func:`load_checkpoint`: ``torch.load(weights_only=True)``; a file that carries code (a
  pickled class or function) is refused with :class:`CheckpointError`, and so is a corrupt or
  truncated file, named in the message.
- :func:`export_weights` / :func:`load_weights`: safetensors files of a state dict, for
  sharing weights without pickle.
- :func:`capture_rng_state` / :func:`restore_rng_state`: Python, NumPy and torch (CPU and
  CUDA) generators as plain tensors, so a resumed run draws the same numbers.
- :func:`load_optimizer_state`: an optimiser's saved state restored without its saved way of
  running (fused, for-each, capturable), which belongs to the run that saved it.
"""

from __future__ import annotations

import contextlib
import glob
import io
import os
import pickle
import re
import random
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp creates files readable by their owner only; written files get the usual permissions.
_FILE_MODE = 0o666 & ~_read_umask()


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded: missing, corrupt, or carrying code."""


def atomic_write(path: str | Path, write: Callable[[io.BufferedWriter], None]) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync, then rename onto ``path``.

    Temporary files that a killed earlier write left beside ``path`` (older than this write)
    are removed once this write has succeeded: a run killed mid-save loses no disk for good.
    The file gets the permissions of a plainly created one (0666 less the umask).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        if isinstance(err, OSError) and err.errno is not None and err.filename is None:
            # e.g. ENOSPC when the file is closed: name the file the user was writing
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise
    _remove_stale_temporaries(path, started)
    return path


def _remove_stale_temporaries(path: Path, older_than: float) -> None:
    for leftover in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            if leftover.stat().st_mtime < older_than:
                leftover.unlink()


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Atomically ``torch.save`` a dict of tensors, numbers, strings, lists and dicts.

    Keep to those types (state dicts, optimiser states, counters, configs as dicts): anything
    else would need pickled code and :func:`load_checkpoint` would refuse it.
    """
    return atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` without executing any code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: check the path (or start without --resume)")
    with open(path, "rb") as f:
        head = f.read(16)
    if not head.startswith((_ZIP_MAGIC, _PICKLE_MAGIC)):
        raise CheckpointError(f"{path} is not a PyTorch checkpoint ({_file_kind(head)}): give a checkpoint "
                              "written by this toolkit (a run's checkpoint.pt or best.pt)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"refusing to load {path}: it contains pickled code, not just weights ({_unpickler_reason(err)}). "
            "Only checkpoints of tensors, numbers, strings, lists and dicts are loaded; if you "
            "trust the file, re-save its state dict with core_ssl.checkpoint.save_checkpoint."
        ) from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as err:
        raise CheckpointError(
            f"cannot read checkpoint {path}: the file is corrupt or truncated ({err}). "
            "Delete it and resume from an earlier one, or start afresh."
        ) from err


def _unpickler_reason(err: Exception) -> str:
    """The line of torch's multi-line weights-only refusal that names what was refused
    (``Unsupported global: GLOBAL __main__.X ...``, ``Trying to load unsupported GLOBAL
    posix.system ...``), without its advice or terminal colour codes."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    for line in (part.strip() for part in text.splitlines()):
        if "GLOBAL" in line or "Unsupported" in line or "unsupported" in line:
            return line.replace("WeightsUnpickler error: ", "").split(". Please")[0].rstrip(".")
    return "torch's weights-only loader refused it"


_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since PyTorch 1.6
_PICKLE_MAGIC = b"\x80"  # the legacy format: a pickle, protocol 2 or later
_KNOWN_KINDS = {b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"GIF8": "a GIF image",
                b"RIFF": "a RIFF file (WebP, WAV...)", b"\x1f\x8b": "a gzip archive", b"{": "a JSON text file"}


def _file_kind(head: bytes) -> str:
    """What the first bytes of a file say it is, for error messages."""
    if not head:
        return "an empty file"
    for magic, kind in _KNOWN_KINDS.items():
        if head.startswith(magic):
            return kind
    if len(head) >= 9 and head[8:9] == b"{":
        return "a safetensors file: load it with core_ssl.checkpoint.load_weights"
    return f"it starts with the bytes {head[:8]!r}"


def export_weights(state_dict: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Write a state dict as a safetensors file (atomically). Tensors are made contiguous."""
    from safetensors.torch import save

    tensors = {name: t.detach().contiguous().cpu() for name, t in state_dict.items()}
    return atomic_write(path, lambda f: f.write(save(tensors, metadata=metadata)))


def load_weights(path: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Read a safetensors file back into a state dict."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no weights file at {path}")
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"cannot read safetensors file {path}: {err}") from err


def load_state(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str | Path, strict: bool = True) -> Any:
    """``module.load_state_dict(state)``; tensors whose shapes (or, with ``strict``, names)
    disagree with the network the file's metadata describes are a :class:`CheckpointError`
    naming ``source`` and the first differences, not torch's multi-line ``RuntimeError``."""
    try:
        return module.load_state_dict(state, strict=strict)
    except RuntimeError as err:
        lines = [line.strip() for line in str(err).splitlines()[1:] if line.strip()]
        detail = "; ".join(lines[:3]) + (f"; and {len(lines) - 3} more" if len(lines) > 3 else "")
        raise CheckpointError(f"the weights in {source} do not fit the network its settings describe ({detail}): "
                              "the file is damaged or its metadata was changed; export it again from its run") from None


def read_safetensors_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a safetensors file (``{}`` when it has none), without reading its
    tensors; a missing or foreign file is a :class:`CheckpointError` naming it."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no weights file at {path}: check the path")
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path} is not a safetensors weights file ({err})") from err


def capture_rng_state() -> dict[str, Any]:
    """The state of every global random generator, as tensors and plain numbers."""
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "gauss": float(np_gauss), "kind": np_kind},
        "python": {"version": py_version, "internal": list(py_internal),
                   "gauss": py_gauss if py_gauss is None else float(py_gauss)},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


OPTIMIZER_RUN_FLAGS = ("capturable", "fused", "foreach", "differentiable")
"""Param-group settings that say how an optimiser runs, not what it computes."""


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """``optimizer.load_state_dict(state)``, keeping this optimiser's own run flags.

    ``Optimizer.load_state_dict`` replaces every param-group setting with the saved one,
    :data:`OPTIMIZER_RUN_FLAGS` included; but those belong to the saving run's device and mode.
    A run resumed with ``--cuda-graphs`` from a checkpoint written without them would get
    ``capturable=False`` back and fail to record its step; one resumed on the CPU from a graph
    run would get ``capturable=True``, which the CPU refuses. So the saved state (moments, step
    counts, learning rates, betas, ...) is restored and this optimiser's run flags are put back;
    step counters then live where those flags need them: on the parameter's device (float32)
    for a capturable or fused optimiser, on the CPU otherwise.
    """
    flags = [{name: group[name] for name in OPTIMIZER_RUN_FLAGS if name in group} for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, kept in zip(optimizer.param_groups, flags):
        group.update(kept)
        on_device = bool(group.get("capturable") or group.get("fused"))
        for param in group["params"]:
            step = optimizer.state.get(param, {}).get("step")
            if torch.is_tensor(step):
                optimizer.state[param]["step"] = (step.to(device=param.device, dtype=torch.float32) if on_device
                                                  else step.to("cpu"))
