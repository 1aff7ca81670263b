"""Image encoders: every one maps images (B, C, H, W) to features (B, feature_dim).

=============  ==============================================  ======================
name           architecture                                    feature_dim
=============  ==============================================  ======================
resnet18       torchvision ResNet-18, optional CIFAR stem,     512 * width
               width multiplier (SimCLR's 2x / 4x)
resnet50       torchvision ResNet-50, same options             2048 * width
curl           CURL's pixel encoder: conv stack, fc,           ``feature_dim`` (50)
               LayerNorm (Srinivas et al. 2020)
convnet        small conv-BN-ReLU net for fast CPU runs        8 * width, or
                                                               ``feature_dim``
=============  ==============================================  ======================

Input contract shared by all encoders: float images are taken as they are (already scaled,
typically to [0, 1] or normalised); ``uint8`` images are converted to float and divided by
255 inside the encoder, so replay buffers and decoded datasets can stay ``uint8`` until the
last moment. Any other dtype is a ``TypeError``.

Build one by name with :func:`build_encoder`; :data:`ENCODERS` lists the names.
"""

from __future__ import annotations

import inspect
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

__all__ = [
    "ResNetEncoder",
    "CurlEncoder",
    "ConvNetEncoder",
    "orthogonal_weight_init",
    "build_encoder",
    "ENCODERS",
]


def _as_float_images(x: torch.Tensor, dtype: torch.dtype, encoder: str) -> torch.Tensor:
    """Check that ``x`` is a (B, C, H, W) image batch; map uint8 to float in [0, 1]."""
    if x.dim() != 4:
        raise ValueError(f"{encoder} expects images of shape (B, C, H, W), got {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        return x.to(dtype).div_(255.0)
    if not x.is_floating_point():
        raise TypeError(
            f"{encoder} expects float or uint8 images, got dtype {x.dtype}; "
            "convert with x.float() (already scaled) or pass uint8 pixels in 0..255."
        )
    return x


# ---------------------------------------------------------------------------------------------
# ResNet
# ---------------------------------------------------------------------------------------------

_RESNET_LAYOUTS: dict[int, tuple[type[BasicBlock | Bottleneck], list[int]]] = {
    18: (BasicBlock, [2, 2, 2, 2]),
    34: (BasicBlock, [3, 4, 6, 3]),
    50: (Bottleneck, [3, 4, 6, 3]),
    101: (Bottleneck, [3, 4, 23, 3]),
    152: (Bottleneck, [3, 8, 36, 3]),
}


class ResNetEncoder(ResNet):
    """torchvision's ResNet as a feature extractor: ``forward(x) -> (B, 512 * expansion * width)``.

    Differences from ``torchvision.models.resnet{depth}``:

    * ``fc`` is the identity, so the output is the globally average-pooled last stage;
    * ``cifar_stem=True`` replaces the 7x7 stride-2 conv and the max-pool by one 3x3 stride-1
      conv (the SimCLR CIFAR-10 recipe), keeping 32x32 inputs from shrinking too early;
    * ``width`` multiplies the channels of the stem and of every stage (SimCLR's ResNet-50
      2x / 4x), so ``feature_dim = 512 * block.expansion * width``;
    * ``in_channels`` sets the stem's input channels.

    With the defaults the parameters are exactly torchvision's minus the fc layer.

    Args:
        depth: 18, 34, 50, 101 or 152.
        cifar_stem: use the 3x3 stride-1 stem without max-pool.
        width: integer channel multiplier, >= 1.
        in_channels: channels of the input images.
    """

    def __init__(self, depth: int = 18, cifar_stem: bool = False, width: int = 1,
                 in_channels: int = 3) -> None:
        if depth not in _RESNET_LAYOUTS:
            raise ValueError(f"ResNet depth must be one of {sorted(_RESNET_LAYOUTS)}, got {depth}")
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be an integer >= 1, got {width!r}")
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        block, layers = _RESNET_LAYOUTS[depth]
        # A plain int may be set before nn.Module.__init__; _make_layer reads it during
        # ResNet.__init__.
        self.width = width
        super().__init__(block, layers, num_classes=1)
        stem_channels = 64 * width
        if cifar_stem:
            self.conv1 = nn.Conv2d(in_channels, stem_channels, 3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_channels, stem_channels, 7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.bn1 = nn.BatchNorm2d(stem_channels)
        self.fc = nn.Identity()
        self.depth = depth
        self.cifar_stem = cifar_stem
        self.feature_dim: int = 512 * block.expansion * width

    def _make_layer(self, block: type[BasicBlock | Bottleneck], planes: int, blocks: int,
                    stride: int = 1, dilate: bool = False) -> nn.Sequential:
        if planes == 64:  # the first stage: its input is the widened stem
            self.inplanes = 64 * self.width
        return super()._make_layer(block, planes * self.width, blocks, stride, dilate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) float or uint8 -> (B, feature_dim)."""
        return super().forward(_as_float_images(x, self.conv1.weight.dtype, "ResNetEncoder"))


# ---------------------------------------------------------------------------------------------
# CURL pixel encoder
# ---------------------------------------------------------------------------------------------

def orthogonal_weight_init(module: nn.Module, generator: torch.Generator | None = None) -> None:
    """CURL / SAC-AE initialisation of one module (use as ``model.apply(orthogonal_weight_init)``).

    * ``nn.Linear``: orthogonal weight (gain 1), zero bias.
    * square-kernel ``nn.Conv2d`` / ``nn.ConvTranspose2d``: delta-orthogonal, i.e. the whole
      kernel is zero except its centre tap ``W[:, :, k//2, k//2]``, which is orthogonal with
      the ReLU gain sqrt(2); zero bias. At initialisation each conv is then an orthogonal
      1x1 map of the centre pixel, which keeps signal norms through a deep stack.

    Other modules are left as they are.
    """
    if isinstance(module, nn.Linear):
        nn.init.orthogonal_(module.weight, generator=generator)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        kh, kw = module.weight.shape[2:]
        if kh != kw:
            raise ValueError(f"delta-orthogonal init needs a square kernel, got {kh}x{kw}")
        with torch.no_grad():
            module.weight.zero_()
            centre = kh // 2
            nn.init.orthogonal_(module.weight[:, :, centre, centre],
                                gain=nn.init.calculate_gain("relu"), generator=generator)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class CurlEncoder(nn.Module):
    """CURL's pixel encoder (Srinivas et al. 2020; ``PixelEncoder`` of the official code).

    ``conv 3x3 stride 2 -> ReLU -> (num_layers - 1) x [conv 3x3 stride 1 -> ReLU] -> flatten ->
    Linear -> LayerNorm [-> tanh]``, no padding. For 84x84 inputs and 4 layers the conv output
    is 32 x 35 x 35. CURL's agent uses it without the tanh (``output_tanh=False``). The
    official code always divides by 255; here pass uint8 pixels for that, float observations are
    taken as already scaled.

    ``forward(obs, detach_conv=True)`` stops gradients at the conv output, so a loss on the
    result trains fc and LayerNorm but not the convs: the actor does this, while it shares the
    critic's convs through :meth:`copy_conv_weights_from`.

    Args:
        obs_shape: (C, H, W) of the observations, e.g. 3 stacked RGB frames = (9, 84, 84).
        feature_dim: output size.
        num_layers: number of conv layers, >= 1.
        num_filters: channels of every conv.
        output_tanh: squash the output with tanh.
        generator: random source for the orthogonal initialisation.
        micro_batch: run the conv stack on at most this many observations at a time (None: the
            whole batch at once). The stack has no batch-coupled layer, so the result is the
            same up to float rounding; on a CPU, whose caches hold one micro-batch's
            activations but not a 128-image batch's, it is much faster
            (:func:`core_ssl.device.resolve_conv_micro_batch`, docs/benchmarks.md).
    """

    def __init__(self, obs_shape: tuple[int, int, int] = (9, 84, 84), feature_dim: int = 50,
                 num_layers: int = 4, num_filters: int = 32, output_tanh: bool = False,
                 generator: torch.Generator | None = None, micro_batch: int | None = None) -> None:
        super().__init__()
        if len(obs_shape) != 3:
            raise ValueError(f"obs_shape must be (C, H, W), got {obs_shape}")
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        channels, height, width = (int(s) for s in obs_shape)
        # 3x3 convs without padding: stride 2 gives (n - 3) // 2 + 1, each stride-1 conv n - 2.
        out_h, out_w = ((n - 3) // 2 + 1 - 2 * (num_layers - 1) for n in (height, width))
        if out_h < 1 or out_w < 1:
            raise ValueError(
                f"observations of {height}x{width} are too small for {num_layers} conv layers; "
                "use larger observations or fewer layers."
            )
        self.obs_shape = (channels, height, width)
        self.num_layers = num_layers
        self.feature_dim: int = feature_dim
        self.output_tanh = output_tanh
        self.micro_batch = micro_batch
        self.conv_output_shape = (num_filters, out_h, out_w)
        self.convs = nn.ModuleList(
            [nn.Conv2d(channels, num_filters, 3, stride=2)]
            + [nn.Conv2d(num_filters, num_filters, 3, stride=1) for _ in range(num_layers - 1)]
        )
        self.fc = nn.Linear(num_filters * out_h * out_w, feature_dim)
        self.ln = nn.LayerNorm(feature_dim)
        self.apply(lambda m: orthogonal_weight_init(m, generator))

    def forward_conv(self, obs: torch.Tensor) -> torch.Tensor:
        """Conv stack: (B, C, H, W) float or uint8 -> flattened features (B, prod(conv_output_shape)),
        in micro-batches of ``self.micro_batch`` observations when it is set and B exceeds it."""
        if tuple(obs.shape[1:]) != self.obs_shape:
            raise ValueError(
                f"CurlEncoder was built for observations {self.obs_shape}, got {tuple(obs.shape[1:])}"
            )
        if self.micro_batch and len(obs) > self.micro_batch:
            return torch.cat([self._conv_stack(part) for part in obs.split(self.micro_batch)])
        return self._conv_stack(obs)

    def _conv_stack(self, obs: torch.Tensor) -> torch.Tensor:
        h = _as_float_images(obs, self.fc.weight.dtype, "CurlEncoder")
        for conv in self.convs:
            h = F.relu(conv(h))
        return h.flatten(1)

    def forward_head(self, conv_features: torch.Tensor) -> torch.Tensor:
        """The part after the convs: ``LayerNorm(fc(h))`` [tanh], computed in fc's dtype.

        With :meth:`forward_conv` it lets a caller run the convs once and the head several
        times (e.g. SAC's critic and actor heads on one conv pass).
        """
        out = self.ln(self.fc(conv_features.to(self.fc.weight.dtype)))
        return torch.tanh(out) if self.output_tanh else out

    def forward(self, obs: torch.Tensor, detach_conv: bool = False) -> torch.Tensor:
        """(B, C, H, W) -> (B, feature_dim): LayerNorm(fc(conv(obs))), tanh'd if ``output_tanh``.

        ``detach_conv=True`` blocks gradients from reaching the conv layers.
        """
        h = self.forward_conv(obs)
        return self.forward_head(h.detach() if detach_conv else h)

    def copy_conv_weights_from(self, source: "CurlEncoder") -> None:
        """Tie this encoder's conv weights and biases to ``source``'s (the same Parameter objects).

        After the call both encoders hold the same conv parameters, so an update through either
        changes both; fc and LayerNorm stay separate.
        """
        if len(source.convs) != len(self.convs):
            raise ValueError(
                f"cannot tie {len(self.convs)} conv layers to a source with {len(source.convs)}"
            )
        for target, src in zip(self.convs, source.convs):
            if target.weight.shape != src.weight.shape:
                raise ValueError(
                    f"conv weight shapes differ: {tuple(target.weight.shape)} vs "
                    f"{tuple(src.weight.shape)}"
                )
            target.weight = src.weight
            target.bias = src.bias


# ---------------------------------------------------------------------------------------------
# Small ConvNet
# ---------------------------------------------------------------------------------------------

class ConvNetEncoder(nn.Module):
    """A small, fast ConvNet for CPU runs on 32x32 images.

    Four blocks ``conv 3x3 -> BatchNorm -> ReLU`` with widths w, 2w, 4w, 8w; the first keeps the
    resolution, the other three halve it (32 -> 32 -> 16 -> 8 -> 4), then global average
    pooling. ``feature_dim = 8w``, or a final Linear to ``feature_dim`` when it is given.

    Args:
        in_channels: channels of the input images.
        width: w, the channels of the first block.
        feature_dim: optional output size (adds a Linear after the pooling).
    """

    def __init__(self, in_channels: int = 3, width: int = 32, feature_dim: int | None = None) -> None:
        super().__init__()
        if in_channels < 1 or width < 1:
            raise ValueError(f"in_channels and width must be >= 1, got {in_channels}, {width}")
        if feature_dim is not None and feature_dim < 1:
            raise ValueError(f"feature_dim must be >= 1 or None, got {feature_dim}")
        widths = [width, 2 * width, 4 * width, 8 * width]
        blocks: list[nn.Module] = []
        previous = in_channels
        for index, channels in enumerate(widths):
            blocks += [
                nn.Conv2d(previous, channels, 3, stride=1 if index == 0 else 2, padding=1,
                          bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
            ]
            previous = channels
        self.features = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc: nn.Module = nn.Identity() if feature_dim is None else nn.Linear(previous, feature_dim)
        self.feature_dim: int = previous if feature_dim is None else feature_dim
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) float or uint8 -> (B, feature_dim)."""
        first_conv = self.features[0]
        return self.fc(self.features(_as_float_images(x, first_conv.weight.dtype, "ConvNetEncoder")))


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------

def _resnet18(cifar_stem: bool = False, width: int = 1, in_channels: int = 3) -> ResNetEncoder:
    return ResNetEncoder(18, cifar_stem=cifar_stem, width=width, in_channels=in_channels)


def _resnet50(cifar_stem: bool = False, width: int = 1, in_channels: int = 3) -> ResNetEncoder:
    return ResNetEncoder(50, cifar_stem=cifar_stem, width=width, in_channels=in_channels)


ENCODERS: dict[str, Callable[..., nn.Module]] = {
    "resnet18": _resnet18,
    "resnet50": _resnet50,
    "curl": CurlEncoder,
    "convnet": ConvNetEncoder,
}
"""Encoder name -> constructor. Every constructor's keyword arguments are its options."""


def build_encoder(name: str, **kwargs) -> nn.Module:
    """Build the encoder registered as ``name`` in :data:`ENCODERS` with its keyword options.

    Raises:
        ValueError: ``name`` is not registered (the message lists the valid names).
        TypeError: an option that this encoder does not take (the message lists those it does).
    """
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; valid names: {', '.join(sorted(ENCODERS))}")
    constructor = ENCODERS[name]
    accepted = [p for p in inspect.signature(constructor).parameters if p != "self"]
    unexpected = sorted(set(kwargs) - set(accepted))
    if unexpected:
        raise TypeError(
            f"encoder {name!r} does not take option(s) {', '.join(unexpected)}; "
            f"it takes: {', '.join(accepted)}"
        )
    return constructor(**kwargs)
