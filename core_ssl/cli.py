"""One command-line error wrapper for every command (imports nothing heavy).

:func:`run_command` calls a command's ``main(argv)`` and turns the failures a user can act on
into one line on stderr, ``error: <what> — <what to do>``, with no traceback:

====================================================  =========
failure                                               exit code
====================================================  =========
success                                               0
:class:`CommandError` and the expected exceptions
(``ValueError``, ``FileNotFoundError``, ``OSError``,
checkpoint errors, a disk that filled during a save)  1
:class:`UsageError` (a flag value that cannot work)   2 (as argparse's own usage errors)
:class:`RunInterrupted` after SIGINT / SIGTERM        130 / 143 (128 + the signal number)
the reader of the output went away (``cmd | head``)   141 (128 + SIGPIPE), silently
====================================================  =========

Anything else is a bug and keeps its traceback. ``--debug`` (removed from ``argv`` before
``main`` sees it) shows the traceback of expected failures too.

OS errors are explained by their ``errno``: no space left (``ENOSPC``), a read-only file
system (``EROFS``), no permission, a file where a folder should be; ``torch.save`` reports a
full disk only as ``RuntimeError: ... unexpected pos``, which is recognised as well.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence

DEBUG_FLAG = "--debug"


class CommandError(Exception):
    """An expected failure: ``what`` went wrong and ``fix``, what the user can do about it."""

    exit_code = 1

    def __init__(self, what: str, fix: str = ""):
        self.what, self.fix = what, fix
        super().__init__(f"{what} — {fix}" if fix else what)


class UsageError(CommandError, ValueError):
    """A flag (or combination of flags) that cannot work; exits with 2, as argparse does."""

    exit_code = 2


class RunInterrupted(CommandError):
    """SIGINT / SIGTERM arrived; the run saved a checkpoint (when it had one to save) and stopped."""

    def __init__(self, signum: int, run_dir: Path | str, saved: str, resume_hint: str):
        self.signum = signum
        self.exit_code = 128 + signum  # 130 for SIGINT, 143 for SIGTERM, as a shell reports them
        name = signal.Signals(signum).name
        super().__init__(f"stopped by {name}; {saved}", resume_hint)


def _filename(err: OSError) -> str:
    return str(err.filename) if err.filename is not None else "a file"


def describe_os_error(err: OSError) -> str:
    """``<what> — <what to do>`` for an OS error, by its errno."""
    name = _filename(err)
    code = err.errno
    if code in (errno.ENOSPC, errno.EDQUOT):
        return (f"no space left on the device writing {name} — free some disk space (or choose a folder on "
                "another disk), then run the same command again (add --resume if the run folder holds a checkpoint.pt, to "
                "continue from it)")
    if code == errno.EROFS:
        return f"{name} is on a read-only file system — choose a writable folder (--run-dir / --out / --output)"
    if code in (errno.EACCES, errno.EPERM):
        return f"permission denied: {name} — choose a folder you can write to, or change its permissions"
    if code == errno.ENOTDIR or (code == errno.EEXIST and err.filename is not None and Path(err.filename).is_file()):
        return (f"{name} (or a folder above it) is a file where a folder is needed — remove or rename that "
                "file, or choose another path")
    if code == errno.ENOENT:
        return f"{name} does not exist — check the path"
    if code == errno.EISDIR:
        return f"{name} is a folder where a file is needed — give the path of a file"
    return f"{err.strerror or err}: {name} — check the path and the disk"


def _is_disk_full_during_save(err: BaseException) -> bool:
    """torch.save on a full disk: its zip writer reports only the short write, 'unexpected pos'."""
    text = str(err)
    return isinstance(err, RuntimeError) and ("unexpected pos" in text or "file write failed" in text)


def _expected(err: BaseException) -> tuple[str, int] | None:
    """(message, exit code) for an expected failure, None for a bug."""
    if isinstance(err, CommandError):
        return str(err), err.exit_code
    if isinstance(err, OSError):
        # raised by the system: explained by its errno; raised by this toolkit: its message says it all
        return (describe_os_error(err) if err.errno is not None else str(err)), 1
    if _is_disk_full_during_save(err):
        last_line = str(err).strip().splitlines()[-1].strip()
        return (f"writing a checkpoint failed part-way ({last_line}): the disk is most likely full — free some "
                "disk space, then run the same command again (add --resume if the run folder holds a checkpoint.pt, "
                "to continue from it)"), 1
    from core_ssl.checkpoint import CheckpointError  # torch is loaded by now: a command ran

    if isinstance(err, (ValueError, CheckpointError)):
        return str(err), 1
    return None


def _close_progress_bars() -> None:
    """End the line of any progress bar still drawn, so the error starts a line of its own."""
    std = sys.modules.get("tqdm.std")
    if std is not None:
        for bar in list(getattr(std.tqdm, "_instances", ())):
            bar.close()


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush cannot fail on the closed pipe."""
    try:
        target = sys.stdout.fileno()
    except (OSError, ValueError):  # stdout replaced by an object without a file descriptor
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, target)
    os.close(devnull)


def run_command(main: Callable[[list[str]], Any], argv: Sequence[str] | None = None) -> NoReturn:
    """Run ``main(argv)`` (``argv`` defaults to ``sys.argv[1:]``) and exit with the table's code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv
    argv = [a for a in argv if a != DEBUG_FLAG]
    try:
        main(argv)
        sys.stdout.flush()  # text still buffered meets a closed pipe here, not at the interpreter's exit
    except SystemExit as stop:
        try:
            sys.stdout.flush()  # --help: argparse printed into the buffer, then exits 0
        except BrokenPipeError:
            _silence_stdout()
            sys.exit(128 + signal.SIGPIPE if stop.code in (0, None) else stop.code)
        raise
    except BrokenPipeError:  # e.g. `--help | head`: not an error of the command, nothing more to say
        _silence_stdout()
        sys.exit(128 + signal.SIGPIPE)
    except KeyboardInterrupt:  # a second Ctrl-C, or one before the run installed its handler
        print("error: interrupted before a checkpoint could be saved — run the same command again "
              "(with --resume if the run folder already holds a checkpoint)", file=sys.stderr)
        sys.exit(130)
    except BaseException as err:  # noqa: BLE001 (re-raised below unless it is expected)
        known = _expected(err)
        if known is None:
            raise
        if debug:
            traceback.print_exc()
        message, code = known
        _close_progress_bars()
        print(f"error: {message}", file=sys.stderr)
        sys.exit(code)
    sys.exit(0)
