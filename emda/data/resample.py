"""Working at one pixel size: resampling patches and tiles on the fly.

A network learns mitochondria at the pixel size of its training images. A target
imaged at 10 nm shows it every object at half the size it learned at 5 nm, so
training and prediction resample each patch or tile to one *working* pixel size (the
first source's, recorded in the checkpoint) and predictions go back to the input's
own grid. Only windows are resampled, never whole volumes: memory stays that of one
patch or tile, and the out-of-core prediction is unchanged.

``zoom`` is the factor from a volume's grid to the working grid: input pixel size /
working pixel size (2.0: a 10 nm target for a 5 nm model, upsampled twice).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from emda.errors import EmdaError
from emda.io.volume import VoxelSize

log = logging.getLogger("emda")

#: pixel sizes within this relative difference count as equal (no resampling)
TOLERANCE = 0.10


def in_plane(voxel_size: VoxelSize | None) -> float | None:
    """The (y, x) pixel size of a (z, y, x) voxel size in nm, their mean."""
    if voxel_size is None:
        return None
    return (float(voxel_size[1]) + float(voxel_size[2])) / 2


def pixel_zoom(pixel_size: float | None, working: float | None) -> float:
    """Input pixel size / working pixel size, or 1.0 when either is unknown or they
    differ by at most :data:`TOLERANCE` (resampling would only blur)."""
    if pixel_size is None or working is None:
        return 1.0
    if pixel_size <= 0 or working <= 0:
        raise EmdaError(f"pixel size {pixel_size} / {working} nm: must be positive")
    zoom = pixel_size / working
    return 1.0 if abs(zoom - 1) <= TOLERANCE else zoom


def check_voxel_size(voxel_size: VoxelSize | None, option: str) -> None:
    if voxel_size is not None and not all(v > 0 for v in voxel_size):
        raise EmdaError(f"{option} {','.join(f'{v:g}' for v in voxel_size)}: must be positive")


def resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, C, H, W) float images to (N, C, *size), bilinear; antialiased when shrinking
    so that fine texture does not alias into the smaller image. Pixel centres map onto
    pixel centres (align_corners=False), so a round trip keeps objects in place."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    shrinking = size[0] < images.shape[-2] or size[1] < images.shape[-1]
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False,
                         antialias=shrinking)  # fmt: skip


def resize_patch(patch: np.ndarray, size: int) -> np.ndarray:
    """A 2D float32 window to ``size`` x ``size`` pixels (see :func:`resize`)."""
    t = torch.from_numpy(np.ascontiguousarray(patch, dtype=np.float32))[None, None]
    return resize(t, (size, size))[0, 0].numpy()


def window_size(patch_size: int, zoom: float) -> int:
    """How many input pixels a ``patch_size`` working-pixel patch covers."""
    return max(1, round(patch_size / zoom))


def native_tile(tile: int, zoom: float, divisor: int) -> int:
    """The input tile whose resampled image is about ``tile`` working pixels, rounded to
    the network's ``divisor``: the network sees the context it was tuned for."""
    return max(divisor, round(tile / zoom / divisor) * divisor)


class Resampled(nn.Module):
    """``net`` applied at the working pixel size to images on their own grid: each
    (N, C, H, W) batch is resized by ``zoom`` (to a multiple of the network's divisor),
    segmented, and the logits resized back to (H, W)."""

    def __init__(self, net: nn.Module, zoom: float) -> None:
        super().__init__()
        self.net = net
        self.zoom = zoom
        self.config = getattr(net, "config", None)  # SlidingWindowPredictor reads divisor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.zoom == 1.0:
            return self.net(x)
        d = getattr(self.config, "divisor", 1)
        h, w = x.shape[-2:]
        size = tuple(max(d, -(-round(n * self.zoom) // d) * d) for n in (h, w))
        out = self.net(resize(x, size))  # type: ignore[arg-type]
        return resize(out.float(), (h, w))


def working_pixel_size(
    source: VoxelSize | None, target: VoxelSize | None, source_name: str, target_name: str
) -> tuple[float | None, float]:
    """The working pixel size (the source's in-plane size) and the target's zoom; a
    volume without a voxel size is assumed to share the other's, and the user told."""
    src, tgt = in_plane(source), in_plane(target)
    if src is None and tgt is not None:
        log.warning("%s has no voxel size: assumed the target's %g nm pixels (give "
                    "--voxel-size to correct)", source_name, tgt)  # fmt: skip
        return tgt, 1.0
    if tgt is None and src is not None and target_name:
        log.warning("%s has no voxel size: assumed the source's %g nm pixels (give "
                    "--target-voxel-size to correct)", target_name, src)  # fmt: skip
        return src, 1.0
    return src, pixel_zoom(tgt, src)


def model_zoom(ckpt, volume, name: str) -> float:
    """The volume's pixel size over the model's (``Checkpoint.pixel_size``); a volume without
    a voxel size is taken to share the model's, and the user told so."""
    if volume.voxel_size is None:
        if ckpt.pixel_size is not None:
            log.warning("%s has no voxel size: assumed the model's %g nm pixels (give "
                        "--voxel-size to correct)", name, ckpt.pixel_size)  # fmt: skip
        return 1.0
    zoom = pixel_zoom(in_plane(volume.voxel_size), ckpt.pixel_size)
    if zoom != 1.0:
        log.info("%s: %g nm pixels, the model's are %g nm: tiles are resampled by %.3g",
                 name, in_plane(volume.voxel_size), ckpt.pixel_size, zoom)  # fmt: skip
    return zoom
