"""Episode animations: mp4 through ffmpeg, read back frame by frame; GIF without ffmpeg."""

import subprocess

import numpy as np
import pytest
from PIL import Image

from rl_curl import video


def _frames(count: int = 12, height: int = 33, width: int = 48) -> list[np.ndarray]:
    """Frames of flat colour blocks that move, so every frame differs and codecs keep them well."""
    frames = []
    for i in range(count):
        frame = np.zeros((height, width, 3), dtype=np.uint8)
        frame[:, :, 2] = 40
        frame[4:20, 2 + 2 * i: 18 + 2 * i] = (220, 60, 30)
        frames.append(frame)
    return frames


def _decode_mp4(path, ffmpeg: str, height: int, width: int) -> np.ndarray:
    raw = subprocess.run([ffmpeg, "-loglevel", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, check=True).stdout
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, height, width, 3)


@pytest.mark.skipif(not video.mp4_available(), reason="no ffmpeg (install the video extra: imageio-ffmpeg)")
def test_mp4_holds_every_frame(tmp_path):
    frames = _frames()
    path = video.save_episode_animation(frames, tmp_path / "episode", fps=10)
    assert path.suffix == ".mp4" and [p.name for p in tmp_path.iterdir()] == ["episode.mp4"]
    decoded = _decode_mp4(path, video.ffmpeg_executable(), 34, 48)  # odd height padded to even
    assert len(decoded) == len(frames)
    error = np.abs(decoded[:, :33].astype(int) - np.stack(frames).astype(int)).mean()
    assert error < 6, f"mean absolute error {error:.1f} of 255"


def test_gif_without_ffmpeg(tmp_path, monkeypatch):
    monkeypatch.setattr(video, "ffmpeg_executable", lambda: None)
    frames = _frames(count=5)
    path = video.save_episode_animation(frames, tmp_path / "episode", fps=10)
    assert path.suffix == ".gif"
    with Image.open(path) as gif:
        assert gif.n_frames == 5
        gif.seek(3)
        np.testing.assert_array_equal(np.asarray(gif.convert("RGB")), frames[3])


def test_bad_frames_are_named(tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        video.save_episode_animation([], tmp_path / "episode")
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        video.save_episode_animation([np.zeros((8, 8), dtype=np.float32)], tmp_path / "episode")
