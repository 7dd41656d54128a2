"""Instance metrics on hand-computed cases, and `emda evaluate --instances` end to end."""

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from emda.cli import app
from emda.evaluation.instances import match

runner = CliRunner()


def test_a_perfect_match_scores_one():
    s = match(np.array([0, 10]), np.array([0, 10]), np.array([[1, 1]]), np.array([10.0]))
    assert all(v == 1 for v in s.values())


def test_iou_between_the_thresholds_matches_at_half_not_at_three_quarters():
    # 6 shared voxels of two 8-voxel objects: IoU 6 / 10
    s = match(np.array([0, 8]), np.array([0, 8]), np.array([[1, 1]]), np.array([6.0]))
    assert (s["f1_50"], s["f1_75"], s["ap50"], s["ap75"]) == (1, 0, 1, 0)
    assert s["pq"] == pytest.approx(0.6)  # mean matched IoU x F1


def test_a_false_positive_and_a_miss():
    sizes_pred, sizes_true = np.array([0, 10, 5]), np.array([0, 10, 7])
    pairs, inter = np.array([[1, 1]]), np.array([10.0])
    s = match(sizes_pred, sizes_true, pairs, inter)
    assert (s["precision50"], s["recall50"], s["f1_50"]) == (0.5, 0.5, 0.5)
    assert s["pq"] == pytest.approx(1 / (1 + 0.5 + 0.5))
    # the hit ranked first: precision 1 up to recall 0.5 (51 of COCO's 101 points)
    assert s["ap50"] == pytest.approx(51 / 101)
    ranked_last = match(sizes_pred, sizes_true, pairs, inter, np.array([0, 0.2, 0.9]))
    assert ranked_last["ap50"] == pytest.approx(0.5 * 51 / 101)  # precision 0.5 there


def test_nothing_predicted_nothing_true():
    s = match(np.zeros(1), np.zeros(1), np.zeros((0, 2), int), np.zeros(0))
    assert s["f1_50"] == 1 and s["ap75"] == 1


def _evaluate_instances(tmp_path, pred: np.ndarray, truth: np.ndarray) -> dict:
    """``emda evaluate --instances --json`` of two arrays; the scores of the prediction."""
    import json

    for name, data in (("t.tif", truth), ("p.tif", pred)):
        tifffile.imwrite(tmp_path / name, data, photometric="minisblack")
    result = runner.invoke(app, ["evaluate", str(tmp_path / "p.tif"), "--labels",
                                 str(tmp_path / "t.tif"), "--instances", "--json",
                                 str(tmp_path / "e.json")])  # fmt: skip
    assert result.exit_code == 0, result.output
    (scores,) = json.loads((tmp_path / "e.json").read_text())
    return scores


def test_evaluate_instances_end_to_end(tmp_path):
    truth = np.zeros((3, 40, 40), np.uint16)
    truth[:, 2:10, 2:10] = 1  # matched exactly
    truth[:, 20:30, 20:30] = 9  # half covered: IoU 0.5, not above it
    truth[:, 32:38, 2:8] = 4  # missed
    pred = np.zeros((3, 40, 40), np.float32)
    pred[:, 2:10, 2:10] = 0.9
    pred[:, 20:30, 20:25] = 0.8
    pred[:, 2:6, 30:36] = 0.7  # a false positive
    scores = _evaluate_instances(tmp_path, pred, truth)
    found = scores["instances"]
    assert (found["predicted"], found["true"], found["truth_objects"]) == (3, 3, "labels")
    assert found["f1_50"] == pytest.approx(2 * 1 / 6)
    assert scores["iou"] == pytest.approx((64 + 50) / (64 + 100 + 36 + 24), rel=1e-6)


def test_label_images_with_huge_ids_score_as_renumbered_ones(tmp_path):
    truth = np.zeros((3, 40, 40), np.uint64)
    truth[:, 2:10, 2:10] = 2**63 + 1
    truth[:, 20:30, 20:30] = 2**40
    pred = np.zeros((3, 40, 40), np.uint64)
    pred[:, 2:10, 2:10] = 7
    pred[:, 20:30, 20:28] = 2**50  # IoU 0.8
    scores = _evaluate_instances(tmp_path, pred, truth)
    found = scores["instances"]
    assert (found["predicted"], found["true"]) == (2, 2)
    assert found["f1_50"] == found["f1_75"] == 1.0
