"""`emda instances --resume`: an interrupted run, in any of its passes, continues to the
labels an uninterrupted run writes, without labelling its finished blocks again."""

import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tifffile
from scipy import ndimage
from typer.testing import CliRunner

import emda.postprocessing.instances as instances
import emda.postprocessing.split as split
from emda.cli import app
from emda.io.writer import VolumeWriter

runner = CliRunner()


@pytest.fixture
def mask(tmp_path, monkeypatch):
    """A 10-slice mask of objects crossing the blocks (2 slices each here)."""
    monkeypatch.setattr(instances, "BLOCK_DEPTH", 2)
    rng = np.random.default_rng(0)
    data = ndimage.binary_opening(rng.random((10, 40, 40)) > 0.45).astype(np.uint8)
    path = tmp_path / "mask.tif"
    tifffile.imwrite(path, data)
    return path


def _run(path, out, *extra):
    return runner.invoke(app, ["instances", str(path), "-o", str(out), "--quiet",
                               "--voxel-size", "5,5,5", *extra])  # fmt: skip


def _fail_after(calls: int):
    """A wrapper that raises KeyboardInterrupt (a Ctrl-C) from call ``calls + 1`` on."""
    seen = []

    def wrap(real):
        def inner(*args, **kwargs):
            seen.append(1)
            if len(seen) > calls:
                raise KeyboardInterrupt
            return real(*args, **kwargs)

        return inner

    return wrap, seen


def test_an_interrupted_first_pass_resumes_without_labelling_finished_blocks(
    mask, tmp_path, monkeypatch
):
    assert _run(mask, tmp_path / "fresh.tif").exit_code == 0
    wrap, _ = _fail_after(3)
    real = instances.binarize
    monkeypatch.setattr(instances, "binarize", wrap(real))
    out = tmp_path / "out.tif"
    stopped = _run(mask, out)
    assert stopped.exit_code == 130 and not out.exists()
    state = instances.state_dir(str(out))
    assert len(list((state / "blocks").glob("*.npz"))) == 3

    refused = _run(mask, out)
    assert refused.exit_code == 1 and "--resume" in refused.output
    counting, calls = _fail_after(10**6)
    monkeypatch.setattr(instances, "binarize", counting(real))
    resumed = _run(mask, out, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert len(calls) == 5 - 3  # five blocks, three of them labelled before the stop
    np.testing.assert_array_equal(tifffile.imread(out), tifffile.imread(tmp_path / "fresh.tif"))
    assert not state.exists()


def test_an_interrupted_second_pass_resumes_from_its_finished_blocks(mask, tmp_path, monkeypatch):
    assert _run(mask, tmp_path / "fresh.zarr").exit_code == 0
    wrap, _ = _fail_after(2)
    real = VolumeWriter.mark_done
    monkeypatch.setattr(VolumeWriter, "mark_done", wrap(real))
    out = tmp_path / "out.zarr"
    assert _run(mask, out).exit_code == 130 and not out.exists()
    monkeypatch.setattr(VolumeWriter, "mark_done", real)
    other = _run(mask, out, "--resume", "--threshold", "0.3")
    assert other.exit_code == 1 and "other settings or inputs (threshold)" in other.output
    resumed = _run(mask, out, "--resume")
    assert resumed.exit_code == 0, resumed.output
    from emda.io.volume import open_volume

    fresh = open_volume(tmp_path / "fresh.zarr").read()
    np.testing.assert_array_equal(open_volume(out).read(), fresh)


def test_an_interrupted_split_continues_after_the_last_object_it_split(tmp_path, monkeypatch):
    data = np.zeros((24, 24, 100), np.uint8)
    z, y, x = np.indices(data.shape)
    for cx in (14, 29, 60, 75):  # two pairs of touching spheres
        data[(z - 12) ** 2 + (y - 12) ** 2 + (x - cx) ** 2 <= 64] = 1
    path = tmp_path / "balls.tif"
    tifffile.imwrite(path, data)
    fresh = _run(path, tmp_path / "fresh.tif", "--split")
    assert fresh.exit_code == 0 and tifffile.imread(tmp_path / "fresh.tif").max() == 4
    wrap, _ = _fail_after(1)
    real = split.split_object
    monkeypatch.setattr(split, "split_object", wrap(real))
    out = tmp_path / "out.tif"
    assert _run(path, out, "--split").exit_code == 130
    assert (instances.state_dir(str(out)) / "split.json").exists()  # the first pair's record
    monkeypatch.setattr(split, "split_object", real)
    assert _run(path, out, "--split", "--resume").exit_code == 0
    np.testing.assert_array_equal(tifffile.imread(out), tifffile.imread(tmp_path / "fresh.tif"))


def test_overwrite_starts_an_interrupted_run_over(mask, tmp_path, monkeypatch):
    wrap, _ = _fail_after(1)
    real = instances.binarize
    monkeypatch.setattr(instances, "binarize", wrap(real))
    out = tmp_path / "out.tif"
    assert _run(mask, out).exit_code == 130
    monkeypatch.setattr(instances, "binarize", real)
    assert _run(mask, out, "--overwrite").exit_code == 0
    assert not instances.state_dir(str(out)).exists()
    assert _run(mask, out, "--resume", "--overwrite").exit_code == 1


def test_a_killed_run_resumes_to_the_uninterrupted_labels(mask, tmp_path):
    """A real SIGKILL between blocks (each block is slowed down so the kill lands mid-run)."""
    out = tmp_path / "out.tif"
    state = instances.state_dir(str(out))
    script = (
        "import time, emda.postprocessing.instances as m\n"
        "m.BLOCK_DEPTH = 2\n"
        "real = m.binarize\n"
        "m.binarize = lambda *a: (time.sleep(0.3), real(*a))[1]\n"
        "from emda.cli import app\n"
        f"app(['instances', {str(mask)!r}, '-o', {str(out)!r}, '-q', '--voxel-size', '5,5,5'])\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 120
    while not (state / "blocks" / "000002.npz").exists() and proc.poll() is None:
        assert time.monotonic() < deadline, "the run never recorded a block"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and not out.exists()
    assert _run(mask, out, "--resume").exit_code == 0
    fresh = tmp_path / "fresh.tif"
    assert _run(mask, fresh).exit_code == 0
    np.testing.assert_array_equal(tifffile.imread(out), tifffile.imread(fresh))
