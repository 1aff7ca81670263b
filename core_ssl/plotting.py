"""Headless matplotlib for every package: the Agg backend and figures written atomically.

    plt = pyplot()
    fig, ax = plt.subplots()
    ...
    save_figure(fig, run_dir / "curve.png")   # closes the figure; never leaves a half-written PNG

matplotlib is imported on first use, so importing a package that plots stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core_ssl.checkpoint import atomic_write

__all__ = ["pyplot", "save_figure"]


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend (works without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path, dpi: int = 120) -> Path:
    """Write ``fig`` to ``path`` as PNG (temporary file, then rename) and close it."""
    try:
        return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi))
    finally:
        pyplot().close(fig)
