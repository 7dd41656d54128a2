"""The mean-teacher plugin: the teacher's EMA, its view of the target, the confidence
mask, its absence from exports, and an exact resume (the teacher is training state)."""

import pytest
import torch
from torch import nn

from emda.methods.base import Batch
from emda.methods.registry import load_registry
from emda.model import UNet, UNetConfig
from emda.model.checkpoint import load_checkpoint
from emda.training.loop import compute_terms
from emda_methods.meanteacher import Teacher

from .test_resume import ARGS, kill_resume_matches_whole


@pytest.fixture
def method_cls():
    return load_registry().get("meanteacher").cls


@pytest.mark.parametrize("k", range(8))
def test_teacher_maps_its_flipped_rotated_view_back_onto_the_input_grid(k):
    conv = nn.Conv2d(1, 1, kernel_size=1)  # pointwise: equivariant to every flip/rotation
    teacher = Teacher(conv)
    x = torch.rand(2, 1, 12, 12)
    expected = torch.sigmoid(conv(x)).detach()
    torch.testing.assert_close(teacher.probabilities(x, k), expected)


def test_teacher_follows_the_network_by_exponential_moving_average():
    torch.manual_seed(0)
    model = UNet(UNetConfig(base_channels=4, depth=2))
    teacher = Teacher(model)
    before = {k: v.clone() for k, v in teacher.net.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    teacher.follow(model, 0.75)
    for name, value in teacher.net.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(value, 0.75 * before[name] + 0.25 * model.state_dict()[name])
    assert not any(p.requires_grad for p in teacher.parameters())  # only the EMA moves it


class _Constant(nn.Module):
    def __init__(self, logit: float) -> None:
        super().__init__()
        self.logit = logit

    def forward(self, x):
        return torch.full_like(x, self.logit)


@pytest.mark.parametrize(("teacher_logit", "taught"), [(0.0, False), (5.0, True)])
def test_only_confident_teacher_pixels_teach(method_cls, teacher_logit, taught):
    method = method_cls(method_cls.Options(confidence=0.9))
    model = UNet(UNetConfig(base_channels=4, depth=2))
    heads = nn.ModuleDict(method.build_heads(model))
    heads["teacher"].net = _Constant(teacher_logit)  # p = 0.5 (unsure) or 0.993 (sure)
    src = Batch(torch.rand(2, 1, 32, 32), torch.zeros(2, 1, 32, 32))
    metrics = {}
    terms = compute_terms(
        model, heads, method, src, Batch(torch.rand(2, 1, 32, 32)), 0.5, 3, metrics=metrics
    )
    assert (terms["pseudo_label"].item() > 0) is taught
    share = 1.0 if taught else 0.0  # all pixels teach foreground, or none teach
    assert {k: v.item() for k, v in metrics.items()} == {
        "teaching_fraction": share,
        "teacher_foreground": share,
        "pseudo_foreground": share,
        "source_foreground": 0.0,
    }
    if taught:  # BCE against an all-foreground pseudo-label reaches the network
        terms["pseudo_label"].backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_pseudo_label_weight_ramps_up_then_holds(method_cls):
    options = method_cls.Options(lambda_consistency=2.0, rampup=0.25)
    weights = [options.weight(p) for p in (0.0, 0.1, 0.2, 0.25, 0.9)]
    assert weights == sorted(weights) and weights[0] < 0.02 and weights[3:] == [2.0, 2.0]
    assert method_cls.Options(rampup=0.0).weight(0.0) == 1.0


def test_options_are_checked(method_cls):
    bad_options = ({"ema": 1.0}, {"confidence": 0.4}, {"lambda_consistency": -1.0}, {"rampup": 2})
    for bad in bad_options:
        with pytest.raises(ValueError):
            method_cls.Options(**bad)


def test_sigkill_then_resume_restores_the_teacher(tmp_path):
    # every pixel teaches from the first step, so a teacher not restored changes the result
    args = [a if a != "dann" else "meanteacher" for a in ARGS]
    args += ["--opt", "confidence=0.5", "--opt", "rampup=0"]
    whole = kill_resume_matches_whole(tmp_path, args)
    ckpt = load_checkpoint(whole)  # the teacher is training state, not part of the export
    assert ckpt.heads == {} and set(ckpt.state_dict) == set(ckpt.build_model().state_dict())
