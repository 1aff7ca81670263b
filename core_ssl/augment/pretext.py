"""Pretext tasks: RotNet rotations and Jigsaw puzzles with a maximal-Hamming permutation set.

Native only: a rotation by quarter turns is exact and draws nothing, and the Jigsaw draws
(one permutation of a fixed maximal-Hamming set, tile offsets inside each cell) have no kornia
counterpart (kornia's ``RandomJigsaw`` shuffles the patches of an image in place with any
permutation and returns no label). The views these methods start from are
:class:`~core_ssl.augment.policies.SimCLRAugment` policies, which run on either backend.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from core_ssl.augment._common import _check_batch, _randint, _uniform
from core_ssl.augment.crops import _gather_windows


def rotate_batch(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """RotNet's batch: every image at 0, 90, 180 and 270 degrees.

    Returns images (4B, C, H, W), rotation-major (rows k B .. (k+1) B - 1 hold
    ``torch.rot90(x, k, dims=(2, 3))``, counter-clockwise), and labels (4B,) int64 = k.
    Images must be square.
    """
    _check_batch(x)
    B, _, H, W = x.shape
    if H != W:
        raise ValueError(f"rotate_batch needs square images to stack rotations, got {H}x{W}; "
                         "centre-crop them first, e.g. center_crop(x, min(H, W))")
    images = torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(4)], dim=0)
    labels = torch.arange(4, device=x.device).repeat_interleave(B)
    return images, labels


def _all_permutations(n: int) -> np.ndarray:
    """All n! permutations of range(n) in lexicographic order, (n!, n) uint8."""
    count = math.factorial(n)
    flat = np.fromiter(itertools.chain.from_iterable(itertools.permutations(range(n))),
                       dtype=np.uint8, count=count * n)
    return flat.reshape(count, n)


HAMMING_RULES = ("average", "minimum")


def maximal_hamming_permutations(n: int = 100, grid: int = 9, seed: int = 0,
                                 rule: str = "average") -> torch.Tensor:
    """A set of ``n`` distinct permutations of range(grid) far apart in Hamming distance, (n, grid) int64.

    Greedy selection over all grid! permutations P-bar, started from one drawn at random (by
    ``seed``). With d(p, q) = #{k : p[k] != q[k]} and S the permutations chosen so far, each step
    adds the unchosen permutation p maximising

    - ``rule="average"``: sum_{q in S} d(p, q), the summed (equivalently, average) distance to
      the set -- Noroozi & Favaro (2016), Algorithm 1 ("maximal average Hamming distance"), the
      rule of their released permutation sets;
    - ``rule="minimum"``: min_{q in S} d(p, q), the max-min variant, which guarantees a larger
      minimum distance between any two permutations of the set.

    Ties go to the lexicographically first permutation. Deterministic for a seed. ``grid`` is
    the number of tiles (9 for a 3x3 puzzle), at most 10.
    """
    if rule not in HAMMING_RULES:
        raise ValueError(f"rule must be one of {HAMMING_RULES}, got {rule!r}")
    if not 2 <= grid <= 10:
        raise ValueError(f"grid (number of tiles) must lie in [2, 10], got {grid}")
    total = math.factorial(grid)
    if not 1 <= n <= total:
        raise ValueError(f"n must lie in [1, {total}] for {grid} tiles, got {n}")
    perms = _all_permutations(grid)
    columns = np.ascontiguousarray(perms.T)  # (grid, total): one contiguous row per position
    rng = np.random.default_rng(seed)
    chosen = [int(rng.integers(total))]
    available = np.ones(total, dtype=bool)
    available[chosen[0]] = False
    # score[p]: summed (average rule) or minimum (max-min rule) distance of p to the chosen set
    score = np.zeros(total, dtype=np.int32) if rule == "average" else np.full(total, grid, dtype=np.int32)
    for _ in range(n - 1):
        last = perms[chosen[-1]]
        matches = np.zeros(total, dtype=np.int32)
        for position in range(grid):
            matches += columns[position] == last[position]
        if rule == "average":
            score += grid - matches
        else:
            np.minimum(score, grid - matches, out=score)
        pick = int(np.argmax(np.where(available, score, -1)))
        chosen.append(pick)
        available[pick] = False
    return torch.from_numpy(perms[chosen].astype(np.int64))


def jigsaw_tiles(x: torch.Tensor, permutations: torch.Tensor, grid: int = 3, tile_size: int | None = None,
                 jitter: bool = True, generator: torch.Generator | None = None,
                 perm_index: torch.Tensor | None = None,
                 offsets: tuple[torch.Tensor, torch.Tensor] | None = None,
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Jigsaw puzzles: tiles (B, grid^2, C, t, t) and the permutation index (B,) int64.

    The image is split into grid x grid cells of (H // grid) x (W // grid) pixels, numbered
    row-major (cell c is at row c // grid, column c % grid; leftover pixels at the bottom and
    right are unused). From each cell a t x t tile is cut at an offset inside the cell, random
    per sample and cell when ``jitter`` (the gap between tiles), else centred. With
    p = permutations[perm_index[b]], **output tile k is cell p[k] of the input**.
    ``tile_size`` defaults to 64/75 of the cell (Noroozi & Favaro's 64 px tiles in 75 px cells).
    ``perm_index`` (B,) and ``offsets`` = (top, left), each (B, grid^2) in input cell order and
    relative to the cell corner, fix the random choices. One gather for the batch.
    """
    _check_batch(x)
    B, _, H, W = x.shape
    cell_h, cell_w = H // grid, W // grid
    if grid < 1 or cell_h < 1 or cell_w < 1:
        raise ValueError(f"cannot cut {H}x{W} images into a {grid}x{grid} grid")
    if permutations.dim() != 2 or permutations.shape[1] != grid * grid:
        raise ValueError(f"permutations must have shape (n, {grid * grid}) for a {grid}x{grid} grid, "
                         f"got {tuple(permutations.shape)}; build them with maximal_hamming_permutations")
    if tile_size is None:
        tile_size = max(1, min(cell_h, cell_w) * 64 // 75)
    if not 1 <= tile_size <= min(cell_h, cell_w):
        raise ValueError(f"tile_size must lie in [1, {min(cell_h, cell_w)}] (the cell size), got {tile_size}")
    cells = grid * grid
    device = x.device
    if perm_index is None:
        perm_index = _randint(permutations.shape[0], (B,), generator, device)
    perm_index = perm_index.to(device, torch.int64)
    if offsets is None:
        if jitter:
            u = _uniform((B, 2, cells), generator, device)
            top_in_cell = (u[:, 0] * (cell_h - tile_size + 1)).long().clamp_(max=cell_h - tile_size)
            left_in_cell = (u[:, 1] * (cell_w - tile_size + 1)).long().clamp_(max=cell_w - tile_size)
        else:
            top_in_cell = torch.full((B, cells), (cell_h - tile_size) // 2, device=device)
            left_in_cell = torch.full((B, cells), (cell_w - tile_size) // 2, device=device)
    else:
        top_in_cell, left_in_cell = (o.to(device, torch.int64) for o in offsets)
    source_cell = permutations.to(device, torch.int64)[perm_index]  # (B, cells): tile k <- cell p[k]
    top = (source_cell // grid) * cell_h + top_in_cell.gather(1, source_cell)
    left = (source_cell % grid) * cell_w + left_in_cell.gather(1, source_cell)
    return _gather_windows(x, top, left, tile_size, tile_size), perm_index
