"""Copy the small, regenerable-from results of finished runs into the repository.

    python scripts/collect_results.py runs/rl_compare results/rl_compare

Run folders hold checkpoints and replay buffers (hundreds of MB) and are not committed. This
copies, for every run folder under SOURCE (a folder with ``config.json``), its configuration,
logs and summaries (``*.json``, ``*.jsonl``, ``*.csv``), its plots (``*.png``) and its sample
grids (``samples/*.png``, which the CUT report's side-by-side figure reads), keeping the
relative layout, into DEST. Every report command of the toolkit reads these files only, so
tables and plots regenerate from the repository, e.g.
``python -m rl_curl.report results/rl_compare/cartpole-swingup``. Runs still in progress are
copied too (their logs end where they stand); ``--finished-only`` skips runs without a
``summary.json``. Files over 2 MB are skipped with a note.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

PATTERNS = ("*.json", "*.jsonl", "*.csv", "*.png", "samples/*.png")
MAX_BYTES = 2 * 2**20


def collect(source: Path, dest: Path, finished_only: bool = False) -> list[Path]:
    copied = []
    for config in sorted(source.rglob("config.json")):
        run = config.parent
        if finished_only and not (run / "summary.json").is_file():
            continue
        target = dest / run.relative_to(source)
        for pattern in PATTERNS:
            for path in sorted(run.glob(pattern)):
                if path.stat().st_size > MAX_BYTES:
                    print(f"skipped (over 2 MB): {path}")
                    continue
                copy = target / path.relative_to(run)
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, copy)
                copied.append(copy)
    return copied


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="folder holding run folders (e.g. runs/rl_compare)")
    parser.add_argument("dest", type=Path, help="folder in the repository (e.g. results/rl_compare)")
    parser.add_argument("--finished-only", action="store_true", help="only runs that wrote summary.json")
    args = parser.parse_args()
    if not args.source.is_dir():
        parser.exit(1, f"error: {args.source} is not a folder — give the folder that holds the run folders\n")
    copied = collect(args.source, args.dest, args.finished_only)
    print(f"copied {len(copied)} files into {args.dest}")


if __name__ == "__main__":
    main()
