"""`emda clean`: specks removed and holes filled, slice by slice, sizes from labels."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from emda.cli import app
from emda.errors import EmdaError
from emda.io.volume import Volume, open_volume
from emda.io.writer import write_volume
from emda.postprocessing.cleaning import (
    CleaningSizes,
    clean_slice,
    interior_object_areas,
    sizes_from_labels,
)


def square(mask: np.ndarray, y: int, x: int, side: int) -> None:
    mask[y : y + side, x : x + side] = True


def test_specks_go_unless_they_touch_the_border_and_large_objects_stay():
    mask = np.zeros((40, 40), bool)
    square(mask, 5, 5, 2)  # 4 px speck inside: removed
    square(mask, 0, 20, 2)  # 4 px speck on the border: kept, it may be a cut object
    square(mask, 20, 20, 5)  # 25 px: kept
    cleaned, counts = clean_slice(mask, CleaningSizes(min_size=10, max_hole=0))
    assert not cleaned[5:7, 5:7].any()
    assert cleaned[0:2, 20:22].all() and cleaned[20:25, 20:25].all()
    assert cleaned.sum() == mask.sum() - 4
    assert (counts.removed_objects, counts.removed_pixels) == (1, 4)


def test_diagonal_neighbours_make_one_object():
    mask = np.zeros((20, 20), bool)
    for i in range(6):  # a 6 px diagonal line: one 8-connected object
        mask[5 + i, 5 + i] = True
    cleaned, _ = clean_slice(mask, CleaningSizes(min_size=6, max_hole=0))
    assert np.array_equal(cleaned, mask)
    cleaned, _ = clean_slice(mask, CleaningSizes(min_size=7, max_hole=0))
    assert not cleaned.any()


def test_small_holes_are_filled_large_ones_and_open_background_are_not():
    mask = np.zeros((60, 60), bool)
    square(mask, 5, 5, 10)
    mask[9:11, 9:11] = False  # 4 px hole: filled
    square(mask, 25, 25, 30)
    mask[30:50, 30:50] = False  # 400 px hole: larger than max_hole, stays
    cleaned, counts = clean_slice(mask, CleaningSizes(min_size=0, max_hole=100))
    assert cleaned[9:11, 9:11].all()
    assert not cleaned[30:50, 30:50].any()
    assert not cleaned[0, :].any()  # the background open to the border is never a hole
    assert (counts.filled_holes, counts.filled_pixels) == (1, 4)


def test_a_hole_reaching_out_diagonally_is_still_a_hole():
    # background is 4-connected (the complement of 8-connected objects): a ring closed
    # only at its corners still encloses its centre
    mask = np.zeros((9, 9), bool)
    mask[2, 3:6] = mask[6, 3:6] = mask[3:6, 2] = mask[3:6, 6] = True
    cleaned, counts = clean_slice(mask, CleaningSizes(min_size=0, max_hole=20))
    assert cleaned[3:6, 3:6].all() and counts.filled_holes == 1


def test_zero_sizes_change_nothing():
    rng = np.random.default_rng(0)
    mask = rng.random((30, 30)) > 0.6
    cleaned, counts = clean_slice(mask, CleaningSizes(0, 0))
    assert np.array_equal(cleaned, mask) and counts.removed_objects == counts.filled_holes == 0


def test_sizes_are_the_first_percentile_and_median_of_interior_objects():
    labels = np.zeros((3, 64, 64), np.uint8)
    sides = [[2, 4, 6], [8, 3, 5], [7, 9, 10]]
    for z, row in enumerate(sides):
        for i, side in enumerate(row):
            labels[z, 5 + 20 * i : 5 + 20 * i + side, 10 : 10 + side] = 1
        labels[z, 0:30, 50:64] = 1  # touches the border: not counted
    areas = sorted(s * s for row in sides for s in row)
    assert sorted(interior_object_areas(labels[0] > 0)) == [4, 16, 36]
    sizes = sizes_from_labels(Volume(labels, "labels"))
    assert sizes.min_size == round(np.percentile(areas, 1))
    assert sizes.max_hole == round(np.median(areas)) == 36
    assert sizes_from_labels(Volume(labels, "labels"), (1, 2)).max_hole == 25


def test_labels_without_interior_objects_give_one_clear_error():
    labels = np.zeros((2, 20, 20), np.uint8)
    labels[:, 0:5, 0:5] = 1
    with pytest.raises(EmdaError, match="no labelled object inside"):
        sizes_from_labels(Volume(labels, "labels.tif"))


@pytest.fixture
def files(tmp_path):
    prob = np.zeros((3, 48, 48), np.float32)
    prob[:, 10:30, 10:30] = 0.9
    prob[:, 18:20, 18:20] = 0.2  # a hole
    prob[:, 40:42, 40:42] = 0.8  # a speck
    labels = np.zeros((3, 48, 48), np.uint8)
    labels[:, 10:30, 10:30] = 1
    labels[:, 5:8, 36:44] = 1  # a second, smaller object: the 1st percentile falls near it
    write_volume(tmp_path / "prob.tif", prob)
    write_volume(tmp_path / "labels.tif", labels)
    return tmp_path


def test_clean_command_writes_the_cleaned_mask_that_evaluate_scores(files):
    out = files / "clean.zarr"
    result = CliRunner().invoke(
        app, ["clean", str(files / "prob.tif"), "--mask", str(out),
              "--sizes-from", str(files / "labels.tif")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "min size 24 px, max hole 212 px" in result.output
    mask = open_volume(out).read()
    assert mask.dtype == np.uint8
    assert np.array_equal(mask, (open_volume(files / "labels.tif").read() == 1) & (mask > 0))
    assert mask[:, 10:30, 10:30].all() and not mask[:, 40:42, 40:42].any()
    scores = files / "scores.json"
    scored = CliRunner().invoke(
        app, ["evaluate", str(out), "--labels", str(files / "labels.tif"), "--json", str(scores)]
    )
    assert scored.exit_code == 0, scored.output
    (result,) = json.loads(scores.read_text())
    assert result["iou"] == pytest.approx(400 / 424)  # the square, not the 24 px object
    info = CliRunner().invoke(app, ["info", str(out)], env={"COLUMNS": "200"})
    assert "objects under 24 px removed, holes up to 212 px filled" in info.output


def test_sizes_given_by_hand_win_over_the_labels(files):
    out = files / "clean.tif"
    result = CliRunner().invoke(
        app, ["clean", str(files / "prob.tif"), "--mask", str(out), "--sizes-from",
              str(files / "labels.tif"), "--min-size", "0"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "min size 0 px, max hole 212 px" in result.output
    assert open_volume(out).read()[:, 40:42, 40:42].all()


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "needs --sizes-from LABELS"),
        (["--min-size", "5"], "or both --min-size and --max-hole"),
        (["--min-size", "-1", "--max-hole", "3"], "--min-size -1: must be >= 0"),
        (["--sizes-z", "0:2", "--min-size", "1", "--max-hole", "1"], "--sizes-z: needs"),
        (["--sizes-from", "LABELS", "--sizes-z", "0:9"], "--sizes-z 0:9"),
        (["--min-size", "1", "--max-hole", "1", "--threshold", "2"], "--threshold 2"),
    ],
)
def test_bad_options_give_one_line_and_write_nothing(files, args, message):
    out = files / "clean.tif"
    args = [a.replace("LABELS", str(files / "labels.tif")) for a in args]
    result = CliRunner().invoke(app, ["clean", str(files / "prob.tif"), "--mask", str(out), *args])
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output
    assert not out.exists() and sorted(p.name for p in files.iterdir()) == [
        "labels.tif",
        "prob.tif",
    ]


def test_a_failure_half_way_leaves_nothing_behind(files):
    prob = open_volume(files / "prob.tif").read()
    prob[2, 0, 0] = np.nan
    write_volume(files / "nan.tif", prob)
    out = files / "clean.tif"
    result = CliRunner().invoke(
        app, ["clean", str(files / "nan.tif"), "--mask", str(out), "--min-size", "1",
              "--max-hole", "1"],
    )  # fmt: skip
    assert result.exit_code == 1 and "NaN" in result.output
    assert not out.exists() and not list(files.glob("*partial*"))
