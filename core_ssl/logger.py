"""Metrics logging (TensorBoard + CSV + JSONL) and progress bars with an ETA.

One :class:`RunLogger` per run folder. ``log("train", step, loss=..., lr=...)`` appends a row
to ``run_dir/train.csv`` and ``run_dir/train.jsonl`` and writes the scalars to TensorBoard
under ``train/<name>``. Each stream keeps the columns of its first row (a later row may omit
some, never add new ones; JSONL keeps everything). On resume, :meth:`RunLogger.truncate_after`
drops rows written after the checkpoint's step, so curves continue without duplicates.
Only the main process writes under ``torchrun``; the others get a logger that does nothing.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path
from typing import Any, Iterable

from tqdm.auto import tqdm

from core_ssl import distributed


def progress(iterable: Iterable | None = None, total: int | None = None, desc: str = "", **kwargs: Any) -> tqdm:
    """A tqdm progress bar (rate and ETA) on stderr, silent on non-main processes."""
    return tqdm(iterable, total=total, desc=desc, dynamic_ncols=True, file=sys.stderr,
                disable=not distributed.is_main_process() or kwargs.pop("disable", False),
                smoothing=0.05, **kwargs)


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a JSONL log (one JSON object per non-empty line); [] if the file is missing."""
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    return value


class RunLogger:
    """Writes metric streams for one run; see the module docstring."""

    def __init__(self, run_dir: str | Path, tensorboard: bool = True):
        self.run_dir = Path(run_dir)
        self.enabled = distributed.is_main_process()
        self._columns: dict[str, list[str]] = {}
        self._writer = None
        self._tensorboard = tensorboard and self.enabled  # the writer is opened by the first row, so a
        if not self.enabled:                             # run that logs nothing adds no empty events file
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)

    def _tensorboard_writer(self):
        if self._writer is None and self._tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))
        return self._writer

    def log(self, stream: str, step: int, **metrics: Any) -> None:
        """Append one row ``{"step": step, **metrics}`` to the stream's CSV, JSONL and TensorBoard."""
        if not self.enabled:
            return
        row = {"step": int(step), **{k: _plain(v) for k, v in metrics.items()}}
        with open(self.run_dir / f"{stream}.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        self._append_csv(stream, row)
        writer = self._tensorboard_writer()
        if writer is not None:
            for name, value in row.items():
                if name != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                    writer.add_scalar(f"{stream}/{name}", value, int(step))

    def _append_csv(self, stream: str, row: dict[str, Any]) -> None:
        path = self.run_dir / f"{stream}.csv"
        if stream not in self._columns:
            if path.is_file() and path.stat().st_size > 0:
                with open(path, newline="") as f:
                    self._columns[stream] = next(csv.reader(f))
            else:
                self._columns[stream] = list(row)
                with open(path, "w", newline="") as f:
                    csv.writer(f).writerow(self._columns[stream])
        columns = self._columns[stream]
        extra = sorted(set(row) - set(columns))
        if extra:
            raise ValueError(
                f"stream {stream!r} was started with columns {columns}; new column(s) {extra} "
                "would not fit the CSV. Log them to another stream."
            )
        with open(path, "a", newline="") as f:
            csv.writer(f).writerow([row.get(c, "") for c in columns])

    def read(self, stream: str) -> list[dict[str, Any]]:
        """All rows of a stream (from its JSONL)."""
        return read_jsonl(self.run_dir / f"{stream}.jsonl")

    def truncate_after(self, step: int) -> None:
        """Drop every row with ``step`` greater than the given step, in every stream."""
        if not self.enabled:
            return
        for jsonl in self.run_dir.glob("*.jsonl"):
            rows = read_jsonl(jsonl)
            kept = [r for r in rows if r.get("step", 0) <= step]
            if len(kept) == len(rows):
                continue
            jsonl.write_text("".join(json.dumps(r) + "\n" for r in kept))
            csv_path = jsonl.with_suffix(".csv")
            if csv_path.is_file():
                with open(csv_path, newline="") as f:
                    lines = list(csv.reader(f))
                header, body = lines[0], lines[1:]
                body = [r for r in body if int(r[header.index("step")]) <= step]
                with open(csv_path, "w", newline="") as f:
                    csv.writer(f).writerows([header, *body])

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._tensorboard = False  # a row after close opens no new events file

    def __enter__(self) -> "RunLogger":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
