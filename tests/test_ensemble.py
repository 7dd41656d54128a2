"""`emda ensemble`: the voxel-wise mean of several predictions of one volume."""

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from emda.cli import app
from emda.io.volume import open_volume
from emda.io.writer import write_volume
from emda.postprocessing import ensemble as ensemble_module

VOXEL = (50.0, 4.6, 4.6)


@pytest.fixture
def members(tmp_path):
    """Three predictions of one (10, 24, 20) volume in the three forms emda reads:
    uint8 round(255 p) TIFF, float32 zarr, and a 0/1 mask."""
    rng = np.random.default_rng(0)
    shape = (10, 24, 20)
    p_uint8 = rng.integers(0, 256, shape).astype(np.uint8)
    p_float = rng.random(shape).astype(np.float32)
    votes = (rng.random(shape) > 0.5).astype(np.uint8)
    paths = [tmp_path / "a.tif", tmp_path / "b.zarr", tmp_path / "c_mask.tif"]
    write_volume(paths[0], p_uint8, VOXEL)
    write_volume(paths[1], p_float, VOXEL)
    write_volume(paths[2], votes, VOXEL)
    expected = (p_uint8 / 255.0 + p_float + votes) / 3
    return [str(p) for p in paths], expected


def test_the_mean_of_probabilities_of_any_stored_form_and_its_mask(members, tmp_path):
    paths, expected = members
    out, mask = tmp_path / "mean.tif", tmp_path / "mean_mask.zarr"
    result = CliRunner().invoke(app, ["ensemble", *paths, "-o", str(out), "--mask", str(mask),
                                      "--prob-dtype", "float32", "--threshold", "0.6"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "mean of 3 predictions" in result.output
    mean = open_volume(out)
    np.testing.assert_allclose(mean.read(), expected, atol=1e-6)
    assert mean.voxel_size == pytest.approx(VOXEL)
    assert np.array_equal(open_volume(mask).read(), (expected >= 0.6).astype(np.uint8))
    info = CliRunner().invoke(app, ["info", str(mask)], env={"COLUMNS": "200"})
    assert "mean of 3 predictions" in info.output and "c_mask.tif" in info.output


def test_uint8_output_is_stored_like_emda_predicts_and_evaluate_reads_it(members, tmp_path):
    paths, expected = members
    out = tmp_path / "mean.tif"
    assert CliRunner().invoke(app, ["ensemble", *paths[:2], "-o", str(out)]).exit_code == 0
    first, second = (open_volume(p).read() for p in paths[:2])
    stored = tifffile.imread(out)
    assert stored.dtype == np.uint8
    assert np.array_equal(stored, np.round((first / 255.0 + second) / 2 * 255).astype(np.uint8))
    truth = tmp_path / "truth.tif"
    tifffile.imwrite(truth, (expected > 0.5).astype(np.uint8))
    result = CliRunner().invoke(app, ["evaluate", str(out), "--labels", str(truth)])
    assert result.exit_code == 0, result.output


def test_an_interrupted_ensemble_leaves_nothing_behind(members, tmp_path, monkeypatch):
    paths, _ = members
    monkeypatch.setattr(ensemble_module, "SLAB", 2)
    real = ensemble_module.to_probability
    calls = []

    def interrupt_later(block, kind, source):
        calls.append(source)
        if len(calls) == 7:  # in the third slab, after two were written
            raise KeyboardInterrupt
        return real(block, kind, source)

    monkeypatch.setattr(ensemble_module, "to_probability", interrupt_later)
    out = tmp_path / "out"
    out.mkdir()
    result = CliRunner().invoke(app, ["ensemble", *paths, "-o", str(out / "m.zarr"),
                                      "--mask", str(out / "m.tif")])  # fmt: skip
    assert result.exit_code == 130
    assert list(out.iterdir()) == []


def test_values_that_are_not_probabilities_are_refused_naming_the_file(members, tmp_path):
    paths, _ = members
    logits = tmp_path / "logits.tif"
    tifffile.imwrite(logits, np.full((10, 24, 20), 3.5, np.float32))
    result = CliRunner().invoke(app, ["ensemble", paths[0], str(logits), "-o",
                                      str(tmp_path / "m.tif")])  # fmt: skip
    assert result.exit_code == 1
    assert "logits.tif (z 0-8): values outside [0, 1]" in result.output
    assert not (tmp_path / "m.tif").exists()


def test_one_file_given_twice_under_two_spellings_is_refused(members, tmp_path, monkeypatch):
    paths, _ = members
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["ensemble", paths[0], "a.tif", "-o", "m.tif"])
    assert result.exit_code == 1 and "a.tif: given twice" in result.output
    assert not (tmp_path / "m.tif").exists()
