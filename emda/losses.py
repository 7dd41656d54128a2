"""Segmentation losses shared by every method (source and finetuning batches)."""

from __future__ import annotations

from enum import Enum

import torch
import torch.nn.functional as F


class SegLoss(str, Enum):
    bce = "bce"
    dice = "dice"
    bce_dice = "bce_dice"


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - soft Dice over the whole batch (batch-level, so empty patches are harmless)."""
    p = torch.sigmoid(logits.float())
    inter = (p * target).sum()
    return 1 - (2 * inter + eps) / (p.sum() + target.sum() + eps)


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, kind: str = "bce_dice"):
    kind = SegLoss(kind)
    bce = F.binary_cross_entropy_with_logits(logits.float(), target)
    if kind is SegLoss.bce:
        return bce
    dice = soft_dice_loss(logits, target)
    return dice if kind is SegLoss.dice else bce + dice
