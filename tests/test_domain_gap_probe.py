"""The domain-gap diagnostic measures what its docstring says, on masks with known answers."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

PROBE = Path(__file__).resolve().parents[1] / "benchmarks" / "domain_gap_probe.py"


@pytest.fixture(scope="module")
def probe():
    spec = importlib.util.spec_from_file_location("domain_gap_probe", PROBE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_chords_of_a_rectangle_are_its_width_and_height(probe):
    mask = np.zeros((20, 30), bool)
    mask[2:7, 10:22] = True  # 5 rows of 12, 12 columns of 5
    chords = probe.chord_lengths(mask)
    assert sorted(chords.tolist()) == [5] * 12 + [12] * 5


def test_chords_touching_the_border_and_split_runs_are_counted_apart(probe):
    mask = np.array([[1, 1, 0, 1], [0, 0, 0, 1]], bool)
    assert sorted(probe.chord_lengths(mask).tolist()) == [1, 1, 1, 1, 2, 2]


def test_a_uniform_region_has_no_gradient_inside(probe):
    image = np.zeros((16, 16), np.float32)
    image[:, 8:] = 1.0  # one step edge
    grad = probe.gradient_magnitude(image)
    assert grad[:, :6].max() == 0 and grad[:, 10:].max() == 0
    assert grad[:, 7:9].min() == pytest.approx(0.5)  # central differences across the edge
