import itertools

import numpy as np
import pytest
import torch

from emda import EmdaError
from emda.methods.alignment import (
    coral,
    ganin_schedule,
    gaussian_mmd2,
    grad_reverse,
    level_weights,
    sample_positions,
)


def _mmd2_direct(x: np.ndarray, y: np.ndarray, scales) -> float:
    """The V-statistic written out with loops, bandwidth from the median heuristic."""
    z = np.concatenate([x, y])
    n, m = len(x), len(z)
    d2 = np.array([[np.sum((z[i] - z[j]) ** 2) for j in range(m)] for i in range(m)])
    sigma2 = np.median([d2[i, j] for i in range(m) for j in range(m) if i != j])

    def k(a, b):
        return sum(np.exp(-np.sum((a - b) ** 2) / (2 * s * sigma2)) for s in scales)

    kxx = np.mean([[k(a, b) for b in x] for a in x])
    kyy = np.mean([[k(a, b) for b in y] for a in y])
    kxy = np.mean([[k(a, b) for b in y] for a in x])
    assert n == len(x)
    return kxx + kyy - 2 * kxy


def test_mmd_equals_a_direct_computation():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(9, 3)), rng.normal(0.5, 1.2, size=(7, 3))
    scales = (0.5, 1.0, 2.0)
    got = gaussian_mmd2(torch.tensor(x), torch.tensor(y), scales).item()
    assert got == pytest.approx(_mmd2_direct(x, y, scales), rel=1e-5)


def test_mmd_is_near_zero_for_one_distribution_and_grows_with_a_mean_shift():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 8, generator=g)
    values = [
        gaussian_mmd2(x, torch.randn(400, 8, generator=g) + shift).item()
        for shift in (0.0, 0.25, 0.5, 1.0, 2.0)
    ]
    assert values[0] < 0.01
    assert all(a < b for a, b in itertools.pairwise(values))


def test_coral_equals_the_numpy_formula_and_is_zero_for_equal_covariances():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(50, 4)), rng.normal(size=(30, 4)) @ rng.normal(size=(4, 4))
    expected = np.sum((np.cov(x, rowvar=False) - np.cov(y, rowvar=False)) ** 2) / (4 * 4**2)
    assert coral(torch.tensor(x), torch.tensor(y)).item() == pytest.approx(expected, rel=1e-5)
    # a shifted copy has the same covariance
    assert coral(torch.tensor(x), torch.tensor(x + 3.0)).item() == pytest.approx(0, abs=1e-6)


def test_gradient_reversal_is_identity_forward_and_negates_backward():
    x = torch.randn(5, requires_grad=True)
    y = grad_reverse(x, 0.3)
    torch.testing.assert_close(y, x)
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.full((5,), -0.3))


def test_ganin_schedule_endpoints():
    assert ganin_schedule(0.0) == 0.0
    assert ganin_schedule(1.0) == pytest.approx(1.0, abs=1e-4)
    assert 0 < ganin_schedule(0.1) < ganin_schedule(0.5) < 1


def test_positions_are_sampled_without_mixing_channels():
    f = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    samples = sample_positions(f, 10, torch.Generator().manual_seed(0))
    assert samples.shape == (10, 3)
    # each sample is one (b, h, w) position: channel c differs by c * 16 from channel 0
    torch.testing.assert_close(samples[:, 1] - samples[:, 0], torch.full((10,), 16.0))
    assert sample_positions(f, 1000).shape == (32, 3)


def test_level_weights_must_match_the_network():
    assert level_weights((0, 1, 2), 3) == [0.0, 1.0, 2.0]
    with pytest.raises(EmdaError, match="give 5 comma-separated weights"):
        level_weights((0, 1), 5)
    with pytest.raises(EmdaError, match=">= 0"):
        level_weights((0, -1), 2)
