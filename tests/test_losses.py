"""The pseudo-label loss: the labels' loss, on the pixels a teacher is confident of."""

import pytest
import torch

from emda.methods.losses import pseudo_label_loss, segmentation_loss


def _case():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 1, 8, 8, generator=g)
    teacher = torch.rand(2, 1, 8, 8, generator=g)
    return logits, teacher


@pytest.mark.parametrize("kind", ["bce", "dice", "bce_dice"])
def test_unconfident_pixels_teach_nothing(kind):
    logits, teacher = _case()
    loss, confident, _ = pseudo_label_loss(logits, teacher, 0.8, kind)
    changed = torch.where(confident.bool(), logits, logits + 5.0)  # only unconfident pixels
    assert torch.isclose(pseudo_label_loss(changed, teacher, 0.8, kind)[0], loss)
    unsure = torch.full_like(teacher, 0.6)  # confident nowhere
    assert pseudo_label_loss(logits, unsure, 0.8, kind)[0].item() == pytest.approx(0.0)


def test_where_the_teacher_is_sure_everywhere_it_is_the_labels_loss():
    logits, teacher = _case()
    sure = (teacher > 0.5).float()  # probabilities 0 and 1: every pixel teaches
    for kind in ("bce", "dice", "bce_dice"):
        loss, confident, pseudo = pseudo_label_loss(logits, sure, 0.9, kind)
        assert confident.all() and torch.equal(pseudo, sure)
        assert torch.isclose(loss, segmentation_loss(logits, sure, kind))
