"""The 8 flips/90-degree rotations of a square image (the dihedral group D4), which
in-plane EM is free to use: for augmentation, test-time averaging and consistency."""

from __future__ import annotations

import torch

TRANSFORMS = range(8)  # k % 4 quarter turns, then a left-right flip when k >= 4


def dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """Transform ``k`` of the last two (y, x) axes of ``x``; 0 is the identity."""
    x = torch.rot90(x, k % 4, dims=(-2, -1))
    return x.flip(-1) if k >= 4 else x


def undo_dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """The inverse of :func:`dihedral`: maps an output computed on ``dihedral(x, k)``
    back onto ``x``'s grid."""
    x = x.flip(-1) if k >= 4 else x
    return torch.rot90(x, -(k % 4), dims=(-2, -1))
