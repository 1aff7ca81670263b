"""Markers for tests that need a device this machine may lack."""

import pytest
import torch

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
"""A test of a CUDA path: skipped without a GPU; ``scripts/gpu_check.sh`` runs them on one."""
