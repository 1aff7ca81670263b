"""The SimCLR family of image policies: SimCLR, BYOL's two views, MoCo v1 and v2."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from core_ssl.augment._common import (_check_batch, _check_image_dtype, _check_probability, _check_range,
                                      _pair, _random_order, _uniform)
from core_ssl.augment.backends import check_backend, resolve_backend
from core_ssl.augment.color import JITTER_OPS, color_jitter, gaussian_blur, rgb_to_gray
from core_ssl.augment.geometry import resized_crop, sample_resized_crop_boxes
from core_ssl.augment.normalize import to_float_image


class SimCLRAugment(torch.nn.Module):
    """SimCLR's augmentation policy for a whole batch: crop + flip, colour, gray, blur, solarize.

    Per sample, independently: random resized crop to ``size`` (area fraction U(scale), aspect
    ratio log-U(ratio)) with a horizontal flip with probability ``flip_p``, both in one
    ``grid_sample``; with probability ``color_p``, colour jitter with factors
    b, c, s ~ U[max(0, 1 - k), 1 + k] for k = brightness, contrast, saturation (default
    0.8 * color_strength each) and hue shift ~ U[-hue, hue] turns (default 0.2 * color_strength),
    applied in a random order -- one order per batch, redrawn every call (torchvision draws one
    per image; the batch shares it so the ops stay whole-batch tensor ops); grayscale with
    probability ``grayscale_p``; Gaussian blur with probability ``blur_p``, sigma ~ U(blur_sigma),
    kernel side ``blur_kernel_frac * size`` made odd as SimCLR does (23 at 224, at least 3);
    solarize (x -> 1 - x where x >= 0.5) with probability ``solarize_p``; finally
    ``(x - mean) / std`` when both are given. With ``grayscale_first`` the grayscale step runs
    before the colour jitter (MoCo v1's order, :func:`mocov1_augment`), so a grayed image stays
    gray: hue and saturation leave gray pixels unchanged.

    ``backend`` (:mod:`core_ssl.augment.backends`): ``"native"`` runs the batched ops of this
    package; ``"kornia"`` the same policy as ``kornia.augmentation`` modules
    (:mod:`core_ssl.augment.kornia_backend`, same parameter distributions, seeded from
    ``generator`` too); ``"auto"`` (default) the batch's device default.

    A component with probability 0 (or ``crop=False``) is skipped entirely. Without the crop
    the images keep their size if it is already ``size``, else they are resized whole.
    Input uint8 (0..255) or float (0..1), (B, C, H, W) with C = 3 (C = 1 works with colour
    jitter reduced to brightness and contrast, and no grayscale). Output float32.
    """

    def __init__(self, size: int | Sequence[int], scale: Sequence[float] = (0.08, 1.0),
                 ratio: Sequence[float] = (3 / 4, 4 / 3), flip_p: float = 0.5,
                 color_strength: float = 0.5, color_p: float = 0.8, grayscale_p: float = 0.2,
                 blur_p: float = 0.5, blur_kernel_frac: float = 0.1,
                 blur_sigma: Sequence[float] = (0.1, 2.0), solarize_p: float = 0.0,
                 crop: bool = True, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, *, brightness: float | None = None,
                 contrast: float | None = None, saturation: float | None = None,
                 hue: float | None = None, grayscale_first: bool = False, backend: str = "auto") -> None:
        super().__init__()
        self.backend = check_backend(backend)
        self._kornia_pipelines: dict[tuple[int, bool], torch.nn.Module] = {}  # by (channels, resize)
        self.size = _pair(size)
        self.grayscale_first = bool(grayscale_first)
        self.scale = _check_range(scale, "scale", 0.0, 1.0)
        self.ratio = _check_range(ratio, "ratio")
        self.crop = bool(crop)
        self.flip_p = _check_probability(flip_p, "flip_p")
        if color_strength < 0:
            raise ValueError(f"color_strength must be >= 0, got {color_strength}")
        strengths = {
            "brightness": 0.8 * color_strength if brightness is None else brightness,
            "contrast": 0.8 * color_strength if contrast is None else contrast,
            "saturation": 0.8 * color_strength if saturation is None else saturation,
            "hue": 0.2 * color_strength if hue is None else hue,
        }
        for name, value in strengths.items():
            if value < 0:
                raise ValueError(f"{name} jitter strength must be >= 0, got {value}")
        if strengths["hue"] > 0.5:
            raise ValueError(f"hue jitter is in turns and must be <= 0.5, got {strengths['hue']}")
        self.jitter_strengths = {k: float(v) for k, v in strengths.items()}
        self.color_p = _check_probability(color_p, "color_p")
        self.grayscale_p = _check_probability(grayscale_p, "grayscale_p")
        self.blur_p = _check_probability(blur_p, "blur_p")
        self.blur_sigma = _check_range(blur_sigma, "blur_sigma")
        if not 0.0 < blur_kernel_frac <= 1.0:
            raise ValueError(f"blur_kernel_frac must lie in (0, 1], got {blur_kernel_frac}")
        # SimCLR's rule: radius = int(frac * side) // 2, kernel = 2 radius + 1 (23 px at 224).
        self.blur_kernel = max(3, 2 * (int(blur_kernel_frac * min(self.size)) // 2) + 1)
        self.solarize_p = _check_probability(solarize_p, "solarize_p")
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std to normalise, or neither")
        self.normalize = mean is not None
        if self.normalize:
            mean_t = torch.as_tensor(mean, dtype=torch.float32).flatten()
            std_t = torch.as_tensor(std, dtype=torch.float32).flatten()
            if mean_t.numel() != std_t.numel() or bool((std_t <= 0).any()):
                raise ValueError(f"mean and std need the same length and std > 0, got {mean} and {std}")
            self.register_buffer("mean", mean_t.view(1, -1, 1, 1), persistent=False)
            self.register_buffer("std", std_t.view(1, -1, 1, 1), persistent=False)

    @property
    def jitter_ops(self) -> tuple[str, ...]:
        """The colour-jitter ops that can change an image (strength > 0 and color_p > 0)."""
        if self.color_p == 0:
            return ()
        return tuple(op for op in JITTER_OPS if self.jitter_strengths[op] > 0)

    def extra_repr(self) -> str:
        parts = [f"size={self.size}", f"crop={self.crop}", f"scale={self.scale}", f"flip_p={self.flip_p}",
                 f"color_p={self.color_p}", f"jitter={self.jitter_strengths}",
                 f"grayscale_p={self.grayscale_p}", f"grayscale_first={self.grayscale_first}", f"blur_p={self.blur_p}",
                 f"blur_kernel={self.blur_kernel}", f"solarize_p={self.solarize_p}",
                 f"normalize={self.normalize}", f"backend={self.backend!r}"]
        return ", ".join(parts)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None,
                backend: str | None = None) -> torch.Tensor:
        """Augment the batch ``x`` (B, C, H, W); one independent draw per sample. ``backend``
        overrides the policy's own for this call (a run's ``--aug-backend``)."""
        _check_batch(x)
        _check_image_dtype(x)
        B, C, H, W = x.shape
        if C not in (1, 3) and (self.jitter_ops or self.grayscale_p > 0):
            raise ValueError(f"colour jitter and grayscale need 1 or 3 channels, got {C}; "
                             "set color_p=0 and grayscale_p=0 for other images")
        if self.normalize and self.mean.numel() not in (1, C):
            raise ValueError(f"mean/std have {self.mean.numel()} values for {C}-channel images")
        if resolve_backend(self.backend if backend is None else backend, x.device) == "kornia":
            return self._forward_kornia(x, generator)
        device = x.device
        source = x
        x = self._geometry(to_float_image(x), generator)
        needs_more = bool(self.jitter_ops) or self.grayscale_p > 0 or self.blur_p > 0 \
            or self.solarize_p > 0 or self.normalize
        if needs_more and x.data_ptr() == source.data_ptr():
            x = x.clone()  # the steps below work in place; never overwrite the caller's tensor
        gray_step = self.grayscale_p > 0 and C == 3
        if gray_step and self.grayscale_first:
            x = self._grayscale(x, generator)
        if self.jitter_ops:
            x = self._jitter(x, generator)
        if gray_step and not self.grayscale_first:
            x = self._grayscale(x, generator)
        if self.blur_p > 0:
            sigma, apply = self.blur_parameters(B, generator, device)
            x = gaussian_blur(x, sigma, self.blur_kernel, apply=apply)
        if self.solarize_p > 0:
            chosen = (_uniform((B,), generator, device) < self.solarize_p).view(B, 1, 1, 1)
            inverted = torch.ge(x, 0.5, out=torch.empty_like(x)).mul_(chosen)  # 0/1 per pixel
            x = x.lerp_(torch.rsub(x, 1.0), inverted)
        if self.normalize:
            x = x.sub_(self.mean.to(device)).div_(self.std.to(device))
        return x

    def _forward_kornia(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        from core_ssl.augment import kornia_backend  # imported on first use: kornia loads in ~0.5 s

        resize = not self.crop and tuple(x.shape[-2:]) != self.size
        key = (x.shape[1], resize)
        if key not in self._kornia_pipelines:
            self._kornia_pipelines[key] = kornia_backend.build_policy(self, x.shape[1], resize)
        return kornia_backend.run_policy(self._kornia_pipelines[key], to_float_image(x), generator)

    def _geometry(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        B, _, H, W = x.shape
        flip = _uniform((B,), generator, x.device) < self.flip_p if self.flip_p > 0 else None
        if self.crop:
            boxes = sample_resized_crop_boxes(B, H, W, self.scale, self.ratio, generator, x.device)
            return resized_crop(x, boxes, self.size, flip)
        if (H, W) != self.size:
            boxes = torch.tensor([[0.0, 0.0, H, W]], device=x.device).expand(B, 4)
            return resized_crop(x, boxes, self.size, flip)
        if flip is not None:
            return torch.where(flip.view(B, 1, 1, 1), x.flip(3), x)
        return x

    def _grayscale(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        B = x.shape[0]
        to_gray = (_uniform((B,), generator, x.device) < self.grayscale_p).view(B, 1, 1, 1).float()
        # x <- (1 - t) x + t gray(x) with t in {0, 1}: exact either way, and in place
        gray = rgb_to_gray(x).mul_(to_gray)
        return x.mul_(1.0 - to_gray).add_(gray)

    def blur_parameters(self, batch: int, generator: torch.Generator | None = None,
                        device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """The blur draws of one call: sigma ~ U(blur_sigma) (B,) and the gate (B,) bool, True
        with probability ``blur_p``."""
        u = _uniform((batch, 2), generator, torch.device(device))
        sigma = self.blur_sigma[0] + (self.blur_sigma[1] - self.blur_sigma[0]) * u[:, 0]
        return sigma, u[:, 1] < self.blur_p

    def jitter_parameters(self, batch: int, generator: torch.Generator | None = None,
                          device: torch.device | str = "cpu") -> tuple[dict[str, torch.Tensor], list[str]]:
        """The colour-jitter draws of one call: per-sample factors (B,) for each op of
        :attr:`jitter_ops` and the batch's op order.

        Applied with probability ``color_p``: b, c, s ~ U[max(0, 1 - k), 1 + k], hue ~ U[-k, k]
        turns; a sample left out gets the neutral factors 1 (and hue 0). One order for the batch,
        a uniform random permutation of the ops.
        """
        ops = self.jitter_ops
        u = _uniform((batch, 1 + len(ops)), generator, torch.device(device))
        applied = u[:, 0] < self.color_p
        factors = {}
        for column, op in enumerate(ops, start=1):
            k = self.jitter_strengths[op]
            if op == "hue":
                factors[op] = torch.where(applied, (2.0 * u[:, column] - 1.0) * k, 0.0)
            else:
                low = max(0.0, 1.0 - k)
                factors[op] = torch.where(applied, low + (1.0 + k - low) * u[:, column], 1.0)
        order = [ops[i] for i in _random_order(len(ops), generator)]
        return factors, order

    def _jitter(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        factors, order = self.jitter_parameters(x.shape[0], generator, x.device)
        return color_jitter(x, order=order, inplace=True, **factors)


def simclr_augment(size: int, color_strength: float = 0.5, blur: bool = False,
                   **overrides) -> SimCLRAugment:
    """SimCLR's recipe; the defaults are its CIFAR-10 settings (strength 0.5, no blur).

    Crop scale (0.08, 1), flip 0.5, jitter (0.8s, 0.8s, 0.8s, 0.2s) with p 0.8, grayscale 0.2,
    blur p 0.5 when ``blur`` (ImageNet: ``color_strength=1.0, blur=True``). ``overrides`` go
    to :class:`SimCLRAugment` (e.g. ``mean``, ``std``).
    """
    settings = dict(color_strength=color_strength, blur_p=0.5 if blur else 0.0)
    settings.update(overrides)
    return SimCLRAugment(size, **settings)


def byol_augment_pair(size: int, **overrides) -> tuple[SimCLRAugment, SimCLRAugment]:
    """BYOL's two asymmetric views (Grill et al. 2020, Table 6).

    Both: crop scale (0.08, 1), flip 0.5, jitter brightness 0.4, contrast 0.4, saturation 0.2,
    hue 0.1 with p 0.8, grayscale 0.2, blur sigma (0.1, 2). View 1: blur p 1.0, solarize 0;
    view 2: blur p 0.1, solarize p 0.2.
    """
    common = dict(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1, color_p=0.8,
                  grayscale_p=0.2, blur_sigma=(0.1, 2.0))
    common.update(overrides)
    view1 = SimCLRAugment(size, **{"blur_p": 1.0, "solarize_p": 0.0, **common})
    view2 = SimCLRAugment(size, **{"blur_p": 0.1, "solarize_p": 0.2, **common})
    return view1, view2


def mocov1_augment(size: int, **overrides) -> SimCLRAugment:
    """MoCo v1's policy (He et al. 2020; ``main_moco.py`` without ``--aug-plus``): crop scale
    (0.2, 1), grayscale p 0.2 *first*, then colour jitter (0.4, 0.4, 0.4, 0.4) always applied
    (torchvision's ``ColorJitter(0.4, 0.4, 0.4, 0.4)``: hue shift up to 0.4 turns), flip 0.5,
    no blur."""
    settings = dict(scale=(0.2, 1.0), brightness=0.4, contrast=0.4, saturation=0.4, hue=0.4,
                    color_p=1.0, grayscale_p=0.2, grayscale_first=True, blur_p=0.0)
    settings.update(overrides)
    return SimCLRAugment(size, **settings)


def mocov2_augment(size: int, **overrides) -> SimCLRAugment:
    """MoCo v2's policy: crop scale (0.2, 1), jitter (0.4, 0.4, 0.4, 0.1) p 0.8, grayscale 0.2,
    blur p 0.5 with sigma (0.1, 2), flip 0.5."""
    settings = dict(scale=(0.2, 1.0), brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1,
                    color_p=0.8, grayscale_p=0.2, blur_p=0.5, blur_sigma=(0.1, 2.0))
    settings.update(overrides)
    return SimCLRAugment(size, **settings)
