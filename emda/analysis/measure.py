"""`emda measure`: one row of measurements per object of a label image, block by block.

Every quantity is a sum over an object's voxels (counts, coordinates, their products,
intensities, exposed faces), accumulated block by block with ``np.bincount``, so a
volume of any size is measured in bounded memory and an object split over blocks is
measured whole. Lengths are in nm, from the voxel size.

- ``volume_nm3``: voxel count x voxel volume.
- ``surface_nm2``: the area of the voxel faces an object exposes to anything that is
  not itself (background, another object, the volume's edge), each face weighted by its
  own area. It is an estimate: on a smooth surface voxel faces overestimate the area,
  by up to ~50 % (a digitised sphere: 1.5x), less on a flat surface along an axis.
- ``axis_*_nm``: full axis lengths of the solid ellipsoid with the object's second
  moments (2 sqrt(5 eigenvalue) of the covariance of its voxel centres, in nm: a sphere
  of diameter D gives D three times);
  ``elongation`` = major / minor axis (1 for a sphere; an object one voxel thick has
  no minor axis, so it is reported against one voxel's extent).
- ``touches_border``: the object reaches the edge of the volume, so it is cut and its
  measurements are of the part inside.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from emda.analysis.object_ids import ObjectSums, local_ids
from emda.errors import EmdaError
from emda.io.volume import Volume

BLOCK_DEPTH = 32
BLOCK_SIZE = 1024
MOMENTS = ("z", "y", "x", "zz", "yy", "xx", "zy", "zx", "yx")
COLUMNS = ("id", "voxels", "volume_nm3", "surface_nm2", "centroid_z_nm", "centroid_y_nm",
           "centroid_x_nm", "z_min", "y_min", "x_min", "z_max", "y_max", "x_max",
           "axis_major_nm", "axis_middle_nm", "axis_minor_nm", "elongation",
           "touches_border")  # fmt: skip


def check_labels(volume: Volume) -> None:
    if volume.dtype.kind not in "iu":
        raise EmdaError(f"{volume.path}: values of type {volume.dtype} are not a label image "
                        "(integers); make one with emda instances")  # fmt: skip


def measure(
    labels: str, raw: str | None = None, *, key: str | None = None, voxel_size=None
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """:func:`measure_labels` of the label image at ``labels`` (and the image ``raw``);
    ``voxel_size`` (z, y, x nm) overrides the file's."""
    from emda.io.volume import open_volume

    return measure_labels(open_volume(labels, key, voxel_size),
                          open_volume(raw) if raw else None)  # fmt: skip


def measure_labels(
    labels: Volume, raw: Volume | None = None, progress=None
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """The measurements of every object in ``labels`` (columns of :data:`COLUMNS`, and
    the mean intensity of ``raw`` when given), in object-id order."""
    check_labels(labels)
    if raw is not None and raw.shape != labels.shape:
        raise EmdaError(f"--raw {raw.path}: shape {raw.shape} differs from the labels' "
                        f"{labels.shape}")  # fmt: skip
    vz, vy, vx = labels.voxel_size or (1.0, 1.0, 1.0)
    face_area = (vy * vx, vz * vx, vz * vy)  # faces normal to z, y, x
    d, h, w = labels.shape
    sums = ObjectSums()
    blocks = [(z, y, x) for z in range(0, d, BLOCK_DEPTH) for y in range(0, h, BLOCK_SIZE)
              for x in range(0, w, BLOCK_SIZE)]  # fmt: skip
    for done, (z, y, x) in enumerate(blocks, 1):
        # one plane more on the high side of each axis: the faces shared with the next block
        z1, y1, x1 = min(z + BLOCK_DEPTH, d), min(y + BLOCK_SIZE, h), min(x + BLOCK_SIZE, w)
        halo = labels.read(slice(z, min(z1 + 1, d)), slice(y, min(y1 + 1, h)),
                           slice(x, min(x1 + 1, w)))  # fmt: skip
        ids, index = local_ids(halo, labels.path)  # per-block indexes: IDs may be huge
        block = index[: z1 - z, : y1 - y, : x1 - x]
        local = _Local(len(ids))
        _accumulate(local, block, (z, y, x), index, (z1 == d, y1 == h, x1 == w))
        if raw is not None:
            local.add("intensity", block.ravel(), raw.read(slice(z, z1), slice(y, y1),
                      slice(x, x1)).astype(np.float64).ravel())  # fmt: skip
        rows = sums.rows(ids)
        for name, values in local.sums.items():
            sums.add(name, rows, values)
        sums.minimum("low", rows, local.low)
        sums.maximum("high", rows, local.high)
        if progress:
            progress(done, len(blocks))
    return _rows(sums, labels.shape, (vz, vy, vx), face_area, raw is not None)


class _Local:
    """One block's sums, indexed by the block's local object indexes."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.sums: dict[str, np.ndarray] = {}
        self.low = np.full((size, 3), np.iinfo(np.int64).max)
        self.high = np.full((size, 3), -1)

    def add(self, name: str, index: np.ndarray, weights: np.ndarray | None = None) -> None:
        sums = np.bincount(index, weights, minlength=self.size).astype(np.float64)
        self.sums[name] = self.sums.get(name, 0) + sums


def _accumulate(sums: _Local, block, origin, halo, at_end) -> None:
    flat = block.ravel()
    sums.add("voxels", flat)
    coords = np.indices(block.shape, dtype=np.float64).reshape(3, -1)
    coords += np.asarray(origin, np.float64)[:, None]
    c = dict(zip("zyx", coords))
    for name in MOMENTS:
        sums.add(name, flat, c[name[0]] if len(name) == 1 else c[name[0]] * c[name[1]])
    # C-fast: one slice tuple per index (shifted by one: find_objects skips 0)
    for index, box in enumerate(ndimage.find_objects(block + 1)):
        if box is not None:
            sums.low[index] = [s.start + o for s, o in zip(box, origin)]
            sums.high[index] = [s.stop - 1 + o for s, o in zip(box, origin)]
    for axis in range(3):  # exposed faces, low side and high side of each voxel
        n = block.shape[axis]
        # the low side: the block's first plane against the volume edge (origin 0) is
        # exposed; against the previous block it was counted there as that block's high side
        inner_a = np.take(block, range(1, n), axis=axis)
        inner_b = np.take(block, range(0, n - 1), axis=axis)
        exposed = inner_a != inner_b
        for side in (inner_a, inner_b):
            sums.add("faces" + "zyx"[axis], side[exposed].ravel())
        if origin[axis] == 0:
            sums.add("faces" + "zyx"[axis], np.take(block, 0, axis=axis).ravel())
        last = np.take(block, n - 1, axis=axis)
        if at_end[axis]:  # the volume's far edge
            sums.add("faces" + "zyx"[axis], last.ravel())
        else:
            after = np.take(halo, n, axis=axis)[
                tuple(slice(0, s) for i, s in enumerate(block.shape) if i != axis)
            ]
            differs = last != after
            sums.add("faces" + "zyx"[axis], last[differs].ravel())
            sums.add("faces" + "zyx"[axis], after[differs].ravel())


def _rows(sums: ObjectSums, shape, voxel, area, with_raw: bool):
    voxels = sums.get("voxels")
    rows_of = np.flatnonzero((voxels > 0) & (sums.ids > 0))
    ids = sums.ids[rows_of]
    a = {name: array[rows_of] for name, array in sums.arrays.items()}
    n = a["voxels"]
    scale = np.asarray(voxel)
    centre = np.stack([a[k] / n for k in "zyx"], 1)
    cov = np.empty((len(ids), 3, 3))
    for i, j, name in ((0, 0, "zz"), (1, 1, "yy"), (2, 2, "xx"), (0, 1, "zy"), (0, 2, "zx"),
                       (1, 2, "yx")):  # fmt: skip
        value = (a[name] / n - centre[:, i] * centre[:, j]) * scale[i] * scale[j]
        cov[:, i, j] = cov[:, j, i] = value
    axes = 2 * np.sqrt(5 * np.clip(np.linalg.eigvalsh(cov)[:, ::-1], 0, None))
    surface = sum(a.get("faces" + "zyx"[k], np.zeros(len(ids))) * area[k] for k in range(3))
    low, high = a["low"], a["high"]
    floor = float(np.min(scale))  # one voxel's extent
    rows = {
        "id": ids, "voxels": n.astype(np.int64), "volume_nm3": n * float(np.prod(scale)),
        "surface_nm2": surface, **{f"centroid_{k}_nm": centre[:, i] * scale[i]
                                   for i, k in enumerate("zyx")},
        **{f"{k}_min": low[:, i] for i, k in enumerate("zyx")},
        **{f"{k}_max": high[:, i] for i, k in enumerate("zyx")},
        "axis_major_nm": axes[:, 0], "axis_middle_nm": axes[:, 1], "axis_minor_nm": axes[:, 2],
        "elongation": axes[:, 0] / np.maximum(axes[:, 2], floor),
        "touches_border": ((low == 0) | (high == np.asarray(shape) - 1)).any(axis=1),
    }  # fmt: skip
    intensity = a["intensity"] / n if with_raw else None
    return rows, intensity
