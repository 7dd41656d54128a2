"""Refuse to write an output over one of the command's own inputs.

Paths are compared after resolving symlinks and ``..`` (``os.path.realpath``) and, where
both exist, by inode, so ``vol.tif``, ``./link-to-vol.tif`` and ``data/../vol.tif`` are
one file. A zarr address names the array it points into: ``vol.zarr/prob`` may be
written beside an input ``vol.zarr/raw``, but ``vol.zarr`` itself may not, since
replacing it would remove the input inside it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from emda.errors import EmdaError
from emda.io.volume import HDF5_SUFFIXES, is_zarr, split_address

PathLike = str | os.PathLike


def target_of(address: PathLike, key: str | None = None) -> Path:
    """The file or directory an address (``a.tif``, ``b.zarr/raw``, ``emda:NAME``) stands
    for, resolved."""
    from emda.pretrained import is_pretrained, resolve

    if is_pretrained(address):
        return Path(os.path.realpath(resolve(address)))
    store, key = split_address(address, key)
    return Path(os.path.realpath(store / key if key else store))


def written_target(address: PathLike) -> Path:
    """What writing ``address`` replaces: an HDF5 output is written as a whole new file,
    so ``vol.h5/prob`` replaces ``vol.h5`` and every dataset in it."""
    store, _ = split_address(address)
    if store.suffix.lower() in HDF5_SUFFIXES:
        return Path(os.path.realpath(store))
    return target_of(address)


def _same(a: Path, b: Path) -> bool:
    if a == b:
        return True
    try:
        return os.path.samefile(a, b)  # hard links, bind mounts
    except OSError:
        return False


def overlaps(output: Path, data: Path, replaced: Iterable[str] | None = None) -> bool:
    """Whether writing ``output`` can change ``data``: the same path, one inside the other.

    ``replaced`` names what a directory output writes inside itself (a run directory's
    files); then ``data`` inside it is at risk only under one of those names.
    """
    if _same(output, data) or output in data.parents:
        if output in data.parents and replaced is not None:
            return data.relative_to(output).parts[0] in set(replaced)
        return True
    return data in output.parents  # writing into an input's own directory or store


def refuse_writing_inputs(
    outputs: Mapping[str, PathLike | None],
    inputs: Iterable[PathLike | None],
    replaced: Iterable[str] | None = None,
) -> None:
    """Raise unless no output (``{"--output": path}``) can overwrite an input."""
    reads = [(str(i), target_of(i)) for i in inputs if i is not None]
    for option, path in outputs.items():
        if path is None:
            continue
        out = written_target(path)
        for given, data in reads:
            if overlaps(out, data, replaced):
                raise EmdaError(
                    f"{option} {path}: would overwrite the input {given}; write somewhere else"
                )


def check_output(path: str | os.PathLike, overwrite: bool, option: str = "--output") -> None:
    """Fail early, before any work, if ``path`` cannot or must not be written."""
    from emda.io.file_writers import file_kind

    store, key = split_address(path)
    if not (is_zarr(store) or file_kind(store)):
        raise EmdaError(f"{option} {path}: unsupported output type (use .tif/.tiff, .zarr, "
                        ".ome.zarr, .h5 or .mrc)")  # fmt: skip
    single_file = not is_zarr(store)
    target = store if single_file else store / key if key else store
    if target.exists() and not overwrite:
        raise EmdaError(f"{option} {path}: already exists (pass --overwrite to replace it)")
    if target.is_dir() and single_file:
        raise EmdaError(f"{option} {path}: is a directory, not a file")
    zarr_files = (".zarray", ".zgroup", "zarr.json")
    if target.is_dir() and not any((target / f).exists() for f in zarr_files):
        raise EmdaError(f"{option} {path}: is a directory that is not zarr; --overwrite "
                        "replaces only a zarr output")  # fmt: skip
    if target.exists() and not target.is_dir() and is_zarr(store):
        raise EmdaError(f"{option} {path}: is a file, not a zarr store")
    parent = store.parent if not key or single_file else store if store.exists() else store.parent
    parent = parent if str(parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise EmdaError(f"{option} {path}: {parent} is not a directory")
    if parent.exists() and not os.access(parent, os.W_OK):
        raise EmdaError(f"{option} {path}: directory {parent} is not writable")
    if not parent.exists():
        raise EmdaError(f"{option} {path}: directory {parent} does not exist")


def check_reports(reports: Mapping[str, PathLike | None], inputs: Iterable[PathLike | None],
                  overwrite: bool) -> None:  # fmt: skip
    """Before any work: small report files (``{"--csv": path}``) may not replace an input,
    nor an existing file without ``overwrite``."""
    refuse_writing_inputs(reports, inputs)
    for option, path in reports.items():
        if path is not None and Path(path).exists() and not overwrite:
            raise EmdaError(f"{option} {path}: already exists (pass --overwrite to replace it)")


def write_atomically(path: PathLike, write) -> None:
    """``write(tmp)`` a hidden sibling, then rename it to ``path``: never half a file."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise EmdaError(f"{path}: directory {parent} does not exist")
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise EmdaError(f"{path}: cannot write ({exc.strerror})") from None
    finally:
        if tmp.exists():
            tmp.unlink()
