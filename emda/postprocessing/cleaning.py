"""`emda clean`: remove specks and fill holes in a thresholded prediction, slice by slice.

A network trained on another microscope leaves two kinds of error a mitochondrion
cannot have: specks far smaller than any mitochondrion, and mitochondria filled in
fragments along their cristae, i.e. with holes. In a 2D section a mitochondrion is one
solid blob, so each slice of the mask is cleaned in 2D:

- connected components (8-connected) smaller than ``min_size`` pixels are removed,
  unless they touch the slice border (where a large object may show only its edge);
- enclosed background regions (holes, 4-connected, the complement's connectivity) of
  at most ``max_hole`` pixels are filled.

The sizes are read from labels a user has, typically the source's training labels
(:func:`sizes_from_labels`): ``min_size`` is the 1st percentile and ``max_hole`` the
median of the areas of the labelled objects that do not touch the slice border.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from emda.errors import EmdaError
from emda.evaluation.evaluate import binarize, check_threshold, parse_z_range, prediction_kind
from emda.io.volume import Volume, open_volume, read_labels
from emda.io.writer import all_or_nothing
from emda.safety.paths import check_output, refuse_writing_inputs
from emda.safety.validate import check_complete

MIN_SIZE_PERCENTILE = 1.0  # of the labelled objects' areas: smaller is a speck
MAX_HOLE_PERCENTILE = 50.0  # a hole larger than a typical mitochondrion is not inside one

EIGHT = np.ones((3, 3), bool)  # objects: diagonal neighbours touch
FOUR = ndimage.generate_binary_structure(2, 1)  # background: the complement's connectivity


@dataclass(frozen=True)
class CleaningSizes:
    min_size: int  # pixels; smaller components are removed (0: none)
    max_hole: int  # pixels; holes up to this area are filled (0: none)

    def __post_init__(self) -> None:
        if self.min_size < 0:
            raise EmdaError(f"--min-size {self.min_size}: must be >= 0 pixels")
        if self.max_hole < 0:
            raise EmdaError(f"--max-hole {self.max_hole}: must be >= 0 pixels")


@dataclass
class CleaningCounts:
    removed_objects: int = 0
    removed_pixels: int = 0
    filled_holes: int = 0
    filled_pixels: int = 0

    def __iadd__(self, other: CleaningCounts) -> CleaningCounts:
        for name in vars(self):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self


def _touching_border(labelled: np.ndarray) -> np.ndarray:
    edges = np.concatenate([labelled[0], labelled[-1], labelled[:, 0], labelled[:, -1]])
    return np.unique(edges[edges > 0])


def interior_object_areas(mask: np.ndarray) -> np.ndarray:
    """Areas in pixels of the 8-connected objects of a 2D mask that miss the border."""
    labelled, n = ndimage.label(mask, structure=EIGHT)
    areas = np.bincount(labelled.ravel(), minlength=n + 1)
    inside = np.ones(n + 1, bool)
    inside[0] = False
    inside[_touching_border(labelled)] = False
    return areas[inside]


def sizes_from_labels(labels: Volume, z_range: tuple[int, int] | None = None) -> CleaningSizes:
    """The cleaning sizes fixed by emda's rule, from a {0, 1} label volume."""
    start, stop = z_range or (0, labels.shape[0])
    areas = np.concatenate([interior_object_areas(labels.read(z) > 0) for z in range(start, stop)])
    if areas.size == 0:
        raise EmdaError(
            f"{labels.path}: no labelled object inside the slices (z {start}-{stop}) to "
            "read sizes from; give --min-size and --max-hole"
        )
    return CleaningSizes(
        min_size=round(float(np.percentile(areas, MIN_SIZE_PERCENTILE))),
        max_hole=round(float(np.percentile(areas, MAX_HOLE_PERCENTILE))),
    )


def clean_slice(mask: np.ndarray, sizes: CleaningSizes) -> tuple[np.ndarray, CleaningCounts]:
    """One 2D boolean mask cleaned: specks removed first, then holes filled."""
    out = mask.astype(bool, copy=True)
    counts = CleaningCounts()
    if sizes.min_size > 0 and out.any():
        labelled, n = ndimage.label(out, structure=EIGHT)
        areas = np.bincount(labelled.ravel(), minlength=n + 1)
        small = areas < sizes.min_size
        small[0] = False
        small[_touching_border(labelled)] = False
        if small.any():
            drop = small[labelled]
            out[drop] = False
            counts.removed_objects = int(small.sum())
            counts.removed_pixels = int(drop.sum())
    if sizes.max_hole > 0 and not out.all():
        labelled, n = ndimage.label(~out, structure=FOUR)
        areas = np.bincount(labelled.ravel(), minlength=n + 1)
        hole = areas <= sizes.max_hole
        hole[0] = False
        hole[_touching_border(labelled)] = False  # background open to the border
        if hole.any():
            fill = hole[labelled]
            out[fill] = True
            counts.filled_holes = int(hole.sum())
            counts.filled_pixels = int(fill.sum())
    return out, counts


def clean_volume(
    prediction: Volume,
    sizes: CleaningSizes,
    write: Callable[[int, np.ndarray], None],
    threshold: float = 0.5,
    progress: Callable[[int, int], None] | None = None,
) -> CleaningCounts:
    """Threshold ``prediction`` (probabilities or a mask) and hand ``write(z, mask)``
    each cleaned slice as uint8 {0, 1}; one slice in memory at a time."""
    check_threshold(threshold)
    kind = prediction_kind(prediction)
    total = CleaningCounts()
    depth = prediction.shape[0]
    for z in range(depth):
        mask = binarize(prediction.read(z), kind, threshold, f"{prediction.path} (z {z})")
        cleaned, counts = clean_slice(mask, sizes)
        total += counts
        write(z, cleaned.astype(np.uint8))
        if progress:
            progress(z + 1, depth)
    return total


@dataclass
class CleanSummary:
    sizes: CleaningSizes
    counts: CleaningCounts
    shape: tuple[int, int, int]
    seconds: float


def clean_prediction(
    prediction: str,
    mask: str,
    min_size: int | None = None,
    max_hole: int | None = None,
    sizes_from: str | None = None,
    sizes_z: str | None = None,
    threshold: float = 0.5,
    key: str | None = None,
    overwrite: bool = False,
    progress=None,
) -> CleanSummary:
    """Write ``prediction`` thresholded and cleaned (see above) to ``mask``.
    Sizes given by hand win over those read from ``sizes_from`` labels; an interrupted
    run leaves nothing behind."""
    check_threshold(threshold)
    if sizes_z is not None and sizes_from is None:
        raise EmdaError("--sizes-z: needs --sizes-from LABELS")
    if sizes_from is None and (min_size is None or max_hole is None):
        raise EmdaError(
            "emda clean needs --sizes-from LABELS (e.g. the source's training labels) "
            "or both --min-size and --max-hole"
        )
    by_hand = {k: v for k, v in (("min_size", min_size), ("max_hole", max_hole)) if v is not None}
    CleaningSizes(**{"min_size": 0, "max_hole": 0, **by_hand})  # fails early on a bad size
    volume = open_volume(prediction, key)
    check_complete(volume)
    refuse_writing_inputs({"--mask": mask}, [volume.location, sizes_from])
    check_output(mask, overwrite, "--mask")
    if sizes_from is None:
        sizes = CleaningSizes(**by_hand)
    else:
        labels = read_labels(sizes_from)
        z_range = parse_z_range(sizes_z, labels.shape[0], "--sizes-z")
        sizes = dataclasses.replace(sizes_from_labels(labels, z_range), **by_hand)
    start = time.perf_counter()
    attrs = {
        "emda_kind": "mask",
        "emda_clean": {**dataclasses.asdict(sizes), "threshold": threshold,
                       "sizes_from": sizes_from, "input": prediction},
    }  # fmt: skip
    with all_or_nothing() as open_writer:  # cleaning again is cheap, so nothing is kept
        writer = open_writer(mask, volume.shape, "uint8", volume.voxel_size, overwrite, attrs=attrs)
        counts = clean_volume(volume, sizes, writer.write, threshold, progress)
    return CleanSummary(sizes, counts, volume.shape, time.perf_counter() - start)
