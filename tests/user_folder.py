"""A folder of files another tool wrote, for the tests that a command never changes one."""

from __future__ import annotations

from pathlib import Path

USER_FILES = {"config.json": "{}", "metrics.jsonl": "keep\n", "train.csv": "keep\n", "tensorboard/events": "keep"}


def make_user_folder(path: Path) -> dict[str, str]:
    """Write :data:`USER_FILES` (a ``config.json`` among them) into ``path``; returns them."""
    for name, text in USER_FILES.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    return dict(USER_FILES)


def contents(path: Path) -> dict[str, str]:
    """Every file under ``path`` (relative name -> text), hidden ones included."""
    return {str(p.relative_to(path)): p.read_text() for p in path.rglob("*") if p.is_file()}
