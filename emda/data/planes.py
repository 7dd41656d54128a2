"""Which planes of a volume the 2D network segments, and averaging them.

A 2D network segments (y, x) slices. In a volume with (near-)isotropic voxels, such as
FIB-SEM, the (z, x) and (z, y) planes look like (y, x) slices too, so the same network
can segment all three stacks of planes; averaging the three probability maps ("ortho")
gives each voxel three views with different context and removes the slice-to-slice
jitter of a purely 2D prediction. For sections much thicker than their pixels (ssTEM,
SBEM) the other planes are stretched images the network never saw.

Averaging helps a network that segments the volume's own (z, x) and (z, y) planes
nearly as well as its slices (one trained on that microscope) and hurts one that does
not (one trained on another microscope, whose (z, x) planes are far worse), so slices
stay the default (docs/results.md).
"""

from __future__ import annotations

from enum import Enum
from typing import Any

import numpy as np

from emda.errors import EmdaError
from emda.io.volume import Volume, VoxelSize, permute


class Planes(str, Enum):
    xy = "xy"
    ortho = "ortho"
    #: ortho where the measurements say it helps, else xy (:func:`resolve_planes`)
    auto = "auto"


#: each plane stack as an axis order: the stack's slices are the first axis
PLANE_AXES: dict[str, tuple[int, int, int]] = {"xy": (0, 1, 2), "xz": (1, 0, 2), "yz": (2, 0, 1)}
#: voxels count as isotropic when the largest side is at most this times the smallest
ISOTROPY_RATIO = 1.25


def is_isotropic(voxel_size: VoxelSize | None) -> bool:
    return voxel_size is not None and max(voxel_size) <= ISOTROPY_RATIO * min(voxel_size)


def trained_in_three_planes(training: dict | None) -> bool:
    """Whether a model's training, or that of the run it was recalibrated or finetuned
    from, drew target patches from all three plane stacks (``--target-planes ortho``)."""
    while training:
        if training.get("target_planes") == "ortho":
            return True
        training = training.get("base_training")
    return False


def ortho_warnings(
    name: str,
    voxel_size: VoxelSize | None,
    trained_on: VoxelSize | None,
    saw_target_planes: bool = False,
) -> list[str]:
    """Why averaging the three plane stacks of this volume with this model may not help:
    the volume's voxels are not isotropic, or the model was trained on sections much
    thicker than their pixels (it never saw an isotropic (z, x) plane, see the module
    docstring) and not on its target's three planes either (``saw_target_planes``)."""
    messages = []
    if not is_isotropic(voxel_size):
        messages.append(
            f"{name}: voxel size {voxel_size} is not isotropic (or unknown); --planes ortho "
            "shows the network stretched (z, y) and (z, x) planes"
        )
    if trained_on is not None and not is_isotropic(trained_on) and not saw_target_planes:
        messages.append(
            f"the model was trained on voxel size {trained_on} (anisotropic): it never saw "
            "a (z, x) or (z, y) plane, and --planes ortho may score below slices (xy)"
        )
    return messages


def resolve_planes(
    planes: str | Planes,
    volume: Volume,
    trained_on: VoxelSize | None = None,
    saw_target_planes: bool = False,
) -> tuple[str, ...]:
    """The plane stacks to predict: ``("xy",)`` or ``("xy", "xz", "yz")``.

    ``auto`` reads only metadata, no labels: all three stacks when the volume is a 3D
    stack of isotropic voxels and the model saw such planes in training, either because
    its source was isotropic (``trained_on``: its checkpoint's voxel size) or because it
    drew target patches from all three planes (``saw_target_planes``), the cases where
    averaging helps; slices otherwise (an anisotropic volume, or a model that never saw
    a (z, x) plane)."""
    try:
        choice = Planes(planes)
    except ValueError:
        names = ", ".join(p.value for p in Planes)
        raise EmdaError(f"--planes {planes}: must be one of {names}") from None
    if choice is Planes.auto:
        volumetric = volume.shape[0] > 1
        saw_planes = is_isotropic(trained_on) or saw_target_planes
        both_isotropic = is_isotropic(volume.voxel_size) and saw_planes
        choice = Planes.ortho if volumetric and both_isotropic else Planes.xy
    if choice is Planes.xy:
        return ("xy",)
    if volume.shape[0] == 1:
        raise EmdaError(f"--planes ortho: {volume.path} is a 2D image, it has only (y, x)")
    return tuple(PLANE_AXES)


def in_volume_order(array: Any, plane: str) -> Any:
    """A stack predicted in ``plane``'s axis order, read back in (z, y, x) order."""
    inverse = tuple(int(a) for a in np.argsort(PLANE_AXES[plane]))
    return permute(array, inverse)  # type: ignore[arg-type]


def combine_regions(
    shape: tuple[int, int, int], chunks: tuple[int, int, int], depth: int
) -> list[tuple[slice, slice, slice]]:
    """Regions of ``depth`` slices by one output chunk in (y, x): each writes whole
    chunks, and memory holds one region per plane."""
    nz, ny, nx = shape
    _, cy, cx = chunks
    return [
        (slice(z, min(z + depth, nz)), slice(y, min(y + cy, ny)), slice(x, min(x + cx, nx)))
        for z in range(0, nz, depth)
        for y in range(0, ny, cy)
        for x in range(0, nx, cx)
    ]


def region_key(region: tuple[slice, slice, slice]) -> str:
    """How a combined region is recorded among an output's finished blocks."""
    return "planes/" + "/".join(str(s.start) for s in region)


def mean_of_planes(stacks: dict[str, Any], region: tuple[slice, slice, slice]) -> np.ndarray:
    """The mean probability over the plane stacks (each in its own axis order) in a
    (z, y, x) region."""
    total = np.zeros([s.stop - s.start for s in region], dtype=np.float32)
    for plane, stack in stacks.items():
        total += in_volume_order(stack, plane)[region]
    return total / len(stacks)
