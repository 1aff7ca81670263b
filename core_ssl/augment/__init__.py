"""Batched image augmentations on tensors (B, C, H, W), on whatever device the batch is on.

Every function here works on a whole batch at once: no Python loop over samples, no host-device
synchronisation (with one documented exception: the colour-jitter order is read on the host, so
pass a CPU generator when the batch is on CUDA). Randomness comes from an optional
``torch.Generator``; all random parameters are drawn with it on *its* device and the small
parameter tensors are then moved to the batch's device, so a CPU generator seeds a CUDA batch
reproducibly. Without a generator the global RNG of the batch's device is used.

Modules:

- :mod:`~core_ssl.augment.policies`: :class:`SimCLRAugment` (random resized crop + flip as one
  ``grid_sample``, colour jitter, grayscale, Gaussian blur, solarize, normalise) and the
  recipes :func:`simclr_augment`, :func:`byol_augment_pair`, :func:`mocov1_augment`,
  :func:`mocov2_augment` (SupCon and the pretext methods build their views from the same class);
- :mod:`~core_ssl.augment.color`: :func:`rgb_to_gray`, :func:`color_jitter`, :func:`shift_hue`,
  :func:`gaussian_blur`, :func:`sobel_magnitude`; :mod:`~core_ssl.augment.geometry`: :func:`sample_resized_crop_boxes`,
  :func:`resized_crop`; :mod:`~core_ssl.augment.normalize`: :func:`to_float_image`,
  :func:`standardize_images` (per-image, per-channel standardisation, e.g. of Jigsaw tiles);
- :mod:`~core_ssl.augment.crops`: :func:`random_crop` (CURL), :func:`random_shift` (DrQ) and
  :func:`center_crop`, any dtype (uint8 frame stacks stay uint8), one gather per batch;
- :mod:`~core_ssl.augment.pretext`: :func:`rotate_batch` (RotNet),
  :func:`maximal_hamming_permutations` and :func:`jigsaw_tiles` (Jigsaw);
  :mod:`~core_ssl.augment.masks`: :func:`center_square_mask`, :func:`random_block_mask`,
  :func:`apply_mask`, :func:`random_erasing`;
- :mod:`~core_ssl.augment.backends` and :mod:`~core_ssl.augment.kornia_backend`: every policy
  and the RL crop and shift also run on ``kornia.augmentation`` (``backend="kornia"``), with the
  same parameter distributions; ``backend="auto"`` (the default) picks each device's measured
  default.

Image policies take uint8 (0..255) or floating-point (0..1) input and return float32 in
[0, 1], or normalised by ``(x - mean) / std`` when a mean and std are given.
"""

from core_ssl.augment.backends import (AUG_BACKEND_CHOICES, AUG_BACKENDS, DEFAULT_BACKENDS, check_backend,
                                       generator_seeded_rng, resolve_backend)
from core_ssl.augment.color import JITTER_OPS, color_jitter, gaussian_blur, rgb_to_gray, shift_hue, sobel_magnitude
from core_ssl.augment.crops import center_crop, random_crop, random_shift, sample_crop_offsets
from core_ssl.augment.geometry import resized_crop, sample_resized_crop_boxes
from core_ssl.augment.masks import apply_mask, center_square_mask, random_block_mask, random_erasing
from core_ssl.augment.normalize import standardize_images, to_float_image
from core_ssl.augment.policies import (SimCLRAugment, byol_augment_pair, mocov1_augment, mocov2_augment,
                                       simclr_augment)
from core_ssl.augment.pretext import HAMMING_RULES, jigsaw_tiles, maximal_hamming_permutations, rotate_batch

__all__ = [
    "AUG_BACKENDS",
    "AUG_BACKEND_CHOICES",
    "DEFAULT_BACKENDS",
    "HAMMING_RULES",
    "JITTER_OPS",
    "SimCLRAugment",
    "apply_mask",
    "byol_augment_pair",
    "center_crop",
    "center_square_mask",
    "check_backend",
    "color_jitter",
    "gaussian_blur",
    "generator_seeded_rng",
    "jigsaw_tiles",
    "maximal_hamming_permutations",
    "mocov1_augment",
    "mocov2_augment",
    "random_block_mask",
    "random_crop",
    "random_erasing",
    "random_shift",
    "resized_crop",
    "resolve_backend",
    "rgb_to_gray",
    "rotate_batch",
    "sample_crop_offsets",
    "sample_resized_crop_boxes",
    "shift_hue",
    "sobel_magnitude",
    "simclr_augment",
    "standardize_images",
    "to_float_image",
]
