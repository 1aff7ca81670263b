"""Animations of evaluation episodes, with what is installed: mp4 or else GIF.

mp4 needs an ``ffmpeg`` executable (through matplotlib's ``FFMpegWriter``); without one the
frames are written as an animated GIF with Pillow. No extra package either way.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["mp4_available", "save_episode_animation"]


def mp4_available() -> bool:
    """True when matplotlib finds an ffmpeg it can write mp4 with."""
    from matplotlib import animation

    return animation.writers.is_available("ffmpeg")


def save_episode_animation(frames: list[np.ndarray], stem: str | Path, fps: int = 30) -> Path:
    """Write ``frames`` (each (H, W, 3) uint8) to ``stem.mp4`` when ffmpeg is available, else
    ``stem.gif``; returns the path written (atomically: a temporary file, then a rename)."""
    if not frames:
        raise ValueError("no frames to animate")
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    if mp4_available():
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib import animation

        path = stem.with_suffix(".mp4")
        tmp = path.with_name(f".{path.name}.tmp.mp4")
        height, width = frames[0].shape[:2]
        fig = plt.figure(figsize=(width / 100, height / 100), dpi=100)
        ax = fig.add_axes([0, 0, 1, 1])
        ax.axis("off")
        image = ax.imshow(frames[0])
        writer = animation.FFMpegWriter(fps=fps)
        with writer.saving(fig, str(tmp), dpi=100):
            for frame in frames:
                image.set_data(frame)
                writer.grab_frame()
        plt.close(fig)
    else:
        from PIL import Image

        path = stem.with_suffix(".gif")
        tmp = path.with_name(f".{path.name}.tmp.gif")
        images = [Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in frames]
        images[0].save(tmp, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    os.replace(tmp, path)
    return path
