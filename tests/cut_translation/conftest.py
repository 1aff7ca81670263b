"""Run this folder's tests on one torch thread, then restore the previous setting.

The networks here are tiny; on a shared 2-core machine a second OpenMP thread mostly waits at
barriers for a core another process holds, which can make small ops orders of magnitude slower.
"""

import pytest
import torch
from PIL import Image

from core_ssl.data import read_image_files


@pytest.fixture(autouse=True)
def one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def cat_photo(tmp_path_factory):
    """The first training cat of ``catdog-128.zip`` as a JPEG file (128 x 128)."""
    names, images = read_image_files("catdog-128.zip", "trainA")
    path = tmp_path_factory.mktemp("photo") / "cat.jpg"
    Image.fromarray(images[0].permute(1, 2, 0).numpy()).save(path, quality=95)
    return path
