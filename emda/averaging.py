"""Weight averaging over the end of training (stochastic weight averaging, Izmailov et
al. 2018).

Adversarial and self-training runs move the target's features around until the last
iteration, so which iteration training stops at decides much of the target score (on
EPFL -> VNC, DANN checkpoints 250 iterations apart in the second half of training differ
by up to 19 IoU points; benchmarks/FINDINGS.md, "DANN"). The
mean of the weights over the last part of training is a point between those
iterations, chosen without a label. Batch-norm running statistics are averaged with the
weights; target batch-norm statistics (``emda adapt``'s last step) replace them anyway.
"""

from __future__ import annotations

import torch
from torch import nn


class WeightAverage:
    """Uniform running mean of a model's floating-point state (weights and batch-norm
    statistics); integer buffers (batch counters) are taken from the latest update."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.count += 1
        for name, value in model.state_dict().items():
            value = value.detach()
            if not value.is_floating_point():
                self.mean[name] = value.clone()
            elif self.count == 1:  # float64: 1500 updates of m += (x - m) / n add no drift
                self.mean[name] = value.double()
            else:
                self.mean[name] += (value.double() - self.mean[name]) / self.count

    def weights(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The average as a state dict for ``model`` (its dtypes), on the CPU."""
        return {name: self.mean[name].to("cpu", value.dtype)
                for name, value in model.state_dict().items()}  # fmt: skip

    def state_dict(self) -> dict:
        return {"count": self.count, "mean": {k: v.cpu() for k, v in self.mean.items()}}

    def load_state_dict(self, state: dict, device: torch.device | str = "cpu") -> None:
        self.count = int(state["count"])
        self.mean = {name: value.to(device) for name, value in state["mean"].items()}


def first_averaged(iterations: int, fraction: float) -> int:
    """The first iteration (counted from 1) whose weights go into the average of the
    last ``fraction`` of ``iterations``; at least the last iteration is averaged."""
    return iterations - max(1, round(fraction * iterations)) + 1
