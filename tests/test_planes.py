"""`emda predict --planes`: segmenting the (y, x), (z, x) and (z, y) plane stacks of a
volume and averaging them, block-wise, resumable and on Dask like slice-wise prediction."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr
from typer.testing import CliRunner

from emda.cli import app
from emda.data.planes import (
    combine_regions,
    is_isotropic,
    ortho_warnings,
    resolve_planes,
    trained_in_three_planes,
)
from emda.errors import EmdaError
from emda.inference.sliding_window import SlidingWindowPredictor
from emda.io.volume import PermutedArray, Volume, open_volume
from emda.io.writer import write_volume
from emda.model.checkpoint import load_checkpoint

from .conftest import CROPS, adapt_on_crops


def _volume(shape, voxel):
    return Volume(np.zeros(shape, np.uint8), "v.tif", voxel)


def test_ortho_predicts_three_plane_stacks_and_xy_one():
    volume = _volume((16, 64, 64), (50.0, 5.0, 5.0))
    assert resolve_planes("ortho", volume) == ("xy", "xz", "yz")
    assert resolve_planes("xy", volume) == ("xy",)
    assert is_isotropic((6.0, 5.0, 5.0)) and not is_isotropic((50.0, 4.6, 4.6))
    assert not is_isotropic(None)


def test_auto_averages_planes_only_for_isotropic_volumes_and_models():
    cube, stack = _volume((16, 64, 64), (5.0, 5.0, 5.0)), _volume((16, 64, 64), (50.0, 5.0, 5.0))
    flat = Volume(np.zeros((9, 9), np.uint8), "image.tif", (5.0, 5.0, 5.0))
    assert resolve_planes("auto", cube, (5.0, 5.0, 5.0)) == ("xy", "xz", "yz")
    assert resolve_planes("auto", cube, (50.0, 4.6, 4.6)) == ("xy",)  # trained on sections
    assert resolve_planes("auto", cube, None) == ("xy",)  # what it was trained on is unknown
    assert resolve_planes("auto", stack, (5.0, 5.0, 5.0)) == ("xy",)  # anisotropic volume
    assert resolve_planes("auto", _volume((16, 64, 64), None), (5.0, 5.0, 5.0)) == ("xy",)
    assert resolve_planes("auto", flat, (5.0, 5.0, 5.0)) == ("xy",)  # 2D image: no error


def test_bad_planes_are_one_line_errors():
    with pytest.raises(EmdaError, match="--planes zx: must be one of xy, ortho, auto"):
        resolve_planes("zx", _volume((4, 4, 4), None))
    flat = Volume(np.zeros((9, 9), np.uint8), "image.tif", (5.0, 5.0, 5.0))
    with pytest.raises(EmdaError, match="image.tif is a 2D image"):
        resolve_planes("ortho", flat)


def test_ortho_warns_about_anisotropic_volumes_and_models_trained_on_sections():
    assert ortho_warnings("v.tif", (5.0, 5.0, 5.0), (5.0, 5.0, 5.0)) == []
    assert ortho_warnings("v.tif", (5.0, 5.0, 5.0), None) == []  # model's data unknown
    volume, model = ortho_warnings("v.tif", None, (50.0, 4.6, 4.6))
    assert "v.tif" in volume and "not isotropic" in volume
    assert "(50.0, 4.6, 4.6)" in model and "anisotropic" in model
    [model_only] = ortho_warnings("v.tif", (5.0, 5.0, 5.0), (50.0, 4.6, 4.6))
    assert "trained on" in model_only
    # a model trained on its target's three planes (--target-planes ortho) has seen them
    assert ortho_warnings("v.tif", (5.0, 5.0, 5.0), (50.0, 4.6, 4.6), True) == []


def test_three_plane_training_is_found_through_recalibration_and_finetuning():
    adapted = {"command": "adapt", "target_planes": "ortho"}
    assert trained_in_three_planes(adapted)
    recalibrated = {"command": "recalibrate", "base_training": adapted}
    finetuned = {"command": "finetune", "target_planes": "xy", "base_training": recalibrated}
    assert trained_in_three_planes(finetuned)
    assert not trained_in_three_planes({"command": "adapt", "target_planes": "xy"})
    assert not trained_in_three_planes({"command": "adapt"})  # runs older than the option
    assert not trained_in_three_planes(None)


@pytest.mark.parametrize("axes", [(1, 0, 2), (2, 0, 1), (2, 1, 0)])
def test_a_permuted_zarr_array_reads_like_the_transposed_numpy_array(tmp_path, axes):
    data = np.arange(3 * 5 * 7).reshape(3, 5, 7)
    stored = zarr.create_array(store=str(tmp_path / "a.zarr"), shape=data.shape, dtype=data.dtype,
                               chunks=(1, 2, 3))  # fmt: skip
    stored[:] = data
    view, want = PermutedArray(stored, axes), data.transpose(axes)
    assert view.shape == want.shape
    for index in [(1,), (slice(None), 2), (slice(1, 3), slice(0, 2), 1), (0, 1, slice(2, 5))]:
        np.testing.assert_array_equal(view[index], want[index])
    volume = open_volume(tmp_path / "a.zarr", voxel_size=(1.0, 2.0, 3.0)).permuted(axes)
    assert volume.shape == want.shape
    assert volume.voxel_size == tuple((1.0, 2.0, 3.0)[a] for a in axes)
    np.testing.assert_array_equal(volume.read(1), want[1])


def test_planes_read_one_by_one_come_from_slabs_and_stay_exact(tmp_path):
    data = np.random.default_rng(0).integers(0, 255, (3, 70, 9), dtype=np.uint8)
    stored = zarr.create_array(store=str(tmp_path / "a.zarr"), shape=data.shape, dtype=data.dtype,
                               chunks=(1, 70, 9))  # fmt: skip
    stored[:] = data
    reads = []
    view = PermutedArray(stored, (1, 0, 2))  # (z, x) planes of a z-chunked array
    view._read = lambda index, read=view._read: reads.append(index) or read(index)
    want = data.transpose(1, 0, 2)
    for plane in [*range(70), 69, 3]:  # forwards, then back into other slabs
        np.testing.assert_array_equal(view[plane], want[plane])
        np.testing.assert_array_equal(view[plane, 1:3, 2:5], want[plane, 1:3, 2:5])
    assert len(reads) == 2 * 72  # the window alternates: a slab read each time
    reads.clear()
    for plane in range(70):
        view[plane, :, 4:]
    assert len(reads) == 3  # 70 planes in slabs of 32


def test_combined_regions_cover_the_volume_once():
    shape, chunks = (70, 600, 300), (1, 256, 256)
    covered = np.zeros(shape, np.uint8)
    for region in combine_regions(shape, chunks, 32):
        covered[region] += 1
        assert region[1].start % 256 == 0 and region[2].start % 256 == 0  # whole chunks
    assert covered.min() == covered.max() == 1


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("planes")
    assert adapt_on_crops(root / "run", "--iterations", "2", target=None).exit_code == 0
    raw = open_volume(CROPS / "epfl_test/raw.tif").read()  # 8 x 320 x 320, 5 nm isotropic
    # every plane fits one 256 block, so blocks and whole planes are predicted alike
    write_volume(root / "cube.zarr", np.concatenate([raw] * 5)[:34, :192, :160], (5.0, 5.0, 5.0))
    return root


def _predict(setup, out, *extra):
    return [sys.executable, "-m", "emda", "predict", str(setup / "run"), str(setup / "cube.zarr"),
            "--output", str(out), "--device", "cpu", "--threads", "1", "--quiet",
            "--tile-size", "64", "--batch-size", "4", "--prob-dtype", "float32",
            "--block-size", "256", "--planes", "ortho",
            "--precision", "float32", *extra]  # fmt: skip  # compared with float32 below


def test_ortho_is_the_mean_of_the_three_plane_stacks(setup, tmp_path):
    done = subprocess.run(_predict(setup, tmp_path / "p.tif", "--mask", str(tmp_path / "m.zarr")),
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "xy+xz+yz planes" in " ".join(done.stderr.split())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.zarr", "p.tif"]  # stacks removed
    got = open_volume(tmp_path / "p.tif")
    assert got.voxel_size == (5.0, 5.0, 5.0)

    torch.set_num_threads(1)
    ckpt = load_checkpoint(setup / "run")
    volume = open_volume(setup / "cube.zarr")
    image = ckpt.normalization.fit(volume).apply(volume.read()).astype(np.float32)
    predictor = SlidingWindowPredictor(ckpt.build_model(), torch.device("cpu"), 64, 0.25, 4)
    xy = np.stack([predictor.predict_slice(s) for s in image])
    xz = np.stack([predictor.predict_slice(image[:, y]) for y in range(image.shape[1])], axis=1)
    yz = np.stack([predictor.predict_slice(image[:, :, x]) for x in range(image.shape[2])], axis=2)
    want = (xy + xz + yz) / 3
    np.testing.assert_allclose(got.read(), want, atol=1e-5)
    np.testing.assert_array_equal(open_volume(tmp_path / "m.zarr").read(), want >= 0.5)
    torch.set_num_threads(2)


def test_killed_ortho_prediction_resumes_to_the_uninterrupted_result(setup, tmp_path):
    whole = tmp_path / "whole.zarr"
    assert subprocess.run(_predict(setup, whole)).returncode == 0
    out = tmp_path / "out.zarr"
    proc = subprocess.Popen(_predict(setup, out), stderr=subprocess.PIPE, text=True)
    done = tmp_path / "out.zarr.xz.emda-partial.zarr/emda_done.txt"  # the second stack
    deadline = time.monotonic() + 120
    while not done.exists() or done.read_text().count("\n") < 10:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert not out.exists()
    refused = subprocess.run(_predict(setup, out), capture_output=True, text=True)
    assert refused.returncode == 1 and "--resume" in refused.stderr
    resumed = subprocess.run(_predict(setup, out, "--resume"), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.zarr", "whole.zarr"]
    np.testing.assert_array_equal(open_volume(whole).read(), open_volume(out).read())


def test_ortho_on_local_dask_workers_matches_one_process_with_auto(setup, tmp_path):
    pytest.importorskip("dask.distributed", reason="dask[distributed] absent")
    # auto picks ortho here: the cube and the model's training crops are 5 nm isotropic
    single = subprocess.run(_predict(setup, tmp_path / "one.tif", "--planes", "auto"))
    spread = subprocess.run(_predict(setup, tmp_path / "two.tif", "--workers", "2"))  # fmt: skip
    assert single.returncode == spread.returncode == 0
    np.testing.assert_array_equal(open_volume(tmp_path / "one.tif").read(),
                                  open_volume(tmp_path / "two.tif").read())  # fmt: skip


def test_auto_is_the_default_and_anisotropic_ortho_warns(setup, tmp_path):
    # an isotropic volume and a model trained on isotropic voxels: auto predicts 3 planes
    result = CliRunner().invoke(app, ["predict", str(setup / "run"), str(setup / "cube.zarr"),
                                      "--output", str(tmp_path / "p.tif"), "--device", "cpu",
                                      "--tile-size", "64"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "(xy+xz+yz planes" in " ".join(result.output.split())
    stretched = subprocess.run(_predict(setup, tmp_path / "q.tif", "--voxel-size", "50,5,5"),
                               capture_output=True, text=True)  # fmt: skip
    assert stretched.returncode == 0, stretched.stderr
    assert "not isotropic" in stretched.stderr
    auto = _predict(setup, tmp_path / "r.tif", "--voxel-size", "50,5,5", "--planes", "auto")
    sections = subprocess.run(auto, capture_output=True, text=True)
    assert sections.returncode == 0, sections.stderr
    assert "(xy planes" in " ".join(sections.stderr.split())
    assert "not isotropic" not in sections.stderr  # auto chose slices: nothing to warn about
