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

With a ``state`` directory the work survives an interruption: each labelled block is
recorded there (its sizes, boundary pairs and object boxes) after its provisional labels
are stored, so a second call with the same directory labels only the blocks that have no
record yet.
"""

from __future__ import annotations

import os
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
    # bounding box per final label: rows (z0, y0, x0, z1, y1, x1), row 0 unused
    boxes: np.ndarray | None = None

    @property
    def count(self) -> int:
        return len(self.sizes) - 1

    def box(self, label: int) -> tuple[slice, slice, slice]:
        assert self.boxes is not None
        lo, hi = self.boxes[label, :3], self.boxes[label, 3:]
        return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))  # type: ignore[return-value]


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
    state: Path | None = None,
) -> tuple[Components, Callable[[Block], np.ndarray], Callable[[], None]]:
    """Label the mask that ``read_mask(block)`` returns, block by block.

    Returns the components (with each object's bounding box), ``read_labels(block)``
    (final labels of a block, uint32 or uint64 as the count needs) and ``cleanup()``.
    Without ``state`` the work goes to a temporary directory under ``workdir`` that
    ``cleanup()`` removes (call it when done reading). With ``state`` it goes there and
    stays (the caller removes it), and blocks recorded there by an interrupted call are
    not labelled again.
    """
    import zarr

    blocks = plan_blocks(shape, depth, size)
    tmp = state or Path(tempfile.mkdtemp(prefix=".emda-labels-", dir=workdir))
    records = tmp / "blocks"
    try:
        records.mkdir(parents=True, exist_ok=True)
        address = str(tmp / "provisional.zarr")
        provisional = (
            zarr.open_array(address, mode="r+") if (tmp / "provisional.zarr").exists()
            else zarr.create_array(store=address, shape=shape, dtype="uint64", fill_value=0,
                                   chunks=(1, min(size, shape[1]), min(size, shape[2])))
        )  # fmt: skip
        s = structure(connect_z)
        counts: list[np.ndarray] = [np.zeros(1, np.int64)]  # label 0: background
        boxes: list[np.ndarray] = [np.zeros((1, 6), np.int64)]
        pairs: list[np.ndarray] = []
        offset = 0
        for done, block in enumerate(blocks, 1):
            record = records / f"{done:06d}.npz"
            if not record.exists():  # blocks run in order: lower neighbours are stored
                _label_block(read_mask, block, s, offset, provisional, connect_z, record)
            with np.load(record) as saved:
                counts.append(saved["counts"])
                boxes.append(saved["boxes"])
                if len(saved["pairs"]):
                    pairs.append(saved["pairs"])
            offset += len(counts[-1])
            if progress:
                progress(done, 2 * len(blocks))
        components = _resolve(np.concatenate(counts), pairs, offset, min_voxels)
        components.boxes = _final_boxes(np.concatenate(boxes), components)
    except BaseException:
        if state is None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    lookup = components.lookup

    def read_labels(block: Block) -> np.ndarray:
        return lookup[np.asarray(provisional[block.index])]

    def cleanup() -> None:
        if state is None:
            shutil.rmtree(tmp, ignore_errors=True)

    return components, read_labels, cleanup


def _label_block(read_mask, block: Block, s, offset: int, provisional, connect_z: bool,
                 record: Path) -> None:  # fmt: skip
    """Label one block, store its provisional labels, then record what resolving needs:
    voxels and box per label, and label pairs touching across its lower faces."""
    labels, n = ndimage.label(read_mask(block), structure=s)
    counts = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    origin = np.array([block.z.start, block.y.start, block.x.start])
    boxes = np.zeros((n, 6), np.int64)
    for i, box in enumerate(ndimage.find_objects(labels)):
        if box is not None:
            boxes[i] = [*(b.start for b in box), *(b.stop for b in box)]
    boxes += np.concatenate([origin, origin])
    labels = labels.astype(np.uint64)
    labels[labels > 0] += np.uint64(offset)
    provisional[block.index] = labels
    found = []
    for axis, before in _faces(block, connect_z):
        a = np.asarray(provisional[before]).ravel()
        b = np.take(labels, 0, axis=axis).ravel()
        touch = (a > 0) & (b > 0)
        if touch.any():
            found.append(np.unique(np.stack([a[touch], b[touch]], 1), axis=0))
    pairs = np.concatenate(found) if found else np.zeros((0, 2), np.uint64)
    partial = record.with_name(record.name + ".partial")
    with open(partial, "wb") as fh:  # a record appears whole or not at all
        np.savez(fh, counts=counts, boxes=boxes, pairs=pairs)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(partial, record)


def _final_boxes(boxes: np.ndarray, components: Components) -> np.ndarray:
    """Union of the provisional labels' boxes for each final label."""
    final = np.zeros((components.count + 1, 6), np.int64)
    final[:, :3] = np.iinfo(np.int64).max
    ids = components.lookup.astype(np.int64)
    np.minimum.at(final[:, :3], ids, boxes[:, :3])
    np.maximum.at(final[:, 3:], ids, boxes[:, 3:])
    final[0] = 0
    return final


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
