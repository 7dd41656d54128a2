"""Weight averaging over the end of training (stochastic weight averaging, Izmailov et
al. 2018).

Adversarial and self-training runs move the target's features around until the last
iteration, so which iteration training stops at can decide much of the target score. The
mean of the weights over the last part of training is a point between those
iterations, chosen without a label. Batch-norm running statistics are averaged with the
weights; target batch-norm statistics (``emda adapt``'s last step) replace them anyway.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch


class WeightAverage:
    """Uniform running mean of a model's floating-point state (weights and batch-norm
    statistics), fed one state dict at a time (the model's during training, saved
    checkpoints' afterwards); integer buffers (batch counters) come from the latest."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def update(self, state: Mapping[str, torch.Tensor]) -> None:
        self.count += 1
        for name, value in state.items():
            value = value.detach()
            if not value.is_floating_point():
                self.mean[name] = value.clone()
            elif self.count == 1:  # float64: 1500 updates of m += (x - m) / n add no drift
                self.mean[name] = value.double()
            else:
                self.mean[name] += (value.double() - self.mean[name]) / self.count

    def weights(self, like: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The average as a state dict with ``like``'s names and dtypes, on the CPU."""
        return {name: self.mean[name].to("cpu", value.dtype) for name, value in like.items()}

    def state_dict(self) -> dict:
        return {"count": self.count, "mean": {k: v.cpu() for k, v in self.mean.items()}}

    def load_state_dict(self, state: dict, device: torch.device | str = "cpu") -> None:
        self.count = int(state["count"])
        self.mean = {name: value.to(device) for name, value in state["mean"].items()}


def first_averaged(iterations: int, fraction: float) -> int:
    """The first iteration (counted from 1) whose weights go into the average of the
    last ``fraction`` of ``iterations``; at least the last iteration is averaged."""
    return iterations - max(1, round(fraction * iterations)) + 1
