import math

import numpy as np
import pytest

from emda.evaluation.metrics import Confusion


def test_hand_computed_example():
    pred = np.array([[1, 1, 0, 0], [1, 0, 0, 0]])
    truth = np.array([[1, 0, 0, 0], [1, 1, 1, 0]])
    c = Confusion.of(pred, truth)
    assert (c.tp, c.fp, c.fn, c.tn) == (2, 1, 2, 3)
    assert c.iou == pytest.approx(2 / 5)
    assert c.dice == pytest.approx(4 / 7)
    assert c.precision == pytest.approx(2 / 3)
    assert c.recall == pytest.approx(2 / 4)


def test_empty_prediction_and_truth_agree_perfectly():
    c = Confusion.of(np.zeros((3, 3)), np.zeros((3, 3)))
    assert c.iou == 1.0 and c.dice == 1.0
    assert math.isnan(c.precision) and math.isnan(c.recall)


@pytest.mark.parametrize("seed", range(5))
def test_matches_the_numpy_formula_on_random_masks(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(1, 40, size=3))
    pred, truth = rng.random(shape) < rng.random(), rng.random(shape) < rng.random()
    c = Confusion.of(pred, truth)
    inter, union = np.logical_and(pred, truth).sum(), np.logical_or(pred, truth).sum()
    assert c.iou == pytest.approx(inter / union if union else 1.0)
    assert c.dice == pytest.approx(2 * inter / (pred.sum() + truth.sum()) if union else 1.0)
    # summing per-slice counts gives the volume counts
    total = sum((Confusion.of(p, t) for p, t in zip(pred, truth)), Confusion())
    assert total == c
