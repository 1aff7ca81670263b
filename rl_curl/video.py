"""Animations of evaluation episodes: H.264 mp4 when an ffmpeg is found, else an animated GIF.

The ffmpeg is the one on ``PATH`` or, failing that, the binary shipped in the
``imageio-ffmpeg`` wheel (installed with the ``video`` extra: ``pip install -e .[video]``).
Frames are piped to it raw (``rgb24``) and encoded with libx264 at ``yuv420p``, the format
every player reads; odd frame sizes are padded by one pixel. Without any ffmpeg the frames are
written as an animated GIF with Pillow.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

__all__ = ["ffmpeg_executable", "mp4_available", "save_episode_animation"]


def ffmpeg_executable() -> str | None:
    """Path of an ffmpeg: ``PATH`` first, then the ``imageio-ffmpeg`` wheel's; None if neither."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError:  # the wheel is installed but its binary is missing for this platform
        return None


def mp4_available() -> bool:
    """True when :func:`save_episode_animation` will write mp4."""
    return ffmpeg_executable() is not None


def _frames_as_array(frames: list[np.ndarray]) -> np.ndarray:
    array = np.stack([np.asarray(f) for f in frames])
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] != 3:
        raise ValueError(f"frames must be (H, W, 3) uint8 images, got {array.dtype} frames of {array.shape[1:]}")
    return array


def _write_mp4(frames: np.ndarray, path: Path, fps: int, ffmpeg: str) -> None:
    height, width = frames.shape[1:3]
    command = [ffmpeg, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{width}x{height}", "-r", str(fps), "-i", "-",
               "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-c:v", "libx264", "-pix_fmt", "yuv420p",
               "-f", "mp4", str(path)]  # fmt: skip
    result = subprocess.run(command, input=np.ascontiguousarray(frames).tobytes(), capture_output=True)
    if result.returncode != 0:
        raise RuntimeError(f"{ffmpeg} could not write {path}: {result.stderr.decode(errors='replace').strip()}")


def save_episode_animation(frames: list[np.ndarray], stem: str | Path, fps: int = 30) -> Path:
    """Write ``frames`` (each (H, W, 3) uint8) to ``stem.mp4`` when an ffmpeg is available, else
    ``stem.gif``; returns the path written (atomically: a temporary file, then a rename)."""
    if not frames:
        raise ValueError("no frames to animate")
    array = _frames_as_array(frames)
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    ffmpeg = ffmpeg_executable()
    path = stem.with_suffix(".mp4" if ffmpeg else ".gif")
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    try:
        if ffmpeg:
            _write_mp4(array, tmp, fps, ffmpeg)
        else:
            from PIL import Image

            images = [Image.fromarray(frame) for frame in array]
            images[0].save(tmp, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
