"""Run this folder's tests on one torch thread, then restore the previous setting.

The networks here are tiny; on a shared 2-core machine a second OpenMP thread mostly waits at
barriers for a core another process holds, which can make small ops orders of magnitude slower.
"""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
