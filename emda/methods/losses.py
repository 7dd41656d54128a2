"""Segmentation losses shared by every method (source, finetuning and pseudo-labels)."""

from __future__ import annotations

from enum import Enum

import torch
import torch.nn.functional as F


class SegLoss(str, Enum):
    bce = "bce"
    dice = "dice"
    bce_dice = "bce_dice"


def soft_dice_loss(
    logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """1 - soft Dice over the whole batch (batch-level, so empty patches are harmless),
    counting only the pixels where ``mask`` is 1 when it is given."""
    p = torch.sigmoid(logits.float())
    if mask is not None:
        p, target = p * mask, target * mask
    inter = (p * target).sum()
    return 1 - (2 * inter + eps) / (p.sum() + target.sum() + eps)


def segmentation_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    kind: str = "bce_dice",
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The loss ``kind``; with a ``mask``, only its pixels count (the BCE still averaged
    over every pixel, so an empty mask gives 0)."""
    kind = SegLoss(kind)
    per_pixel = F.binary_cross_entropy_with_logits(logits.float(), target, reduction="none")
    bce = (per_pixel if mask is None else per_pixel * mask).mean()
    if kind is SegLoss.bce:
        return bce
    dice = soft_dice_loss(logits, target, mask=mask)
    return dice if kind is SegLoss.dice else bce + dice


def pseudo_label_loss(
    logits: torch.Tensor,
    teacher_p: torch.Tensor,
    confidence: float | tuple[float, float],
    kind: str = "bce",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The segmentation loss ``kind`` of ``logits`` against a teacher's thresholded
    probabilities, on the pixels where the teacher is confident (probability of either
    class >= ``confidence``; a pair is a (foreground, background) threshold for each
    class).

    The BCE is averaged over *all* pixels, so a teacher that is confident nowhere
    teaches nothing rather than a few pixels loudly; the Dice term counts the confident
    pixels only. Returns the loss, the confidence mask and the pseudo-labels (both
    float, for the caller's diagnostics).
    """
    foreground, background = (
        confidence if isinstance(confidence, tuple) else (confidence, confidence)
    )
    pseudo = (teacher_p > 0.5).float()
    confident = torch.where(
        teacher_p > 0.5, teacher_p >= foreground, 1 - teacher_p >= background
    ).float()
    return segmentation_loss(logits, pseudo, kind, mask=confident), confident, pseudo
