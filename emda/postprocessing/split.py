"""Split touching mitochondria: a seeded watershed on each object's distance transform.

Two mitochondria that touch form one connected component, joined by a neck narrower
than either body. Inside an object the distance to its surface (in nm, from the voxel
size) peaks at each body's core and dips at the neck, so the parts where it exceeds
``SEED_FRACTION`` of the object's largest distance are one seed per body; a watershed
of the negated distance from those seeds gives each body its own label. On thick
sections the distance is taken within each slice, and the cores of one body join
across slices into one seed. One body (a
sphere, or a tube of even width, the common mitochondrion) yields one connected seed
and stays whole.

Each object is split on its own bounding box, so the result does not depend on how the
volume was cut into blocks; memory holds the largest object's box.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy import ndimage

SEED_FRACTION = 0.7  # of an object's largest inner distance: a seed is a body's core
LEVELS = 65535  # watershed_ift takes uint16 heights
ANISOTROPY = 2.0  # z-step over pixel size above which distances are taken per slice


def split_object(mask: np.ndarray, voxel_size, connect_z: bool) -> tuple[np.ndarray, int]:
    """Labels 1..n of the bodies of one object (``mask``, a bounding-box crop), and n."""
    structure = ndimage.generate_binary_structure(3, 1)
    if not connect_z:
        structure[0] = structure[2] = False
    sampling = voxel_size or (1.0, 1.0, 1.0)
    # thick sections (z-step over twice the pixel): distances within each slice, since a
    # 3D distance in coarse z steps gives seeds stacked in z and ring-shaped parts
    if not connect_z or sampling[0] > ANISOTROPY * min(sampling[1:]):
        distance = np.stack([ndimage.distance_transform_edt(m, sampling=sampling[1:])
                             for m in mask])  # fmt: skip
    else:
        distance = ndimage.distance_transform_edt(mask, sampling=sampling)
    seeds, count = ndimage.label(distance > SEED_FRACTION * distance.max(), structure=structure)
    if count <= 1:
        return mask.astype(np.int32), 1
    height = (LEVELS * (1 - distance / distance.max())).astype(np.uint16)
    height[~mask] = LEVELS
    markers = seeds.astype(np.int32)
    markers[~mask] = -1  # background floods last and is dropped
    parts = ndimage.watershed_ift(height, markers, structure=structure)
    parts[~mask] = 0
    return parts, count


def split_objects(read_mask, labels: Iterable[int], box, write, count: int, voxel_size,
                  connect_z: bool, record=None) -> int:  # fmt: skip
    """Split every object in ``labels``: ``box(label)`` is its bounding box,
    ``read_mask(label, box)`` its voxels there, ``write(box, mask, parts)`` stores its new
    labels. Returns the new object count (split parts take labels after ``count``).
    ``record(label, count)``, when given, is called after each object that was split, so
    an interrupted run can continue after it with that count."""
    for label in labels:
        where = box(label)
        mask = read_mask(label, where)
        parts, n = split_object(mask, voxel_size, connect_z)
        if n > 1:
            renumbered = np.where(parts == 1, label, count + parts - 1)
            write(where, mask, renumbered)
            count += n - 1
            if record:
                record(label, count)
    return count
