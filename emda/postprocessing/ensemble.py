"""`emda ensemble`: the voxel-wise mean of several predictions of one volume.

Models trained with different seeds (or methods) make partly different errors, and
their mean probability averages those out (nnU-Net ensembles its five folds the same
way); errors every member makes stay. Inputs are what `emda predict` writes: float
probabilities in [0, 1], uint8 probabilities stored as round(255 p), or binary masks
(their mean is a vote). Everything is read a slab of slices at a time, so volumes of any size fit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emda.errors import EmdaError
from emda.evaluation.evaluate import prediction_kind
from emda.inference.jobs import encode_prob
from emda.inference.settings import check_prediction_outputs
from emda.io.volume import Volume, open_volume
from emda.io.writer import all_or_nothing
from emda.safety.paths import check_output, refuse_writing_inputs
from emda.safety.validate import check_complete

SLAB = 8  # slices per read: a few MB per input for EM-sized slices


def check_members(volumes: Sequence[Volume]) -> None:
    """Fail before any work unless the predictions can be averaged voxel by voxel."""
    if len(volumes) < 2:
        raise EmdaError("emda ensemble needs at least two predictions to average")
    first = volumes[0]
    seen: set[Path] = set()
    for volume in volumes:
        check_complete(volume)
        name = str(volume.path)
        if Path(name).resolve() in seen:  # the same file, however it was spelled
            raise EmdaError(f"{name}: given twice; an ensemble averages different predictions")
        seen.add(Path(name).resolve())
        if volume.shape != first.shape:
            raise EmdaError(
                f"{name}: shape {volume.shape} differs from {first.path}'s {first.shape}"
            )
        a, b = volume.voxel_size, first.voxel_size
        if a and b and not np.allclose(a, b, rtol=1e-3):
            raise EmdaError(f"{name}: voxel size {a} nm differs from {first.path}'s {b} nm")
        if volume.dtype.kind not in "fuib":
            raise EmdaError(f"{name}: dtype {volume.dtype} is not a prediction")


def to_probability(block: np.ndarray, kind: str, source: str) -> np.ndarray:
    """A stored prediction block as float32 probabilities in [0, 1]."""
    if kind == "mask":
        return (block != 0).astype(np.float32)
    if block.dtype.kind == "f":
        if not np.all(np.isfinite(block)):
            raise EmdaError(f"{source}: prediction contains NaN or Inf values")
        if block.size and (block.min() < 0 or block.max() > 1):
            raise EmdaError(
                f"{source}: values outside [0, 1]; ensemble probabilities, not logits or labels"
            )
        return block.astype(np.float32, copy=False)
    if block.size and (block.min() < 0 or block.max() > 255):
        raise EmdaError(f"{source}: integers outside 0-255; expected round(255 p) or a mask")
    return block.astype(np.float32) / 255.0


def mean_probability(
    volumes: Sequence[Volume],
    write: Callable[[slice, np.ndarray], None],
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Hand ``write(z_slab, mean)`` the members' mean probability, slab by slab."""
    check_members(volumes)
    kinds = [prediction_kind(v) for v in volumes]
    depth = volumes[0].shape[0]
    for z0 in range(0, depth, SLAB):
        z = slice(z0, min(depth, z0 + SLAB))
        total = np.zeros((z.stop - z.start, *volumes[0].shape[1:]), np.float32)
        for volume, kind in zip(volumes, kinds, strict=True):
            total += to_probability(volume.read(z), kind, f"{volume.path} (z {z.start}-{z.stop})")
        write(z, total / len(volumes))
        if progress:
            progress(z.stop, depth)


@dataclass
class EnsembleSummary:
    members: int
    shape: tuple[int, int, int]
    seconds: float


def ensemble_predictions(
    inputs: list[str],
    output: str | None,
    mask: str | None = None,
    threshold: float = 0.5,
    prob_dtype: str = "uint8",
    overwrite: bool = False,
    progress=None,
) -> EnsembleSummary:
    """Write the mean probability of several predictions of one volume (``output``)
    and/or its mask at ``threshold``; an interrupted run leaves nothing behind."""
    check_prediction_outputs(output, mask, threshold, prob_dtype)
    targets = {option: path for option, path in (("--output", output), ("--mask", mask)) if path}
    start = time.perf_counter()
    volumes = [open_volume(path) for path in inputs]
    check_members(volumes)
    refuse_writing_inputs(targets, [v.location for v in volumes])
    for option, path in targets.items():
        check_output(path, overwrite, option)
    shape, voxel = volumes[0].shape, volumes[0].voxel_size
    attrs = {"emda_ensemble_inputs": [str(p) for p in inputs]}
    # averaging again is cheap: an interrupted run keeps nothing to resume
    with all_or_nothing() as open_writer:
        writers = {
            kind: open_writer(path, shape, dtype, voxel, overwrite,
                              attrs={**attrs, "emda_kind": name})
            for kind, path, dtype, name in (
                ("prob", output, prob_dtype, "probability"),
                ("mask", mask, "uint8", "mask"),
            )
            if path
        }  # fmt: skip

        def write(z: slice, mean: np.ndarray) -> None:
            if "prob" in writers:
                writers["prob"].write(z, encode_prob(mean, prob_dtype))
            if "mask" in writers:
                writers["mask"].write(z, (mean >= threshold).astype(np.uint8))

        mean_probability(volumes, write, progress)
    return EnsembleSummary(len(volumes), shape, time.perf_counter() - start)
