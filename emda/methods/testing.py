"""Contract checks for method plugins; call them from your plugin's own tests.

from emda.methods.testing import check_method

def test_my_method_honours_the_contract():
    check_method(MyMethod)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import nn

from emda.methods.base import Batch, Method
from emda.model import UNet, UNetConfig
from emda.training.loop import compute_terms, total_loss


def check_method(
    method_cls: type[Method], options: Any = None, steps: int = 3, seed: int = 0
) -> dict[str, float]:
    """Build the method's heads and train a tiny U-Net for a few steps on CPU.

    Checks that the class is well formed (name, description, an options
    dataclass whose defaults construct), that every loss term is a finite
    scalar and every logged metric finite, that the summed loss reaches the
    network's parameters and every head's trainable parameters (a frozen head,
    e.g. an EMA teacher, is exempt), and that a few optimiser steps stay
    finite. Returns the last step's terms. Raises AssertionError with a
    message on the first failure.
    """
    assert issubclass(method_cls, Method), f"{method_cls!r} is not an emda.Method subclass"
    assert method_cls.name, f"{method_cls.__name__}.name is empty"
    assert method_cls.description, f"{method_cls.__name__}.description is empty"
    assert dataclasses.is_dataclass(method_cls.Options), "Options must be a dataclass"
    method = method_cls(options if options is not None else method_cls.Options())

    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = UNet(UNetConfig(base_channels=4, depth=4))  # default depth: default options fit
    heads = nn.ModuleDict(method.build_heads(model))
    method.initialise(model)
    params = [p for p in [*model.parameters(), *heads.parameters()] if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-3)
    terms_f: dict[str, float] = {}
    for it in range(steps):
        source = Batch(
            torch.rand(4, 1, 32, 32, generator=g),
            (torch.rand(4, 1, 32, 32, generator=g) > 0.7).float(),
        )
        target = (
            Batch(torch.rand(4, 1, 32, 32, generator=g) * 0.5 + 0.3) if method.uses_target else None
        )
        metrics: dict[str, torch.Tensor] = {}
        terms = compute_terms(model, heads, method, source, target, it / steps, it, metrics=metrics)
        assert isinstance(terms, dict) and terms, "loss_terms must return a non-empty dict"
        for name, value in terms.items():
            assert isinstance(name, str) and name.isidentifier(), f"bad term name {name!r}"
            assert isinstance(value, torch.Tensor) and value.numel() == 1, (
                f"term {name!r} must be a scalar tensor"
            )
            assert math.isfinite(float(value.detach())), f"term {name!r} is not finite"
        for name, value in metrics.items():
            assert math.isfinite(float(value)), f"metric {name!r} is not finite"
        optimizer.zero_grad(set_to_none=True)
        total_loss(terms, method.name).backward()
        if it == 0:
            assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters()), (
                "the loss does not reach the network"
            )
            for head_name, head in heads.items():
                trained = [p for p in head.parameters() if p.requires_grad]
                assert not trained or any(p.grad is not None for p in trained), (
                    f"head {head_name!r} gets no gradient: it is built but never used"
                )
        optimizer.step()
        terms_f = {k: float(v.detach()) for k, v in terms.items()}
    return terms_f
