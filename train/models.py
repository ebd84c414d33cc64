"""Every architecture, defined once and registered by name.

All models map (N, 1, H, W) images in [0, 1] to (N, 1, H, W) images in [0, 1], so training,
evaluation and ONNX export treat them alike. Dense models flatten internally and need 28x28;
convolutional ones accept any size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from denoise_cli.core.errors import UsageError
from denoise_train.guided_smoothing import GuidedSmoothing
from denoise_train.reparam import RepConvBlock
from denoise_train.window_attention import WindowAttention


class DenseAutoencoder(nn.Module):
    """784 -> hidden (relu) -> 784 (sigmoid): the seed's autoencoders and its dense denoiser."""

    def __init__(self, hidden: int, side: int = 28) -> None:
        super().__init__()
        self.side = side
        self.encoder = nn.Linear(side * side, hidden)
        self.decoder = nn.Linear(hidden, side * side)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        h = torch.relu(self.encoder(x.reshape(n, -1)))
        return torch.sigmoid(self.decoder(h)).reshape(n, 1, self.side, self.side)


class ConvDenoiser(nn.Module):
    """3x3 same-padded convolutions with relu, then a 3x3 convolution to 1 channel and a sigmoid.

    The seed model is filters=(16, 8, 8, 16): 3,217 parameters.
    """

    def __init__(self, filters: tuple[int, ...] | list[int] = (16, 8, 8, 16)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 1
        for f in filters:
            layers += [nn.Conv2d(channels, f, 3, padding=1), nn.ReLU(inplace=True)]
            channels = f
        layers.append(nn.Conv2d(channels, 1, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.body(x))


def _conv_block(
    cin: int, cout: int, dilations: tuple[int, ...] = (1, 1), batch_norm: bool = False
) -> nn.Sequential:
    """3x3 convolutions (one per dilation), each followed by [batch norm and] relu."""
    layers: list[nn.Module] = []
    for i, d in enumerate(dilations):
        layers.append(
            nn.Conv2d(cout if i else cin, cout, 3, padding=d, dilation=d, bias=not batch_norm)
        )
        if batch_norm:
            layers.append(nn.BatchNorm2d(cout))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class NearestUpsample(nn.Module):
    """A 1x1 convolution at low resolution, then nearest-neighbour 2x upsampling.

    Stands in for a 2x2 stride-2 transposed convolution: onnxruntime runs those at 14-25
    GFLOP/s on 2 AVX2 cores; unet_lite_near runs 1.08-1.19x faster than unet_lite at the same
    test PSNR after the same 60 epochs (21.61 dB).
    """

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.interpolate(self.conv(x), scale_factor=2.0, mode="nearest")


def _upsampler(cin: int, cout: int, kind: str) -> nn.Module:
    if kind == "transposed":
        return nn.ConvTranspose2d(cin, cout, 2, stride=2)
    if kind == "nearest":
        return NearestUpsample(cin, cout)
    raise ValueError(f"unknown upsampling {kind!r}; use transposed or nearest")


class GlobalContext(nn.Module):
    """Per-image channel scales and shifts (FiLM) computed from whole-image feature means.

    A blind model must recognise the noise (kind, level) from a 34-pixel window; the means of
    the encoder's features over the whole image are a cheap noise estimator the decoders can
    condition on. Its last layers start at zero, so a fresh branch leaves the network as it was
    (fine-tuning starts from the unconditioned model's outputs). Global average pooling, 1x1
    convolutions, Mul and Add: operators every ONNX engine runs.
    """

    def __init__(self, widths: tuple[int, ...], hidden: int = 32) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.squeeze = nn.Conv2d(sum(widths), hidden, 1)
        self.heads = nn.ModuleList(nn.Conv2d(hidden, 2 * w, 1) for w in widths)
        for head in self.heads:
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def forward(self, features: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        pooled = torch.cat([self.pool(f) for f in features], dim=1)
        h = torch.relu(self.squeeze(pooled))
        films = []
        for head in self.heads:
            scale, shift = head(h).chunk(2, dim=1)
            films.append((scale + 1.0, shift))
        return films


class UNet(nn.Module):
    """A small U-Net (Ronneberger et al., 2015): two poolings, skip connections, sigmoid out.

    Height and width must be multiples of 4; the runtime pads to that (metadata size_multiple).
    Downsampling buys context cheaply: at 28x28 the (16, 32, 64) net costs ~4x the seed
    model's FLOPs for 36x its parameters. `mid_dilations` makes the quarter-resolution block
    deeper and dilated, so every output pixel sees the whole digit ((1, 1, 2, 1): 34 pixels
    each way, against 22 for the plain block); `batch_norm` puts batch normalisation after
    each convolution (at inference a fixed scale and shift, which onnxruntime folds into the
    convolution before it: no cost); `upsample` is "transposed" or "nearest" (NearestUpsample);
    `context` adds a GlobalContext branch that scales and shifts the middle block's and both
    decoders' features from the image's own feature statistics; `rep` trains every convolution
    with re-parameterised branches (reparam.RepConvBlock), folded away before export;
    `attention` adds a WindowAttention step after the middle block (non-local pooling);
    `smoothing` ends with GuidedSmoothing, a noise-adaptive edge-preserving filter of the output.
    """

    def __init__(
        self,
        widths: tuple[int, int, int] | list[int] = (16, 32, 64),
        mid_dilations: tuple[int, ...] | list[int] = (1, 1),
        batch_norm: bool = False,
        upsample: str = "transposed",
        context: bool = False,
        rep: bool = False,
        attention: bool = False,
        smoothing: bool = False,
    ) -> None:
        super().__init__()
        a, b, c = widths
        if rep and not batch_norm:
            raise ValueError("re-parameterised blocks need batch_norm (each branch has its own)")

        def block(cin: int, cout: int, dilations: tuple[int, ...] = (1, 1)) -> nn.Module:
            plain = _conv_block(cin, cout, dilations, batch_norm)
            return RepConvBlock(plain) if rep else plain

        self.enc1, self.enc2 = block(1, a), block(a, b)
        self.mid = block(b, c, tuple(mid_dilations))
        self.pool = nn.MaxPool2d(2)
        self.up2 = _upsampler(c, b, upsample)
        self.dec2 = block(2 * b, b)
        self.up1 = _upsampler(b, a, upsample)
        self.dec1 = block(2 * a, a)
        self.head = nn.Conv2d(a, 1, 1)
        self.context = GlobalContext((c, b, a)) if context else None
        self.attention = WindowAttention(c) if attention else None
        self.smoothing = GuidedSmoothing() if smoothing else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        m = self.mid(self.pool(e2))
        if self.attention is not None:
            m = self.attention(m)
        if self.context is None:
            d2 = self.dec2(torch.cat([self.up2(m), e2], dim=1))
            d1 = self.dec1(torch.cat([self.up1(d2), e1], dim=1))
        else:
            (s_m, b_m), (s_2, b_2), (s_1, b_1) = self.context([m, e2, e1])
            d2 = self.dec2(torch.cat([self.up2(m * s_m + b_m), e2], dim=1))
            d1 = self.dec1(torch.cat([self.up1(d2 * s_2 + b_2), e1], dim=1))
            d1 = d1 * s_1 + b_1
        y = torch.sigmoid(self.head(d1))
        return y if self.smoothing is None else self.smoothing(x, y)


@dataclass(frozen=True)
class Arch:
    """A registered architecture: how to build it and how the seed recipe trains it."""

    name: str
    factory: Callable[..., nn.Module]
    args: dict[str, Any]
    task: str  # "autoencoder" (clean -> clean) or "denoiser" (noisy -> clean)
    loss: str  # "mse" or "bce"
    fully_convolutional: bool
    description: str
    params: int  # exact parameter count, asserted by tests
    tags: tuple[str, ...] = field(default=())
    size_multiple: int = 1  # height and width must be multiples of this
    # Trained with re-parameterised branches, exported as this plain architecture (reparam.py).
    deploys_as: str | None = None

    def build(self, **overrides: Any) -> nn.Module:
        return self.factory(**{**self.args, **overrides})


REGISTRY: dict[str, Arch] = {}


class UnknownArchitecture(UsageError, KeyError):
    """No architecture of that name (a KeyError too, as a registry miss is)."""

    def __str__(self) -> str:  # KeyError's own quotes the message
        return str(self.args[0])


def register(arch: Arch) -> Arch:
    if arch.name in REGISTRY:
        raise ValueError(f"architecture {arch.name!r} registered twice")
    REGISTRY[arch.name] = arch
    return arch


for _k, _params in ((1, 2_353), (2, 3_922), (8, 13_336), (32, 50_992)):
    register(
        Arch(
            name=f"dense_ae_{_k}",
            factory=DenseAutoencoder,
            args={"hidden": _k},
            task="autoencoder",
            loss="mse",
            fully_convolutional=False,
            description=f"seed: dense autoencoder 784 -> {_k} (relu) -> 784 (sigmoid)",
            params=_params,
            tags=("seed",),
        )
    )

register(
    Arch(
        name="dense_denoiser_16",
        factory=DenseAutoencoder,
        args={"hidden": 16},
        task="denoiser",
        loss="mse",
        fully_convolutional=False,
        description="seed: dense denoiser 784 -> 16 (relu) -> 784 (sigmoid)",
        params=25_888,
        tags=("seed",),
    )
)

register(
    Arch(
        name="conv_denoiser",
        factory=ConvDenoiser,
        args={"filters": [16, 8, 8, 16]},
        task="denoiser",
        loss="bce",
        fully_convolutional=True,
        description="seed: 5 conv layers 16-8-8-16-1, 3x3 same, relu, sigmoid out",
        params=3_217,
        tags=("seed",),
    )
)


register(
    Arch(
        name="unet_small",
        factory=UNet,
        args={"widths": [16, 32, 64]},
        task="denoiser",
        loss="bce",  # measured: with MSE the sigmoid output sticks at black for the first epoch
        fully_convolutional=True,
        description="ours: U-Net 16-32-64, two poolings, skips, sigmoid out",
        params=116_753,
        size_multiple=4,
    )
)

register(
    Arch(
        name="unet_tiny",
        factory=UNet,
        args={"widths": [8, 16, 32]},
        task="denoiser",
        loss="bce",
        fully_convolutional=True,
        description="ours: U-Net 8-16-32, the small one's layout at half width",
        params=29_321,
        size_multiple=4,
    )
)


# Batch norm + a dilated 4-conv block at 1/4 resolution. unet_lite keeps 8 channels at full
# resolution, where the time goes, to stay >= 5,000 images/s on 2 AVX2 cores; unet_ctx is wider;
# unet_lite_near swaps the transposed convolutions for NearestUpsample; unet_wide_near is
# unet_ctx's widths with nearest upsampling (the capacity point of issue 18's curve);
# unet_mid_near the widest layout still above one third of the seed's speed (benchmarks.widths).
for _name, _widths, _extra, _params in (
    ("unet_ctx", [16, 32, 96], {}, 342_865),
    ("unet_lite", [8, 16, 64], {}, 137_897),
    ("unet_lite_near", [8, 16, 64], {"upsample": "nearest"}, 134_441),
    ("unet_lite_ctx", [8, 16, 64], {"upsample": "nearest", "context": True}, 143_097),
    ("unet_wide_near", [16, 32, 96], {"upsample": "nearest"}, 332_113),
    ("unet_mid_near", [8, 24, 64], {"upsample": "nearest"}, 151_793),
):
    _note = ", nearest upsampling" if _extra.get("upsample") == "nearest" else ""
    if _extra.get("context"):
        _note += ", global-context FiLM"
    register(
        Arch(
            name=_name,
            factory=UNet,
            args={"widths": _widths, "mid_dilations": [1, 1, 2, 1], "batch_norm": True, **_extra},
            task="denoiser",
            loss="bce",
            fully_convolutional=True,
            description=f"ours: U-Net {'-'.join(map(str, _widths))}, batch norm, "
            f"dilated 4-conv block at 1/4 resolution{_note}",
            params=_params,
            size_multiple=4,
        )
    )


def _register_lite_variant(name: str, extra: dict[str, Any], **fields: Any) -> None:
    """unet_lite_near's registered layout with `extra` constructor arguments: a unet_lite_near
    checkpoint initialises every tensor they share (the rep and nl variants' own tensors start
    silent, so they start as that checkpoint exactly; unet_lite_gs starts smoothing at once)."""
    base = REGISTRY["unet_lite_near"]
    register(
        Arch(
            name=name,
            factory=UNet,
            args={**base.args, **extra},
            task=base.task,
            loss=base.loss,
            fully_convolutional=True,
            size_multiple=base.size_multiple,
            **fields,
        )
    )


# Trained with RepVGG-style branches (reparam.py), exported as unet_lite_near: the same graph,
# the same cost.
_register_lite_variant(
    "unet_lite_rep",
    {"rep": True},
    description="ours: unet_lite_near trained with 1x1 and identity branches beside each "
    "3x3 convolution, folded into it for export",
    params=150_353,
    deploys_as="unet_lite_near",
)
# Guided smoothing after the output (guided_smoothing.py): flat regions filtered by the noise
# the network removed.
_register_lite_variant(
    "unet_lite_gs",
    {"smoothing": True},
    description="ours: unet_lite_near ending in a noise-adaptive guided filter of its output",
    params=134_442,
)
# Window attention at 1/4 resolution (window_attention.py): each pixel pools similar features
# within its 32x32-pixel window.
_register_lite_variant(
    "unet_lite_nl",
    {"attention": True},
    description="ours: unet_lite_near with window attention (8x8) at 1/4 resolution",
    params=138_649,
)


def get_arch(name: str) -> Arch:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownArchitecture(
            f"unknown architecture {name!r}; known: {', '.join(sorted(REGISTRY))}"
        ) from None


def list_archs() -> list[str]:
    return list(REGISTRY)


def create_model(name: str, **overrides: Any) -> nn.Module:
    return get_arch(name).build(**overrides)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
