"""How a plugin author tests a method: emda's contract check plus the method's own maths."""

import math

import pytest
import torch
from emda_entropy import EntropyMinimisation, binary_entropy

from emda.methods import check_method


def test_honours_the_emda_method_contract():
    terms = check_method(EntropyMinimisation)
    assert set(terms) == {"seg", "entropy"}


def test_entropy_is_maximal_at_half_and_zero_when_certain():
    assert binary_entropy(torch.zeros(4)).item() == pytest.approx(math.log(2))
    assert binary_entropy(torch.full((4,), 30.0)).item() < 1e-6
