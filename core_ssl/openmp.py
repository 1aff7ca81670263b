"""OpenMP waiting policy for CPU training on shared machines (imports nothing heavy).

With its default policy, OpenMP (torch's CPU thread pool) spins at every barrier while the
thread it waits for is descheduled; on a CPU shared with other busy processes multi-threaded
torch ops then stall (``docs/benchmarks.md`` measured 10x slower augmentation). The training
commands call :func:`prefer_passive_waiting` before torch is imported, so that, unless the
user set ``OMP_WAIT_POLICY`` themselves, idle threads sleep instead of spinning.
"""

from __future__ import annotations

import os
import sys


def prefer_passive_waiting() -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless already set; returns whether it took effect
    (False when torch was already imported, since OpenMP reads the variable once at load)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return "torch" not in sys.modules
