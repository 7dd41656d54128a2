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


def pseudo_label_loss(
    logits: torch.Tensor, teacher_p: torch.Tensor, confidence: float | tuple[float, float]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """BCE of ``logits`` against a teacher's thresholded probabilities, on the pixels
    where the teacher is confident (probability of either class >= ``confidence``; a
    pair is a (foreground, background) threshold for each class).

    Averaged over *all* pixels, so a teacher that is confident nowhere teaches nothing
    rather than a few pixels loudly. Returns the loss, the confidence mask and the
    pseudo-labels (both float, for the caller's diagnostics).
    """
    foreground, background = (
        confidence if isinstance(confidence, tuple) else (confidence, confidence)
    )
    pseudo = (teacher_p > 0.5).float()
    confident = torch.where(
        teacher_p > 0.5, teacher_p >= foreground, 1 - teacher_p >= background
    ).float()
    per_pixel = F.binary_cross_entropy_with_logits(logits.float(), pseudo, reduction="none")
    return (per_pixel * confident).mean(), confident, pseudo
