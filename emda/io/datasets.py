"""Public EM datasets: where they come from and how ``emda data fetch`` rebuilds them.

Each dataset is published as per-slice image files in a public repository. Fetching
downloads every slice from a pinned commit, decodes it, stacks the slices, binarises
the labels, and checks the SHA-256 of the decoded uint8 volume (its content, so the
check does not depend on how a file was compressed) before writing
``<to>/<dataset>/.../raw.tif`` and ``labels.tif``, the layout the benchmarks read.
This is the only part of emda that touches the network.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emda.errors import EmdaError
from emda.io.writer import write_volume


@dataclass(frozen=True)
class Stack:
    """One output volume assembled from numbered per-slice files."""

    output: str  # relative path of the TIFF written, e.g. "train/raw.tif"
    pattern: str  # path of one slice in the source, formatted with the slice number
    slices: range
    sha256: str  # of the decoded (z, y, x) uint8 array's bytes, C order
    label_threshold: int | None = None  # labels: value > threshold -> 1; None for raw


@dataclass(frozen=True)
class Dataset:
    name: str
    title: str
    source: str  # base URL of the pinned source; slice paths are appended
    voxel_size: tuple[float, float, float]  # z, y, x in nm
    license: str
    cite: str
    stacks: tuple[Stack, ...]

    def urls(self, base: str | None = None) -> list[tuple[Stack, list[str]]]:
        root = (base or self.source).rstrip("/") + "/"
        return [(s, [root + s.pattern.format(i) for i in s.slices]) for s in self.stacks]


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset(
            name="drosophila_vnc",
            title="Drosophila larva VNC, ssTEM, stack 1 (Gerhard et al. 2013)",
            source="https://raw.githubusercontent.com/unidesigner/groundtruth-drosophila-vnc/"
            "68c1639eb3bc5eb2834e8f130ec7821e0c82439d",
            voxel_size=(50.0, 4.6, 4.6),
            license="CC BY-NC-SA 3.0 (non-commercial segmentation research)",
            cite="Gerhard et al., figshare 2013, doi:10.6084/m9.figshare.856713",
            stacks=(
                Stack(
                    "raw.tif",
                    "stack1/raw/{:02d}.tif",
                    range(20),
                    "b845f8b459993f5ca6135daba76a4069bdddca65770f5171f4c3518765f391da",
                ),
                Stack(
                    "labels.tif",
                    "stack1/mitochondria/{:02d}.png",
                    range(20),
                    "f20de46ec662a2ff9d87427b9531978f3894b26b7544ebd1b870b53bd1cb7660",
                    label_threshold=0,
                ),
            ),
        ),
        Dataset(
            name="epfl_lucchi_pp",
            title="EPFL CA1 hippocampus FIB-SEM with Lucchi++ labels (Casser et al. 2018)",
            source="https://raw.githubusercontent.com/mental689/connectomics/"
            "4d06d49c845d295e67a2ab98a64510d893b167c6/dataset/Lucchi++",
            voxel_size=(5.0, 5.0, 5.0),
            license="no data licence stated; research use, cite both papers",
            cite="Lucchi et al., IEEE TMI 2012; Casser et al., arXiv:1812.06024",
            stacks=(
                Stack(
                    "train/raw.tif",
                    "Train_In/mask{:04d}.png",
                    range(165),
                    "45d77f092b5c6fbad62cb406f465e0a665f1636eae8b76b2f9c46a1dab142faf",
                ),
                Stack(
                    "train/labels.tif",
                    "Train_Out/{}.png",
                    range(165),
                    "2d930068c145096605b19f2f702c922c18bb6ceee74c3b1d8dbc89f9424f41b7",
                    label_threshold=127,
                ),
                Stack(
                    "test/raw.tif",
                    "Test_In/mask{:04d}.png",
                    range(165),
                    "82c7ad7059f66349a6ed6392120b783c8170a37d6972b5ed251e797d1901b2b6",
                ),
                Stack(
                    "test/labels.tif",
                    "Test_Out/{}.png",
                    range(165),
                    "908b416bde9a726eb82bb0ccc824bf3879ea7ad35ec12e310b45794c29f5c793",
                    label_threshold=127,
                ),
            ),
        ),
    )
}


def array_sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def decode_slice(data: bytes, url: str) -> np.ndarray:
    """A 2D uint8 image from PNG or TIFF bytes (first channel of RGB(A), 1-bit -> 0/255)."""
    try:
        if data[:4] in (b"II*\x00", b"MM\x00*"):
            import tifffile

            image = tifffile.imread(io.BytesIO(data))
        else:
            from PIL import Image

            with Image.open(io.BytesIO(data)) as im:
                image = np.asarray(im.convert("L") if im.mode == "1" else im)
    except Exception as exc:  # a broken download: say which
        raise EmdaError(f"{url}: not a readable image ({exc})") from None
    if image.ndim == 3:
        image = image[..., 0]
    if image.ndim != 2 or image.dtype != np.uint8:
        raise EmdaError(f"{url}: expected an 8-bit 2D image, got {image.dtype} {image.shape}")
    return image


RETRIES = 3  # a dropped connection is retried this many times, with growing pauses


def cache_dir() -> Path:
    """Where downloaded slices are kept (``EMDA_CACHE``, else the user's cache directory),
    so an interrupted fetch downloads only what it had not got yet."""
    import pooch

    return Path(os.environ.get("EMDA_CACHE") or pooch.os_cache("emda")) / "slices"


def _cached_name(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:24] + Path(url).suffix


def download(url: str, cache: Path | None = None) -> bytes:
    """The bytes at ``url``: a local mirror's file is read, anything else goes through
    pooch (retries, and a cache keyed by the URL, whose files appear only when complete).
    Content is checked later, on the decoded volume."""
    if url.startswith("file://"):
        path = Path(urllib.request.url2pathname(url[len("file://") :]))
        try:
            return path.read_bytes()
        except OSError as exc:
            raise EmdaError(f"{url}: download failed ({exc.strerror})") from None
    import pooch

    name = _cached_name(url)
    store = pooch.create(path=cache or cache_dir(), base_url="", registry={name: None},
                         urls={name: url}, retry_if_failed=RETRIES)  # fmt: skip
    try:
        fetched = store.fetch(name, downloader=pooch.HTTPDownloader(timeout=60))
    except Exception as exc:  # requests' and pooch's errors: name the URL, not a traceback
        raise EmdaError(f"{url}: download failed ({str(exc).splitlines()[0]})") from None
    return Path(fetched).read_bytes()


def fetch(
    dataset: Dataset,
    to: Path,
    mirror: str | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    cache: Path | None = None,
) -> Path:
    """Download, check and write ``dataset`` under ``to/<name>``; returns that directory.

    ``mirror``: a URL or local directory laid out like the source, used instead of it.
    Everything is assembled in a temporary directory next to the destination and moved
    into place only when every volume has passed its check. Downloaded slices stay in
    ``cache`` (default :func:`cache_dir`): a fetch that failed half-way resumes there;
    the slices of a volume that fails its check are dropped from it.
    """
    to = Path(to)
    dest = to / dataset.name
    if dest.exists() and not overwrite:
        raise EmdaError(f"--to {to}: {dest} already exists (pass --overwrite to replace it)")
    if not to.is_dir():
        raise EmdaError(f"--to {to}: not a directory")
    base = mirror
    if mirror and "://" not in mirror:
        if not Path(mirror).is_dir():
            raise EmdaError(f"--mirror {mirror}: not a directory")
        base = Path(mirror).resolve().as_uri()
    plan = dataset.urls(base)
    total, done = sum(len(urls) for _, urls in plan), 0
    try:
        work = Path(tempfile.mkdtemp(prefix=f".{dataset.name}-", dir=to))
    except OSError as exc:
        raise EmdaError(f"--to {to}: not writable ({exc.strerror})") from None
    try:
        for stack, urls in plan:
            slices = []
            for url in urls:
                slices.append(decode_slice(download(url, cache), url))
                done += 1
                if progress:
                    progress(done, total)
            if len({s.shape for s in slices}) != 1:
                raise EmdaError(f"{dataset.name}/{stack.output}: slices differ in shape")
            volume = np.stack(slices)
            if stack.label_threshold is not None:
                volume = (volume > stack.label_threshold).astype(np.uint8)
            digest = array_sha256(volume)
            if digest != stack.sha256:
                for url in urls:  # the next fetch downloads them again
                    ((cache or cache_dir()) / _cached_name(url)).unlink(missing_ok=True)
                raise EmdaError(
                    f"{dataset.name}/{stack.output}: content check failed (sha256 {digest[:12]}… "
                    f"expected {stack.sha256[:12]}…); the source changed or a download is corrupt"
                )
            out = work / stack.output
            out.parent.mkdir(parents=True, exist_ok=True)
            write_volume(out, volume, dataset.voxel_size)
        if dest.exists():
            shutil.rmtree(dest)
        work.rename(dest)
    finally:
        if work.exists():
            shutil.rmtree(work)
    return dest
