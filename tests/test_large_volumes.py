"""Volumes larger than memory: block-wise prediction with a halo, chunk-aligned zarr and
OME-Zarr (NGFF 0.5) outputs with downsampled levels, and Dask-distributed prediction that
writes the same output as one process."""

from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from emda.cli import app
from emda.errors import EmdaError
from emda.inference.blocks import output_chunks, plan_blocks
from emda.io.volume import open_volume

from .conftest import CROPS, adapt_on_crops

VNC = str(CROPS / "vnc/raw.tif")  # 12 x 320 x 320


@given(
    shape=st.tuples(st.integers(1, 3), st.integers(1, 1300), st.integers(1, 1300)),
    block=st.sampled_from([256, 512, 768, 1024]),
    halo=st.integers(0, 300),
)
@settings(max_examples=60, deadline=None)
def test_blocks_cover_every_voxel_once_and_tile_the_chunks(shape, block, halo):
    covered = np.zeros(shape, np.uint8)
    chunks = output_chunks(shape, block)
    for b in plan_blocks(shape, block, halo):
        covered[b.z, b.y, b.x] += 1
        assert b.y.start % chunks[1] == 0 and b.x.start % chunks[2] == 0  # chunk-aligned
        assert b.read_y.start == max(0, b.y.start - halo)
        assert b.read_y.stop == min(shape[1], b.y.stop + halo)
        iy, ix = b.inner
        assert (iy.stop - iy.start, ix.stop - ix.start) == (b.y.stop - b.y.start,
                                                             b.x.stop - b.x.start)  # fmt: skip
    assert covered.min() == covered.max() == 1


def test_block_size_must_be_a_multiple_of_256():
    with pytest.raises(EmdaError, match="--block-size 300"):
        plan_blocks((1, 10, 10), 300, 0)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("large") / "run"
    assert adapt_on_crops(out, "--iterations", "4", target=None).exit_code == 0
    return out


def _predict(run, out, *extra):
    result = CliRunner().invoke(app, ["predict", str(run), VNC, "--output", str(out),
                                      "--quiet", "--device", "cpu", *extra])  # fmt: skip
    assert result.exit_code == 0, result.output
    return open_volume(out).read()


def test_blocks_with_a_halo_agree_with_whole_slices(run, tmp_path):
    whole = _predict(run, tmp_path / "whole.zarr").astype(int)
    # 320^2 slices in blocks of 256: four blocks a slice, seams at y, x = 256
    blocks = _predict(run, tmp_path / "blocks.zarr", "--block-size", "256", "--halo", "128")
    diff = np.abs(whole - blocks.astype(int))
    assert diff.mean() < 0.5, diff.mean()  # in units of 1/255
    assert ((whole >= 128) == (blocks >= 128)).mean() > 0.995
    chunks = zarr.open_array(str(tmp_path / "blocks.zarr")).chunks
    assert chunks == (1, 256, 256)  # chunk-aligned with the blocks


def test_ome_zarr_output_with_a_pyramid(run, tmp_path):
    out = tmp_path / "prob.ome.zarr"
    mask = tmp_path / "mask.ome.zarr"
    result = CliRunner().invoke(app, ["predict", str(run), VNC, "--output", str(out), "--mask",
                                      str(mask), "--pyramid", "2", "--quiet", "--device", "cpu",
                                      "--block-size", "256"])  # fmt: skip
    assert result.exit_code == 0, result.output
    group = zarr.open_group(str(out), mode="r")
    ome = group.attrs["ome"]
    assert ome["version"] == "0.5"
    (ms,) = ome["multiscales"]
    assert [a["name"] for a in ms["axes"]] == ["z", "y", "x"]
    assert all(a["type"] == "space" and a["unit"] == "nanometer" for a in ms["axes"])
    scales = [d["coordinateTransformations"][0]["scale"] for d in ms["datasets"]]
    assert scales == [[50.0, 4.6, 4.6], [50.0, 9.2, 9.2], [50.0, 18.4, 18.4]]
    shapes = [group[d["path"]].shape for d in ms["datasets"]]
    assert shapes == [(12, 320, 320), (12, 160, 160), (12, 80, 80)]
    full, half = group["0"][:].astype(np.float32), group["1"][:].astype(np.float32)
    expected = full.reshape(12, 160, 2, 160, 2).mean(axis=(2, 4))
    assert np.abs(half - expected).max() <= 0.5 + 1e-6  # 2 x 2 mean, rounded to uint8
    assert set(np.unique(zarr.open_group(str(mask))["2"][:])) <= {0, 1}  # a mask stays a mask
    # emda reads it back at full resolution with its voxel size, and evaluates it
    volume = open_volume(out)
    assert volume.shape == (12, 320, 320) and volume.voxel_size == (50.0, 4.6, 4.6)
    evaluated = CliRunner().invoke(app, ["evaluate", str(out), "--labels",
                                         str(CROPS / "vnc/labels.tif")])  # fmt: skip
    assert evaluated.exit_code == 0, evaluated.output


def test_ome_zarr_metadata_passes_the_ngff_validator(run, tmp_path):
    models = pytest.importorskip("ome_zarr_models.v05.image", reason="ome-zarr-models absent")
    out = tmp_path / "p.ome.zarr"
    _predict(run, out, "--pyramid", "1")
    image = models.Image.from_zarr(zarr.open_group(str(out), mode="r"))
    assert [d.path for d in image.ome_attributes.multiscales[0].datasets] == ["0", "1"]


def test_pyramid_needs_an_ome_zarr_output(run, tmp_path):
    result = CliRunner().invoke(app, ["predict", str(run), VNC, "--output",
                                      str(tmp_path / "p.zarr"), "--pyramid", "1"])  # fmt: skip
    assert result.exit_code == 1
    assert "--pyramid 1: needs an .ome.zarr output" in result.output
    assert not list(tmp_path.iterdir())


def test_dask_workers_write_the_same_output_and_load_the_model_once(run, tmp_path):
    pytest.importorskip("dask.distributed", reason="dask[distributed] absent")
    import emda.inference.jobs
    from emda.data.normalization import Normalization
    from emda.inference.dask import dask_client, run_blocks_on_dask
    from emda.inference.jobs import PredictJob, run_block
    from emda.interrupt import StopOnInterrupt

    volume = open_volume(VNC)
    low_high = Normalization().fit(volume)
    blocks = plan_blocks(volume.shape, 256, 64)

    def job_writing_to(path):
        zarr.create_array(store=str(path), shape=volume.shape, chunks=(1, 256, 256),
                          dtype="uint8")  # fmt: skip
        return PredictJob(str(run / "checkpoint.pt"), VNC, None, None,
                          (low_high.low, low_high.high), 128, 0.25, 4, "gaussian", False, "cpu",
                          str(path), "uint8", None, 0.5, threads=1)  # fmt: skip

    single = job_writing_to(tmp_path / "single.zarr")
    for block in blocks:
        run_block(single, block)
    emda.inference.jobs.release()

    spread = job_writing_to(tmp_path / "dask.zarr")
    done = []
    with dask_client(None, 2) as client, StopOnInterrupt() as stop:
        run_blocks_on_dask(spread, blocks, client, done.append, stop)
        loads = client.run(lambda: emda.inference.jobs.models_loaded)
    assert sorted(done) == sorted(b.key for b in blocks)
    assert sorted(loads.values()) == [1, 1]  # each worker read the checkpoint once
    a = zarr.open_array(str(tmp_path / "single.zarr"))[:]
    b = zarr.open_array(str(tmp_path / "dask.zarr"))[:]
    np.testing.assert_array_equal(a, b)


def test_predict_with_local_dask_workers_through_the_cli(run, tmp_path):
    pytest.importorskip("dask.distributed", reason="dask[distributed] absent")
    single = _predict(run, tmp_path / "single.tif", "--threads", "1", "--block-size", "256")
    assert not list(tmp_path.glob("*partial*"))
    spread = _predict(run, tmp_path / "spread.tif", "--workers", "2", "--block-size", "256",
                      "--threads", "1")  # fmt: skip
    torch.set_num_threads(2)  # --threads 1 above set it for this test process
    assert not list(tmp_path.glob("*partial*"))
    # one thread in each worker and in the single process: the same arithmetic
    np.testing.assert_array_equal(single, spread)


def test_missing_dask_is_a_clear_error(run, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "dask.distributed", None)
    result = CliRunner().invoke(app, ["predict", str(run), VNC, "--output",
                                      str(tmp_path / "p.tif"), "--workers", "2"])  # fmt: skip
    assert result.exit_code == 1
    assert "pip install 'emda[distributed]'" in result.output
    assert not list(tmp_path.iterdir())
