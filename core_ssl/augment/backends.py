"""Which implementation runs an augmentation: the native ops or kornia's augmentation modules.

Every random augmentation with a kornia counterpart takes ``backend``:

- ``"native"``: the batched ops of this package (one ``grid_sample`` for crop + flip, in-place
  colour ops, one gather for the RL crops), random draws from the caller's ``torch.Generator``;
- ``"kornia"``: the same policy built from ``kornia.augmentation`` modules (kornia draws its own
  parameters from torch's global CPU RNG; see :func:`generator_seeded_rng` for how a
  generator still makes it reproducible);
- ``"auto"``: the default of the batch's device, :data:`DEFAULT_BACKENDS`, chosen from
  ``benchmarks/augment.py`` (docs/benchmarks.md, "Augmentation backends").

Both backends draw their parameters from the same distributions (``tests/core_ssl/
test_augment_kornia.py`` compares parameter ranges, probabilities and output statistics), but
not the same values: a seed gives one augmentation per backend, not one for both.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

AUG_BACKENDS = ("native", "kornia")
AUG_BACKEND_CHOICES = ("auto", *AUG_BACKENDS)

DEFAULT_BACKENDS = {"cpu": "native", "cuda": "native"}
"""``"auto"`` per device type. CPU: native, measured 2.9-5.6x faster than kornia for every
image policy and 1.1-6.3x for the RL crop and shift (batches of 128 and 512, one thread;
docs/benchmarks.md). CUDA: native by reasoning until measured on a GPU -- the same policy in
fewer kernels and allocations (one ``grid_sample`` for crop + flip, in-place colour ops, one
gather for a replay batch where kornia's crop slices each sample in Python and materialises
``x[indices]`` first). Other device types (``mps``, ...) use native as well."""


def check_backend(name: str) -> str:
    """``name`` if it is one of :data:`AUG_BACKEND_CHOICES`, else a ValueError naming them."""
    if name not in AUG_BACKEND_CHOICES:
        raise ValueError(f"unknown augmentation backend {name!r}; choose one of {', '.join(AUG_BACKEND_CHOICES)}")
    return name


def resolve_backend(name: str, device: torch.device | str) -> str:
    """The concrete backend (``"native"`` or ``"kornia"``) for ``name`` on ``device``:
    ``"auto"`` -> ``DEFAULT_BACKENDS[device.type]`` (native for unlisted device types)."""
    check_backend(name)
    if name != "auto":
        return name
    return DEFAULT_BACKENDS.get(torch.device(device).type, "native")


@contextmanager
def generator_seeded_rng(generator: torch.Generator | None) -> Iterator[None]:
    """Run the block with torch's global CPU RNG seeded from ``generator``, then restore it.

    kornia's augmentation modules draw every parameter (crop boxes, jitter factors and order,
    the per-sample probability gates) from the global RNG on the CPU (their default sampling
    device, which this package never changes). To make them reproducible from a
    ``torch.Generator`` like the native ops: draw one 62-bit seed s from ``generator`` (on its
    device; a CUDA generator costs one small device read), then inside
    ``torch.random.fork_rng(devices=[])`` set the CPU RNG to s. The caller's global RNG state
    is restored afterwards, so augmenting does not disturb other random streams, and the same
    generator state gives the same augmentation. Without a generator the block runs on the
    global RNG as is (like the native ops without one).
    """
    if generator is None:
        yield
        return
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item())
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        yield
