"""Write volumes so that nothing half-written ever appears under an output's name.

:class:`VolumeWriter` writes block by block into a partial zarr array beside the
output and turns it into the output (zarr or OME-Zarr by a rename; TIFF, HDF5 or MRC
written whole by :mod:`emda.io.file_writers`) only on ``commit``;
:func:`all_or_nothing` commits a group of writers together or removes them all.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from emda.errors import EmdaError
from emda.io.file_writers import check_file_output, file_kind, write_file
from emda.io.volume import VoxelSize, is_zarr, split_address
from emda.safety.locks import output_lock
from emda.safety.paths import check_output
from emda.safety.validate import COMPLETE_ATTR

PARTIAL_SUFFIX = ".emda-partial"
DONE_NAME = "emda_done.txt"
JOB_ATTR = "emda_job"


class VolumeWriter:
    """Write a volume block by block; it appears at ``path`` only when complete.

    Slices go to a partial zarr array next to the output (``out.emda-partial.zarr``
    for ``out.zarr``, ``out.tif.emda-partial.zarr`` for ``out.tif``) and every
    finished slice is recorded in it. :meth:`commit` turns the partial array into the
    output (rename for zarr, one TIFF write otherwise), so an interrupted write never
    leaves anything under the final name. An interrupted writer keeps its partial
    array; a new writer for the same ``job`` with ``resume`` reopens it and
    :attr:`done` lists the slices it need not write again. A partial array made for
    another job is never reused.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        shape: tuple[int, int, int],
        dtype,
        voxel_size: VoxelSize | None = None,
        overwrite: bool = False,
        chunks: tuple[int, int, int] | None = None,
        attrs: dict | None = None,
        job: dict | None = None,
        resume: bool = False,
        pyramid: int = 0,
        ngff: str | None = None,
    ) -> None:
        check_output(path, overwrite)
        # one writer per output: held from before the partial array is looked at until
        # commit or abort (a second command is refused, naming this one)
        self._lock: ExitStack | None = ExitStack()
        self._lock.enter_context(output_lock(path))
        try:
            self._open(path, shape, dtype, voxel_size, overwrite, chunks, attrs, job, resume,
                       pyramid, ngff)  # fmt: skip
        except BaseException:
            self._release()
            raise

    def _open(self, path, shape, dtype, voxel_size, overwrite, chunks, attrs, job, resume,
              pyramid, ngff) -> None:  # fmt: skip
        check_output(path, overwrite)  # again, now that no one else writes it
        self.path = Path(path)
        self.store, self.key = split_address(path)
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.voxel_size = voxel_size
        self.attrs = dict(attrs or {})
        self.job = json.loads(json.dumps(job or {}))  # as it reads back from JSON
        # TIFF, HDF5, MRC: written whole from the partial array on commit
        self.file_kind = None if is_zarr(self.store) else file_kind(self.store)
        self.single_file = self.file_kind is not None
        if self.single_file:
            check_file_output(self.store, self.key, self.dtype, "--output")
        # an OME-Zarr (NGFF 0.5) image: a group holding level "0" and ``pyramid`` levels
        # below it, each half the size in y and x
        in_ome = not self.single_file and self.store.name.lower().endswith(".ome.zarr")
        # labels of an OME-Zarr image go to its labels/ group, each an image itself
        under_labels = bool(self.key) and re.fullmatch(r"labels/[^/]+", self.key) is not None
        self.label_name = self.key.split("/")[1] if in_ome and under_labels else None
        self.ome = in_ome and (not self.key or self.label_name is not None)
        self.pyramid = pyramid
        self.ngff = self._ngff_version(ngff)
        if pyramid and not self.ome:
            raise EmdaError(f"--pyramid {pyramid}: needs an .ome.zarr output, not {path}")
        if self.single_file:
            self._final = self.store
            self.partial = self.store.with_name(self.store.name + PARTIAL_SUFFIX + ".zarr")
        else:
            self._final = self.store / self.key if self.key else self.store
            # stays a readable zarr address: out.zarr -> out.emda-partial.zarr, g.zarr/p -> p.…
            name = self._final.name
            name = (f"{self._final.stem}{PARTIAL_SUFFIX}{self._final.suffix}" if not self.key
                    else name + PARTIAL_SUFFIX)  # fmt: skip
            self.partial = self._final.with_name(name)
        self.done: set[str] = set()  # keys of finished blocks (a slice's is its z)
        if self.partial.exists():
            differs = self._job_difference() if resume else None
            if resume and differs is None:
                self._array = self._open_partial()
                self.done = self._read_done()
                return
            if resume:
                raise EmdaError(
                    f"{self.path}: the interrupted output {self.partial} was made with other "
                    f"settings or inputs ({differs}); pass --overwrite to start over"
                )
            if not overwrite:
                raise EmdaError(
                    f"{self.path}: an interrupted output exists ({self.partial}); pass "
                    "--resume to continue it or --overwrite to start over"
                )
            _remove(self.partial)
        self._array = self._create_partial(chunks)

    def _ngff_version(self, asked: str | None) -> str:
        """The NGFF version asked for; labels of an existing image follow the image's."""
        from emda.io.ome import NGFF_VERSION, NGFF_VERSIONS, group_version

        if asked is not None and asked not in NGFF_VERSIONS:
            raise EmdaError(f"--ngff {asked}: not one of {', '.join(NGFF_VERSIONS)}")
        if asked is not None and not (self.ome or self.label_name):
            raise EmdaError(f"--ngff {asked}: needs an .ome.zarr output, not {self.path}")
        image = group_version(self.store) if self.label_name is not None else None
        if image is not None and asked is not None and image != asked:
            raise EmdaError(f"--ngff {asked}: {self.store} is NGFF {image}; its labels must be too")
        return image or asked or NGFF_VERSION

    def _job_difference(self) -> str | None:
        """What differs between this job and the partial output's, or None."""
        try:
            attrs = dict(self._open_partial().attrs)
        except Exception:
            return "its metadata is unreadable"
        saved = attrs.get(JOB_ATTR) or {}
        if tuple(attrs.get("shape", ())) != self.shape:
            return "shape"
        for key in sorted(set(saved) | set(self.job)):
            if saved.get(key) != self.job.get(key):
                return "the input's content" if key == "content" else key
        return None

    def _open_partial(self):
        import zarr

        return zarr.open_array(str(self.partial), mode="r+")

    def _create_partial(self, chunks):
        import zarr

        from emda.io.ome import array_options

        fmt = 2 if self.ome and self.ngff == "0.4" else 3
        if self.key and not self.single_file:  # keep the format of the group it goes into
            parent = self._final.parent
            if parent.exists() and (parent / ".zgroup").exists():
                fmt = 2
            elif not parent.exists() or not (parent / "zarr.json").exists():
                zarr.open_group(str(parent), mode="a", zarr_format=fmt)
        _, y, x = self.shape
        chunks = chunks or (1, min(y, 1024), min(x, 1024))
        attrs = {**self.attrs, COMPLETE_ATTR: False, JOB_ATTR: self.job, "shape": self.shape}
        if self.voxel_size is not None:
            attrs["voxel_size"] = list(self.voxel_size)
        return zarr.create_array(
            store=str(self.partial),
            shape=self.shape,
            chunks=chunks,
            dtype=self.dtype,
            attributes=attrs,
            **array_options("0.4" if fmt == 2 else "0.5"),
        )

    def _read_done(self) -> set[str]:
        path = self.partial / DONE_NAME
        if not path.exists():
            return set()
        # a kill during an append can leave a cut-off last line: only whole lines count
        text = path.read_text()
        lines = text.split("\n") if text.endswith("\n") else text.split("\n")[:-1]
        return {line.strip() for line in lines if line.strip()}

    @property
    def array(self):
        """The partial zarr array that blocks are written into."""
        return self._array

    def write(self, z: int | slice, block: np.ndarray) -> None:
        self._array[z] = block

    def mark_done(self, key: str | int) -> None:
        """Record block ``key`` (a slice's z) as written, after its data is in place."""
        with open(self.partial / DONE_NAME, "a") as fh:
            fh.write(f"{key}\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.done.add(str(key))

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def commit(self) -> None:
        try:
            self._commit()
        finally:
            self._release()

    def _commit(self) -> None:
        if self.single_file:
            self._commit_file()
            _remove(self.partial)
            return
        attrs = dict(self._array.attrs)
        for name in (JOB_ATTR, "shape"):
            attrs.pop(name, None)
        attrs[COMPLETE_ATTR] = True
        self._array.attrs.put(attrs)
        done = self.partial / DONE_NAME
        if done.exists():
            done.unlink()
        if self.ome:
            self._commit_ome(attrs)
            return
        if self._final.exists():
            _remove(self._final)
        os.replace(self.partial, self._final)

    def _commit_ome(self, attrs: dict) -> None:
        from emda.io.ome import write_multiscale_group

        tmp = self._final.with_name(self._final.name + f".emda-tmp-{uuid.uuid4().hex[:8]}")
        try:
            tmp.mkdir()
            os.replace(self.partial, tmp / "0")
            write_multiscale_group(tmp, self.pyramid, self.voxel_size, attrs, self._final.name,
                                   label_of_image=self.label_name is not None,
                                   version=self.ngff)  # fmt: skip
            if self._final.exists():
                _remove(self._final)
            os.replace(tmp, self._final)
            if self.label_name is not None:
                from emda.io.ome import list_label

                list_label(self._final.parent, self.label_name, self.ngff)
        finally:
            if tmp.exists():
                _remove(tmp)

    def _commit_file(self) -> None:
        tmp = self.store.with_name(self.store.name + f".emda-tmp-{uuid.uuid4().hex[:8]}")
        attrs = {k: v for k, v in self.attrs.items() if v is not None}
        try:
            write_file(self.file_kind, tmp, self._array, self.shape, self.dtype,
                       self.voxel_size, {**attrs, COMPLETE_ATTR: True}, self.key)  # fmt: skip
            os.replace(tmp, self.store)
        finally:
            if tmp.exists():
                tmp.unlink()

    def abort(self, keep: bool = True) -> None:
        """Drop the partial output, unless ``keep`` and some slice of it is finished (then
        it stays for ``resume``)."""
        try:
            if not (keep and self.done) and self.partial.exists():
                _remove(self.partial)
        finally:
            self._release()

    def __enter__(self) -> VolumeWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()


def write_volume(path, data: np.ndarray, voxel_size: VoxelSize | None = None, **kw) -> None:
    """Write a whole in-memory volume (2D arrays are stored with z = 1)."""
    data = data[None] if data.ndim == 2 else data
    with all_or_nothing() as open_writer:
        open_writer(path, data.shape, data.dtype, voxel_size, **kw).write(slice(None), data)


@contextmanager
def all_or_nothing() -> Iterator[Callable[..., VolumeWriter]]:
    """Outputs that appear together or not at all, for commands cheap enough to redo that
    an interrupted run keeps nothing to resume. Yields ``open`` (the arguments of
    :class:`VolumeWriter`); every writer it opened is committed when the block finishes,
    and on any failure (an interrupt, or a second output that cannot be opened) every
    partial output is removed."""
    writers: list[VolumeWriter] = []

    def open_writer(*args: Any, **kwargs: Any) -> VolumeWriter:
        writers.append(VolumeWriter(*args, **kwargs))
        return writers[-1]

    try:
        yield open_writer
        for writer in writers:
            writer.commit()
    except BaseException:
        for writer in writers:
            writer.abort(keep=False)
        raise
