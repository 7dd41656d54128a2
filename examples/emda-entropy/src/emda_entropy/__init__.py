"""Entropy minimisation on target predictions (Grandvalet & Bengio 2005; Vu et al. 2019).

The source is trained as usual; on the unlabelled target, the network is pushed
towards confident predictions: loss = seg(source) + weight * mean binary entropy
of the target foreground probabilities. The weight ramps up linearly over the
first ``warmup`` fraction of training so early, random predictions are not
reinforced.
"""

from dataclasses import dataclass, field

import torch

from emda.methods import Method, hookimpl


@dataclass
class EntropyOptions:
    weight: float = field(default=0.1, metadata={"help": "weight of the target entropy term"})
    warmup: float = field(
        default=0.3, metadata={"help": "fraction of training over which the weight ramps up"}
    )

    def __post_init__(self) -> None:
        if self.weight < 0 or not 0 <= self.warmup <= 1:
            raise ValueError("weight must be >= 0 and warmup in [0, 1]")


def binary_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean entropy (nats) of Bernoulli(sigmoid(logits)), computed stably from logits."""
    p = torch.sigmoid(logits)
    return (torch.nn.functional.softplus(logits) - p * logits).mean()


class EntropyMinimisation(Method):
    name = "entropy"
    description = "Minimise the entropy of target predictions (example third-party plugin)."
    Options = EntropyOptions
    needs_target_logits = True  # the loop runs target patches through the decoder too

    def loss_terms(self, step):
        terms = super().loss_terms(step)
        ramp = min(1.0, step.progress / self.options.warmup) if self.options.warmup else 1.0
        terms["entropy"] = (
            self.options.weight * ramp * binary_entropy(step.target_out.logits.float())
        )
        return terms


@hookimpl
def emda_register_methods(register):
    register.add(EntropyMinimisation)
