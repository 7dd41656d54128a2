"""`emda measure`: measurements checked on shapes with known answers, block by block as
whole, and through the command line."""

import csv

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

import emda.analysis.measure as measure
from emda.cli import app
from emda.io.volume import Volume

runner = CliRunner()
VOXEL = (10.0, 5.0, 5.0)


@pytest.fixture
def shapes() -> np.ndarray:
    labels = np.zeros((30, 40, 50), np.uint32)
    z, y, x = np.indices(labels.shape)
    # an ellipsoid that is a sphere of radius 100 nm in z and 50 nm in y, x (anisotropic voxels)
    labels[(z - 15) ** 2 + (y - 20) ** 2 + (x - 20) ** 2 <= 10**2] = 1
    labels[2:7, 30:38, 40:50] = 2  # a box of 50 x 40 x 50 nm at the volume's x edge
    labels[20:22, 5:6, 45:47] = 7  # ids need not be consecutive
    return labels


def test_a_box_and_an_ellipsoid_measure_as_geometry_says(shapes):
    rows, intensity = measure.measure_labels(Volume(shapes, "l", VOXEL))
    assert list(rows["id"]) == [1, 2, 7] and intensity is None
    box = {k: v[1] for k, v in rows.items()}
    assert box["voxels"] == 400 and box["volume_nm3"] == 400 * 250
    assert box["surface_nm2"] == 2 * (50 * 40 + 50 * 50 + 40 * 50)  # exact on a box
    assert (box["z_min"], box["y_max"], box["x_max"]) == (2, 37, 49) and box["touches_border"]
    assert box["centroid_y_nm"] == pytest.approx(33.5 * 5)
    ball = {k: v[0] for k, v in rows.items()}
    # axes of the solid ellipsoid: 200 nm in z, 100 in y and x (digitised: within 3 %)
    assert ball["axis_major_nm"] == pytest.approx(200, rel=0.03)
    assert ball["axis_minor_nm"] == pytest.approx(100, rel=0.03)
    assert ball["elongation"] == pytest.approx(2, rel=0.03) and not ball["touches_border"]
    assert ball["volume_nm3"] == pytest.approx(4 / 3 * np.pi * 100 * 50 * 50, rel=0.03)
    assert (ball["centroid_z_nm"], ball["centroid_x_nm"]) == (150, 100)


def test_block_by_block_equals_the_whole_volume(shapes, monkeypatch):
    raw = Volume(np.arange(shapes.size, dtype=np.float32).reshape(shapes.shape), "raw")
    whole, whole_intensity = measure.measure_labels(Volume(shapes, "l", VOXEL), raw)
    monkeypatch.setattr(measure, "BLOCK_DEPTH", 4)
    monkeypatch.setattr(measure, "BLOCK_SIZE", 7)
    blocks, block_intensity = measure.measure_labels(Volume(shapes, "l", VOXEL), raw)
    for name in measure.COLUMNS:
        np.testing.assert_allclose(blocks[name], whole[name], rtol=1e-9, err_msg=name)
    np.testing.assert_allclose(block_intensity, whole_intensity)
    expected = [raw.array[shapes == i].mean() for i in (1, 2, 7)]
    np.testing.assert_allclose(whole_intensity, expected)


def test_the_command_writes_the_csv_the_summary_and_the_histogram(shapes, tmp_path):
    path = tmp_path / "labels.tif"
    tifffile.imwrite(path, shapes.astype(np.uint16))
    result = runner.invoke(app, ["measure", str(path), "--csv", str(tmp_path / "o.csv"),
                                 "--figure", str(tmp_path / "h.png"), "--quiet",
                                 "--voxel-size", "10,5,5"])  # fmt: skip
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "objects │ 3" in text and "touching the border │ 1" in text
    rows = list(csv.DictReader((tmp_path / "o.csv").read_text().splitlines()))
    assert [r["id"] for r in rows] == ["1", "2", "7"] and rows[1]["touches_border"] == "true"
    assert float(rows[1]["volume_nm3"]) == 100000
    assert (tmp_path / "h.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("ids", [(2**40, 3, 2**63 + 5), (5, 2**31, 2**32 + 1)])
def test_huge_or_sparse_ids_measure_as_their_renumbered_objects(shapes, ids, monkeypatch):
    """IDs of other tools' label images (hashes, block offsets, beyond int64) need no
    memory for the largest ID, and give the rows of the same objects numbered 1, 2, 7."""
    monkeypatch.setattr(measure, "BLOCK_DEPTH", 8)  # objects spread over blocks
    big = np.zeros(shapes.shape, np.uint64)
    for old, new in zip((1, 2, 7), ids):
        big[shapes == old] = new
    expected, _ = measure.measure_labels(Volume(shapes, "l", VOXEL))
    found, _ = measure.measure_labels(Volume(big, "l", VOXEL))
    order = np.argsort(ids)  # rows come in ID order
    assert list(found["id"]) == sorted(ids)
    for name in measure.COLUMNS[1:]:
        np.testing.assert_allclose(found[name], expected[name][order], err_msg=name)


def test_negative_labels_are_refused_by_measure_and_evaluate(tmp_path):
    labels = np.zeros((2, 8, 8), np.int32)
    labels[:, 2:5, 2:5] = -3
    path = tmp_path / "neg.tif"
    tifffile.imwrite(path, labels)
    for args in (["measure", str(path)], ["evaluate", str(path), "--labels", str(path),
                                          "--instances"]):  # fmt: skip
        result = runner.invoke(app, args)
        assert result.exit_code == 1 and "negative labels" in result.output, result.output
