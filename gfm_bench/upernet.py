"""UPerNet on an encoder's feature maps (Xiao et al., "Unified Perceptual Parsing for Scene
Understanding", ECCV 2018), the segmentation head of the GFM-Bench protocol.

A ViT gives maps of one stride (the patch size). As in the ViT adaptations of UPerNet
(BEiT, MAE), a small neck first turns four such maps into a pyramid at strides p/4, p/2, p
and 2p (two and one transposed convolutions, identity, max-pooling). Then the head: a
pyramid pooling module on the coarsest level, lateral 1x1 convolutions, a top-down path,
3x3 convolutions per level, all levels upsampled to the finest and fused, and a 1x1
classifier whose logits are upsampled to the input size.

Maps that already form a pyramid (a CNN's stages) skip the neck.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["ViTPyramidNeck", "UPerNetHead", "UPerNet"]


def _conv_bn_relu(cin: int, cout: int, k: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, padding=k // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def _resize(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ViTPyramidNeck(nn.Module):
    """Four same-stride maps -> strides x4 up, x2 up, x1, x2 down (channels kept)."""

    def __init__(self, dims: Sequence[int]):
        super().__init__()
        if len(dims) != 4:
            raise ValueError(f"the ViT neck takes 4 maps, got {len(dims)}")
        d0, d1 = dims[0], dims[1]
        self.up4 = nn.Sequential(
            nn.ConvTranspose2d(d0, d0, 2, stride=2),
            nn.BatchNorm2d(d0),
            nn.GELU(),
            nn.ConvTranspose2d(d0, d0, 2, stride=2),
        )
        self.up2 = nn.ConvTranspose2d(d1, d1, 2, stride=2)
        self.down2 = nn.MaxPool2d(2, ceil_mode=True)

    def forward(self, maps: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [self.up4(maps[0]), self.up2(maps[1]), maps[2], self.down2(maps[3])]


class UPerNetHead(nn.Module):
    """PPM + FPN fusion over a pyramid of maps (finest first) -> class logits at the finest."""

    def __init__(
        self,
        dims: Sequence[int],
        num_classes: int,
        channels: int = 128,
        pool_scales: Sequence[int] = (1, 2, 3, 6),
        dropout: float = 0.1,
    ):
        super().__init__()
        top = dims[-1]
        self.pool_scales = tuple(pool_scales)
        self.ppm = nn.ModuleList(_conv_bn_relu(top, channels, 1) for _ in self.pool_scales)
        self.bottleneck = _conv_bn_relu(top + channels * len(self.pool_scales), channels, 3)
        self.lateral = nn.ModuleList(_conv_bn_relu(d, channels, 1) for d in dims[:-1])
        self.fpn = nn.ModuleList(_conv_bn_relu(channels, channels, 3) for _ in dims[:-1])
        self.fuse = _conv_bn_relu(channels * len(dims), channels, 3)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def _ppm(self, x: torch.Tensor) -> torch.Tensor:
        pooled = [
            _resize(conv(F.adaptive_avg_pool2d(x, scale)), x.shape[-2:])
            for scale, conv in zip(self.pool_scales, self.ppm, strict=True)
        ]
        return self.bottleneck(torch.cat([x, *pooled], dim=1))

    def forward(self, maps: Sequence[torch.Tensor]) -> torch.Tensor:
        laterals = [conv(m) for conv, m in zip(self.lateral, maps[:-1], strict=True)]
        laterals.append(self._ppm(maps[-1]))
        for i in range(len(laterals) - 1, 0, -1):  # top-down
            laterals[i - 1] = laterals[i - 1] + _resize(laterals[i], laterals[i - 1].shape[-2:])
        outs = [conv(x) for conv, x in zip(self.fpn, laterals[:-1], strict=True)] + [laterals[-1]]
        outs = [outs[0]] + [_resize(o, outs[0].shape[-2:]) for o in outs[1:]]
        return self.classifier(self.dropout(self.fuse(torch.cat(outs, dim=1))))


class UPerNet(nn.Module):
    """Neck (for same-stride maps) + head; ``forward(maps, size)`` -> logits at ``size``."""

    def __init__(
        self, dims: Sequence[int], num_classes: int, same_stride: bool, channels: int = 128
    ):
        super().__init__()
        self.neck = ViTPyramidNeck(dims) if same_stride else nn.Identity()
        self.head = UPerNetHead(dims, num_classes, channels=channels)

    def forward(self, maps: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        return _resize(self.head(self.neck(list(maps))), size)
