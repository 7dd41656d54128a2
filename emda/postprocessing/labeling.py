"""Connected components of a volume of any size, block by block, in bounded memory.

Each block (``depth`` slices of at most ``block_size`` x ``block_size`` pixels) is
labelled with :func:`scipy.ndimage.label`, its labels offset so that every provisional
label is unique in the volume, and written to a temporary zarr array. Objects that
cross a block boundary carry one provisional label per block: each pair of touching
foreground voxels across a boundary face joins their labels (face connectivity, the
same structure ``ndimage.label`` uses inside a block), and the joined labels are
resolved as the connected components of that small graph
(:func:`scipy.sparse.csgraph.connected_components`). A second pass rewrites every
block through one lookup table from provisional to final labels, so the result is the
partition a whole-volume ``ndimage.label`` gives (IDs numbered in block order).

Memory holds one block, and a table of one entry per provisional label.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Block:
    z: slice
    y: slice
    x: slice

    @property
    def index(self) -> tuple[slice, slice, slice]:
        return (self.z, self.y, self.x)


def plan_blocks(shape: tuple[int, int, int], depth: int, size: int) -> list[Block]:
    """Blocks in z, then y, then x order: every block's lower neighbours come first."""
    d, h, w = shape
    return [
        Block(slice(z, min(z + depth, d)), slice(y, min(y + size, h)), slice(x, min(x + size, w)))
        for z in range(0, d, depth)
        for y in range(0, h, size)
        for x in range(0, w, size)
    ]


def structure(connect_z: bool) -> np.ndarray:
    """Face connectivity: 6 neighbours in 3D, or 4 in each slice when z does not connect."""
    s = ndimage.generate_binary_structure(3, 1)
    if not connect_z:
        s[0] = s[2] = False
    return s


@dataclass
class Components:
    """The result of :func:`label_blocks`: final label per provisional one, and sizes."""

    lookup: np.ndarray  # provisional label -> final label (0: background or removed)
    sizes: np.ndarray  # voxels per final label (index 0 unused)
    removed: int  # objects smaller than the minimum size

    @property
    def count(self) -> int:
        return len(self.sizes) - 1


def _faces(block: Block, connect_z: bool) -> Iterator[tuple[int, tuple]]:
    """(axis, index of the plane just before the block along it) for each lower face."""
    for axis, s in enumerate(block.index):
        if s.start == 0 or (axis == 0 and not connect_z):
            continue
        before = list(block.index)
        before[axis] = slice(s.start - 1, s.start)
        yield axis, tuple(before)


def label_blocks(
    read_mask: Callable[[Block], np.ndarray],
    shape: tuple[int, int, int],
    connect_z: bool,
    min_voxels: int = 0,
    depth: int = 64,
    size: int = 1024,
    workdir: str | Path | None = None,
    progress: Progress | None = None,
) -> tuple[Components, Callable[[Block], np.ndarray], Callable[[], None]]:
    """Label the mask that ``read_mask(block)`` returns, block by block.

    Returns the components, ``read_labels(block)`` (final labels of a block, uint32 or
    uint64 as the count needs) and ``cleanup()`` (removes the temporary array; call it
    when done reading).
    """
    import zarr

    blocks = plan_blocks(shape, depth, size)
    tmp = Path(tempfile.mkdtemp(prefix=".emda-labels-", dir=workdir))
    try:
        provisional = zarr.create_array(
            store=str(tmp / "provisional.zarr"), shape=shape, dtype="uint64",
            chunks=(1, min(size, shape[1]), min(size, shape[2])), fill_value=0,
        )  # fmt: skip
        s = structure(connect_z)
        counts: list[np.ndarray] = [np.zeros(1, np.int64)]  # label 0: background
        pairs: list[np.ndarray] = []
        offset = 0
        for done, block in enumerate(blocks, 1):
            labels, n = ndimage.label(read_mask(block), structure=s)
            counts.append(np.bincount(labels.ravel(), minlength=n + 1)[1:])
            labels = labels.astype(np.uint64)
            labels[labels > 0] += np.uint64(offset)
            provisional[block.index] = labels
            for axis, before in _faces(block, connect_z):
                a = np.asarray(provisional[before]).ravel()
                b = np.take(labels, 0, axis=axis).ravel()
                touch = (a > 0) & (b > 0)
                if touch.any():
                    pairs.append(np.unique(np.stack([a[touch], b[touch]], 1), axis=0))
            offset += n
            if progress:
                progress(done, 2 * len(blocks))
        components = _resolve(np.concatenate(counts), pairs, offset, min_voxels)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    lookup = components.lookup

    def read_labels(block: Block) -> np.ndarray:
        return lookup[np.asarray(provisional[block.index])]

    return components, read_labels, lambda: shutil.rmtree(tmp, ignore_errors=True)


def _resolve(counts: np.ndarray, pairs: list[np.ndarray], total: int, min_voxels: int):
    """Join provisional labels touching across faces; drop small objects; number the rest
    1..K in order of their first provisional label."""
    root = np.arange(total + 1, dtype=np.int64)
    if pairs:
        edges = np.concatenate(pairs).astype(np.int64)
        nodes, inverse = np.unique(edges, return_inverse=True)
        inverse = inverse.reshape(edges.shape)
        graph = coo_matrix((np.ones(len(edges)), (inverse[:, 0], inverse[:, 1])),
                           shape=(len(nodes), len(nodes)))  # fmt: skip
        _, component = connected_components(graph, directed=False)
        # every node of a component maps to the component's smallest provisional label
        first = np.full(component.max() + 1, np.iinfo(np.int64).max)
        np.minimum.at(first, component, nodes)
        root[nodes] = first[component]
    sizes = np.bincount(root, weights=counts, minlength=total + 1).astype(np.int64)
    keep = np.zeros(total + 1, bool)
    keep[1:] = (root[1:] == np.arange(1, total + 1)) & (sizes[1:] >= max(min_voxels, 1))
    numbered = np.cumsum(keep)  # final label of each kept root, 1..K
    count = int(numbered[-1])
    dtype = np.uint32 if count < np.iinfo(np.uint32).max else np.uint64
    lookup = np.where(keep[root], numbered[root], 0).astype(dtype)
    roots = np.flatnonzero(root[1:] == np.arange(1, total + 1)) + 1
    removed = int(np.count_nonzero(sizes[roots] < max(min_voxels, 1)))
    final_sizes = np.zeros(count + 1, np.int64)
    final_sizes[numbered[keep]] = sizes[keep]
    return Components(lookup, final_sizes, removed)
