"""2D U-Net = encoder + decoder + head, with the encoder's feature maps exposed.

Domain-adaptation methods regularise the encoder features, and extra heads (a
domain classifier, a reconstruction decoder) hang off ``UNet.encoder`` without
any change here: ``UNet.encoder.channels`` tells a head what it will receive.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class UNetConfig:
    """Hyper-parameters of the U-Net; stored in every checkpoint."""

    in_channels: int = 1
    out_channels: int = 1
    base_channels: int = 16  # feature maps of the first level; doubled at every level
    depth: int = 4  # encoder levels before the bottleneck
    batch_norm: bool = True

    def __post_init__(self) -> None:
        for name in ("in_channels", "out_channels", "base_channels", "depth"):
            if getattr(self, name) < 1:
                raise ValueError(f"UNetConfig.{name} must be >= 1, got {getattr(self, name)}")

    @property
    def divisor(self) -> int:
        """Spatial sizes must be multiples of this (one halving per level)."""
        return 2**self.depth

    def to_dict(self) -> dict:
        return asdict(self)


class ConvBlock(nn.Sequential):
    """Two 3x3 convolutions, each followed by (optional) batch norm and ReLU."""

    def __init__(self, in_channels: int, out_channels: int, batch_norm: bool = True) -> None:
        layers: list[nn.Module] = []
        for c_in in (in_channels, out_channels):
            layers.append(nn.Conv2d(c_in, out_channels, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class Encoder(nn.Module):
    """Returns the feature map of every level (before pooling) plus the bottleneck."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        widths = [config.base_channels * 2**level for level in range(config.depth + 1)]
        in_widths = [config.in_channels, *widths[:-1]]
        self.blocks = nn.ModuleList(
            ConvBlock(c_in, c_out, config.batch_norm) for c_in, c_out in zip(in_widths, widths)
        )
        self.pool = nn.MaxPool2d(2)
        self.channels: list[int] = widths  # last entry is the bottleneck

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for i, block in enumerate(self.blocks):
            x = block(x if i == 0 else self.pool(x))
            features.append(x)
        return features


class Decoder(nn.Module):
    """Upsamples the bottleneck back to full resolution.

    With ``skip=True`` (the U-Net) each level concatenates the encoder feature
    map of the same level; with ``skip=False`` it only sees the bottleneck, as a
    reconstruction decoder must (otherwise it could copy the input through the
    first skip connection).
    """

    def __init__(self, encoder_channels: list[int], skip: bool = True, batch_norm: bool = True):
        super().__init__()
        self.skip = skip
        self.ups = nn.ModuleList()
        self.blocks = nn.ModuleList()
        for deep, shallow in zip(encoder_channels[:0:-1], encoder_channels[-2::-1]):
            self.ups.append(nn.ConvTranspose2d(deep, shallow, kernel_size=2, stride=2))
            self.blocks.append(ConvBlock(shallow * (2 if skip else 1), shallow, batch_norm))
        self.out_channels = encoder_channels[0]

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[-1]
        skips = features[-2::-1]
        for up, block, skip in zip(self.ups, self.blocks, skips):
            x = up(x)
            x = block(torch.cat([skip, x], dim=1) if self.skip else x)
        return x


@dataclass
class SegmentationOutput:
    logits: torch.Tensor | None  # (B, out_channels, H, W)
    features: list[torch.Tensor]  # encoder levels, shallow to deep, then the bottleneck


class UNet(nn.Module):
    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or UNetConfig()
        self.encoder = Encoder(self.config)
        self.decoder = Decoder(self.encoder.channels, skip=True, batch_norm=self.config.batch_norm)
        self.head = nn.Conv2d(self.decoder.out_channels, self.config.out_channels, kernel_size=1)

    def forward_features(self, x: torch.Tensor) -> SegmentationOutput:
        """Logits and the encoder features the methods regularise."""
        self._check_shape(x)
        features = self.encoder(x)
        return SegmentationOutput(self.head(self.decoder(features)), features)

    def encode(self, x: torch.Tensor) -> SegmentationOutput:
        """Encoder features only (no decoder pass); ``logits`` is None."""
        self._check_shape(x)
        return SegmentationOutput(None, self.encoder(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits only: the path used for inference and export."""
        self._check_shape(x)
        return self.head(self.decoder(self.encoder(x)))

    def _check_shape(self, x: torch.Tensor) -> None:
        d = self.config.divisor
        if x.ndim != 4 or x.shape[-1] % d or x.shape[-2] % d:
            raise ValueError(
                f"U-Net input must be (B, C, H, W) with H and W multiples of {d}, "
                f"got {tuple(x.shape)}"
            )
