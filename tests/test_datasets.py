"""`emda data fetch`: download per-slice files, check content, write volumes — via file mirrors."""

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from typer.testing import CliRunner

from emda.cli import app
from emda.errors import EmdaError
from emda.io.datasets import DATASETS, Dataset, Stack, array_sha256, fetch
from emda.io.volume import open_volume

from .conftest import CROPS, SHARED


def _mirror(root: Path, raw: np.ndarray, labels: np.ndarray) -> Dataset:
    """Lay a crop out like a source repository: TIFF raw slices, 0/255 PNG masks (one RGBA)."""
    (root / "raw").mkdir(parents=True)
    (root / "masks").mkdir()
    for z, (r, lab) in enumerate(zip(raw, labels)):
        tifffile.imwrite(root / "raw" / f"{z:02d}.tif", r)
        mask = (lab * 255).astype(np.uint8)
        image = Image.fromarray(np.dstack([mask] * 3 + [np.full_like(mask, 255)])) if z == 1 else (
            Image.fromarray(mask))  # fmt: skip
        image.save(root / "masks" / f"{z}.png")
    return Dataset(
        name="crop",
        title="test crop",
        source="https://example.invalid/never-used",
        voxel_size=(50.0, 4.6, 4.6),
        license="test",
        cite="test",
        stacks=(
            Stack("raw.tif", "raw/{:02d}.tif", range(len(raw)), array_sha256(raw)),
            Stack("sub/labels.tif", "masks/{}.png", range(len(raw)), array_sha256(labels), 127),
        ),
    )


@pytest.fixture
def crop_arrays():
    raw = tifffile.imread(CROPS / "vnc/raw.tif")[:4]
    labels = tifffile.imread(CROPS / "vnc/labels.tif")[:4]
    return raw, (labels > 0).astype(np.uint8)


def test_fetch_from_a_mirror_rebuilds_the_volumes(tmp_path, crop_arrays):
    dataset = _mirror(tmp_path / "mirror", *crop_arrays)
    (tmp_path / "out").mkdir()
    dest = fetch(dataset, tmp_path / "out", mirror=str(tmp_path / "mirror"))
    assert dest == tmp_path / "out" / "crop"
    raw = open_volume(dest / "raw.tif")
    np.testing.assert_array_equal(raw.read(), crop_arrays[0])
    np.testing.assert_array_equal(open_volume(dest / "sub/labels.tif").read(), crop_arrays[1])
    assert raw.voxel_size == pytest.approx((50.0, 4.6, 4.6))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["crop"]  # no temp left


def test_a_corrupt_slice_fails_the_content_check_and_writes_nothing(tmp_path, crop_arrays):
    dataset = _mirror(tmp_path / "mirror", *crop_arrays)
    bad = crop_arrays[0][2].copy()
    bad[0, 0] ^= 1  # one bit
    tifffile.imwrite(tmp_path / "mirror/raw/02.tif", bad)
    (tmp_path / "out").mkdir()
    with pytest.raises(EmdaError, match=r"crop/raw.tif: content check failed"):
        fetch(dataset, tmp_path / "out", mirror=str(tmp_path / "mirror"))
    assert list((tmp_path / "out").iterdir()) == []


def test_a_missing_or_unreadable_slice_is_named(tmp_path, crop_arrays):
    dataset = _mirror(tmp_path / "mirror", *crop_arrays)
    (tmp_path / "mirror/masks/3.png").unlink()
    (tmp_path / "out").mkdir()
    with pytest.raises(EmdaError, match=r"masks/3.png: download failed"):
        fetch(dataset, tmp_path / "out", mirror=str(tmp_path / "mirror"))
    (tmp_path / "mirror/masks/3.png").write_bytes(b"\x89PNG truncated")
    with pytest.raises(EmdaError, match=r"masks/3.png: not a readable image"):
        fetch(dataset, tmp_path / "out", mirror=str(tmp_path / "mirror"))
    assert list((tmp_path / "out").iterdir()) == []


def test_an_existing_dataset_is_kept_unless_overwrite(tmp_path, crop_arrays):
    dataset = _mirror(tmp_path / "mirror", *crop_arrays)
    (tmp_path / "out" / "crop").mkdir(parents=True)
    (tmp_path / "out" / "crop" / "mine.txt").write_text("keep")
    with pytest.raises(EmdaError, match="already exists"):
        fetch(dataset, tmp_path / "out", mirror=str(tmp_path / "mirror"))
    assert (tmp_path / "out" / "crop" / "mine.txt").exists()
    fetch(dataset, tmp_path / "out", mirror=str(tmp_path / "mirror"), overwrite=True)
    assert not (tmp_path / "out" / "crop" / "mine.txt").exists()


def test_cli_lists_datasets_and_refuses_unknown_names(tmp_path):
    runner = CliRunner()
    listing = runner.invoke(app, ["data", "list"], env={"COLUMNS": "200"})
    assert listing.exit_code == 0 and "drosophila_vnc" in listing.output
    assert "epfl_lucchi_pp" in listing.output
    bad = runner.invoke(app, ["data", "fetch", "lucchi", "--to", str(tmp_path)])
    assert bad.exit_code == 2 and "unknown dataset lucchi" in bad.output
    missing = runner.invoke(app, ["data", "fetch", "drosophila_vnc", "--to", str(tmp_path / "no"),
                                  "--mirror", str(tmp_path)])  # fmt: skip
    assert missing.exit_code == 1 and "--to" in missing.output


needs_shared = pytest.mark.skipif(
    not (SHARED / "drosophila_vnc" / "raw.tif").exists(),
    reason="needs the full datasets in ../shared/data",
)


@needs_shared
def test_the_vnc_manifest_rebuilds_the_shared_data_from_a_source_layout_mirror(tmp_path):
    raw = tifffile.imread(SHARED / "drosophila_vnc/raw.tif")
    labels = tifffile.imread(SHARED / "drosophila_vnc/labels.tif")
    mirror = tmp_path / "mirror"
    (mirror / "stack1/raw").mkdir(parents=True)
    (mirror / "stack1/mitochondria").mkdir()
    for z in range(raw.shape[0]):
        tifffile.imwrite(mirror / f"stack1/raw/{z:02d}.tif", raw[z])
        Image.fromarray(labels[z] * 255).save(mirror / f"stack1/mitochondria/{z:02d}.png")
    result = CliRunner().invoke(app, ["data", "fetch", "drosophila_vnc", "--to", str(tmp_path),
                                      "--mirror", str(mirror), "--quiet"])  # fmt: skip
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "drosophila_vnc/raw.tif"), raw)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "drosophila_vnc/labels.tif"), labels)


@needs_shared
def test_the_epfl_manifest_checksums_match_the_shared_data():
    for stack in DATASETS["epfl_lucchi_pp"].stacks:
        array = tifffile.imread(SHARED / "epfl_lucchi_pp" / stack.output)
        assert array_sha256(array) == stack.sha256, stack.output


def test_http_fetch_retries_a_failed_slice_and_resumes_from_the_cache(tmp_path, crop_arrays):
    """Over HTTP (a local server): a slice that fails once is retried; a second fetch with
    the server gone is rebuilt from the cache of downloaded slices."""
    import functools
    import http.server
    import threading

    pytest.importorskip("pooch")
    served = tmp_path / "served"
    dataset = _mirror(served, *crop_arrays)
    failed: list[str] = []

    class Flaky(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            if self.path.endswith("01.tif") and not failed:
                failed.append(self.path)
                self.send_error(503)
                return
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Flaky, directory=str(served))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    cache = tmp_path / "cache"
    try:
        (tmp_path / "a").mkdir()
        fetch(dataset, tmp_path / "a", mirror=url, cache=cache)
    finally:
        server.shutdown()
    assert failed  # the first try of slice 01 failed and was retried
    (tmp_path / "b").mkdir()
    out = fetch(dataset, tmp_path / "b", mirror=url, cache=cache)  # no server: from the cache
    np.testing.assert_array_equal(open_volume(out / "raw.tif").read(), crop_arrays[0])
