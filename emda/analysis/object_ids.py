"""Per-object sums over a label image whose IDs may be any non-negative integers.

Label images from other tools are not always numbered 1..N: IDs can be sparse, large
(hashes, block offsets) or beyond int64 in uint64. Indexing per-object arrays by the ID
itself would need memory for the largest ID, so each block's IDs are first turned into
local indexes 0..n-1 (:func:`local_ids`) and per-object sums are kept in
:class:`ObjectSums`, keyed by the sorted IDs seen so far. Memory grows with the number
of objects, never with the size of their IDs.
"""

from __future__ import annotations

import numpy as np

from emda.errors import EmdaError

DENSE_LIMIT = 1 << 24  # below this largest ID a lookup table beats sorting the block


def local_ids(labels: np.ndarray, path: object = "labels") -> tuple[np.ndarray, np.ndarray]:
    """The sorted IDs present in ``labels`` (uint64) and each voxel's index into them
    (int64, same shape): ``ids[index] == labels``."""
    if labels.dtype.kind not in "iu":
        raise EmdaError(f"{path}: values of type {labels.dtype} are not a label image (integers)")
    if labels.size == 0:
        return np.zeros(0, np.uint64), np.zeros(labels.shape, np.int64)
    if labels.dtype.kind == "i" and labels.min() < 0:
        raise EmdaError(f"{path}: negative labels; objects are numbered 1, 2, ...")
    top = int(labels.max())
    if top < DENSE_LIMIT:
        flat = labels.astype(np.int64, copy=False)
        present = np.flatnonzero(np.bincount(flat.ravel(), minlength=top + 1))
        lookup = np.zeros(top + 1, np.int64)
        lookup[present] = np.arange(len(present))
        return present.astype(np.uint64), lookup[flat]
    ids, index = np.unique(labels.astype(np.uint64, copy=False), return_inverse=True)
    return ids, index.reshape(labels.shape).astype(np.int64)


class ObjectSums:
    """Named per-object arrays (sums, minima or maxima), keyed by object ID, merged block
    by block: ``rows = sums.rows(ids)`` once per block, then ``sums.add(name, rows,
    values)``. ``ids`` stays sorted; arrays may have extra trailing dimensions."""

    def __init__(self) -> None:
        self.ids = np.zeros(0, np.uint64)
        self.arrays: dict[str, np.ndarray] = {}
        self._fill: dict[str, float] = {}

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """Rows of ``ids`` (sorted, unique), adding rows for IDs not seen before."""
        new = np.union1d(self.ids, ids)
        if len(new) != len(self.ids):
            where = np.searchsorted(new, self.ids)
            for name, array in self.arrays.items():
                grown = np.full((len(new), *array.shape[1:]), self._fill[name], array.dtype)
                grown[where] = array
                self.arrays[name] = grown
            self.ids = new
        return np.searchsorted(self.ids, ids)

    def _array(self, name: str, like: np.ndarray, fill: float) -> np.ndarray:
        if name not in self.arrays:
            self.arrays[name] = np.full((len(self.ids), *like.shape[1:]), fill, like.dtype)
            self._fill[name] = fill
        return self.arrays[name]

    def add(self, name: str, rows: np.ndarray, values: np.ndarray) -> None:
        self._array(name, values, 0)[rows] += values

    def minimum(self, name: str, rows: np.ndarray, values: np.ndarray) -> None:
        array = self._array(name, values, np.iinfo(np.int64).max)
        array[rows] = np.minimum(array[rows], values)

    def maximum(self, name: str, rows: np.ndarray, values: np.ndarray) -> None:
        array = self._array(name, values, -1)
        array[rows] = np.maximum(array[rows], values)

    def get(self, name: str) -> np.ndarray:
        """The array ``name`` for every ID seen (zeros for a name never added)."""
        return self.arrays.get(name, np.zeros(len(self.ids)))
