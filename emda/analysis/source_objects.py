"""The size of the source's mitochondria, recorded at training so ``emda instances`` can
drop specks on any target without reading a target label.

A prediction's connected components include specks a few voxels large, which swamp an
object count (hundreds of specks beside a few dozen mitochondria). Mitochondria have a
biological size, which the labelled source shows: objects under
``MIN_SIZE_FRACTION`` of the source's median object volume (nm^3, so pixel sizes may
differ) are not mitochondria. The median is over every labelled object, those cut by the
volume's border too, which only lowers it: a conservative bound.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from emda.io.volume import Volume

#: objects under this fraction of the source's median mitochondrion are specks
MIN_SIZE_FRACTION = 0.1


def object_volumes(labels: Volume, zs: Sequence[int], voxel_size) -> np.ndarray:
    """Volume in nm^3 of every connected object of a {0, 1} label volume on slices ``zs``
    (a contiguous range), block by block."""
    from emda.postprocessing.instances import BLOCK_DEPTH, BLOCK_SIZE, connects_across_z
    from emda.postprocessing.labeling import label_blocks

    first = zs[0]
    shape = (len(zs), *labels.shape[1:])

    def read_mask(block):
        z = slice(block.z.start + first, block.z.stop + first)
        return labels.read(z, block.y, block.x) > 0

    components, _, cleanup = label_blocks(read_mask, shape, connects_across_z(voxel_size), 0,
                                          BLOCK_DEPTH, BLOCK_SIZE)  # fmt: skip
    cleanup()
    return components.sizes[1:] * float(np.prod(voxel_size))


def source_objects(sources: Sequence[tuple[Volume, Volume, Sequence[int]]]) -> dict | None:
    """``{"objects": n, "median_nm3": m}`` over the labelled objects of every source
    (raw, labels, slices used); None when a source has no voxel size."""
    volumes = []
    for raw, labels, zs in sources:
        if raw.voxel_size is None or not zs:
            return None
        volumes.append(object_volumes(labels, zs, raw.voxel_size))
    found = np.concatenate(volumes) if volumes else np.zeros(0)
    if not len(found):
        return None
    return {"objects": len(found), "median_nm3": float(np.median(found))}


def default_min_size(record: dict | None) -> float | None:
    """The minimum object size (nm^3) a prediction's source record implies, or None."""
    if not record or not record.get("median_nm3"):
        return None
    return MIN_SIZE_FRACTION * float(record["median_nm3"])


def recorded(training: dict) -> dict | None:
    """The source record of a run, or of the run it was recalibrated or finetuned from."""
    while training is not None:
        if "source_objects" in training:
            return training["source_objects"]
        training = training.get("base_training")
    return None
