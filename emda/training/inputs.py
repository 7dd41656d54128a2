"""What a training command reads: volumes as specified, loaded and checked."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emda.data.resample import check_voxel_size
from emda.errors import EmdaError
from emda.evaluation.evaluate import parse_z_range
from emda.io.volume import Volume, open_volume, read_labels
from emda.safety.validate import check_finite


@dataclass
class VolumeSpec:
    """Where a training volume is and which z-slices of it to use."""

    raw: str
    labels: str | None = None
    z_range: str | None = None
    voxel_size: tuple[float, float, float] | None = None
    foreground: float | None = None
    channel: int | None = None  # of a multichannel OME-Zarr raw volume


def channel_option(role: str) -> str:
    """The option that picks a ``role`` volume's channel: ``--source-channel``,
    ``--target-channel``."""
    return f"--{role}-channel"


def open_raw(spec: VolumeSpec, role: str) -> Volume:
    """The raw volume of ``spec`` (its voxel size and channel applied)."""
    return open_volume(spec.raw, voxel_size=spec.voxel_size, channel=spec.channel,
                       channel_option=channel_option(role))  # fmt: skip


def load_training_volume(spec: VolumeSpec, role: str) -> tuple[Volume, Volume | None, list[int]]:
    check_voxel_size(
        spec.voxel_size, f"--{role}-voxel-size" if role != "source" else "--voxel-size"
    )
    raw = open_raw(spec, role)
    labels = None
    if spec.labels:
        labels = read_labels(spec.labels, foreground=spec.foreground)
        if labels.shape != raw.shape:
            raise EmdaError(
                f"{spec.labels}: label shape {labels.shape} differs from {role} raw "
                f"{spec.raw} shape {raw.shape}"
            )
    start, stop = parse_z_range(spec.z_range, raw.shape[0], f"--{role}-z")
    zs = list(range(start, stop))
    check_finite(raw, zs)  # a NaN would become NaN weights or batch-norm statistics
    if labels is not None and not any(np.any(labels.read(z)) for z in zs):
        raise EmdaError(f"{spec.labels}: no foreground voxels in the {role} labels used")
    return raw, labels, zs
