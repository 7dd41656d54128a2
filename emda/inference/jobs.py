"""Predicting one block of a volume: the unit of work that single-process and
Dask-distributed prediction share, so both produce the same output.

A :class:`PredictJob` is small and picklable (paths and settings, no arrays or
weights). :func:`run_block` loads the model, opens the input and the partial outputs the
first time a process sees a job and keeps them for the job's next blocks, so a Dask
worker loads the model once, not once per block.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np

from emda.data.normalization import IntensityRange
from emda.errors import EmdaError
from emda.inference.blocks import Block

VoxelSize = tuple[float, float, float]


@dataclass(frozen=True)
class PredictJob:
    checkpoint: str
    input: str
    key: str | None
    voxel_size: VoxelSize | None
    intensity: tuple[float, float]
    tile_size: int
    overlap: float
    batch_size: int
    blend: str
    tta: bool
    device: str
    prob_path: str | None  # partial zarr arrays the blocks are written into
    prob_dtype: str
    mask_path: str | None
    threshold: float
    threads: int | None = None  # torch threads in a worker process
    axes: tuple[int, int, int] = (0, 1, 2)  # the plane stack predicted (emda.data.planes)
    zoom: float = 1.0  # input pixel size / the model's (emda.data.resample)
    channel: int | None = None  # of a multichannel OME-Zarr input
    precision: str = "float32"  # the network's arithmetic, resolved (emda.precision)


# one job per process at a time: (predictor, input volume, {kind: output array})
_loaded: dict[PredictJob, tuple[Any, Any, dict[str, Any]]] = {}
models_loaded = 0  # how often this process read a checkpoint (a worker: once per job)
_lock = threading.Lock()  # a Dask worker with several threads loads a job once


def load(job: PredictJob, predictor=None, volume=None, outputs=None):
    """What ``job`` needs in this process, loaded once; the arguments let the process
    that planned the job hand over what it already has open."""
    with _lock:
        return _load(job, predictor, volume, outputs)


def _load(job, predictor, volume, outputs):
    if job not in _loaded:
        import torch
        import zarr

        from emda.device import resolve_device
        from emda.inference.sliding_window import SlidingWindowPredictor
        from emda.io.volume import open_volume
        from emda.model.checkpoint import load_checkpoint
        from emda.precision import dtype_of

        _loaded.clear()
        if job.threads:
            torch.set_num_threads(job.threads)
        if predictor is None:
            global models_loaded
            models_loaded += 1
            model = load_checkpoint(job.checkpoint).build_model()
            predictor = SlidingWindowPredictor(
                model, resolve_device(job.device), job.tile_size, job.overlap, job.batch_size,
                job.blend, tta=job.tta, zoom=job.zoom, precision=dtype_of(job.precision),
            )  # fmt: skip
        if volume is None:
            volume = open_volume(job.input, job.key, job.voxel_size, job.channel).permuted(job.axes)
        if outputs is None:
            outputs = {
                kind: zarr.open_array(path, mode="r+")
                for kind, path in (("prob", job.prob_path), ("mask", job.mask_path))
                if path
            }
        _loaded[job] = (predictor, volume, outputs)
    return _loaded[job]


def run_block(job: PredictJob, block: Block) -> str:
    """Predict ``block`` and write its region of every output; returns the block's key."""
    predictor, volume, outputs = load(job)
    image = volume.read(block.z, block.read_y, block.read_x)
    if image.dtype.kind == "f" and not np.all(np.isfinite(image)):
        raise EmdaError(f"{volume.path}: slice z={block.z} contains NaN or Inf values")
    prob = predictor.predict_slice(IntensityRange(*job.intensity).apply(image))[block.inner]
    region = (block.z, block.y, block.x)
    if "prob" in outputs:
        outputs["prob"][region] = encode_prob(prob, job.prob_dtype)
    if "mask" in outputs:
        outputs["mask"][region] = (prob >= job.threshold).astype(np.uint8)
    return block.key


class ProbDtype(str, Enum):
    uint8 = "uint8"  # round(255 p): a quarter of float32's size
    float32 = "float32"


def encode_prob(prob: np.ndarray, prob_dtype: str) -> np.ndarray:
    """Probabilities as stored: uint8 holds round(255 p)."""
    if prob_dtype == "uint8":
        return np.round(prob * 255).astype(np.uint8)
    return prob.astype(np.float32)


def release() -> None:
    """Forget the loaded job (the model, open files) in this process."""
    _loaded.clear()
