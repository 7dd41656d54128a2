"""DANN: domain classifiers on encoder features, trained through gradient reversal (Eq. 1).

Each regularised level gets a small convolutional domain classifier over its feature
map (two 3x3 convolutions, so each logit sees a 5 x 5 neighbourhood). The classifiers
learn to tell source from target; the gradient-reversal layer makes the encoder learn
features that fool them. The reversal coefficient ramps up with Ganin's schedule
2 / (1 + exp(-gamma p)) - 1 over training progress p. Each classifier's accuracy is
logged as the metric ``domain_accuracy<level>`` (0.5: the domains look alike).

A classifier of single feature vectors (the paper's form) sees nothing here: emda runs
source and target through separate batch-norm passes, which already match every
channel's mean and variance across domains, so only spatial context is left to align.
"""

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from emda.methods import (
    AlignmentOptions,
    Method,
    ganin_schedule,
    grad_reverse,
    hookimpl,
    level_weights,
)


@dataclass
class DannOptions(AlignmentOptions):
    lambdas: tuple[float, ...] = field(
        default=(0.0, 0.0, 0.01, 0.03, 0.1),  # BCE starts at ln 2 ~ 0.69 per level
        metadata={"help": "weight per encoder level and the bottleneck, shallow to deep"},
    )
    hidden: int = field(default=64, metadata={"help": "hidden channels of each classifier"})
    gamma: float = field(default=10.0, metadata={"help": "steepness of the reversal schedule"})
    schedule: bool = field(
        default=True, metadata={"help": "ramp the reversal coefficient up (false: always 1)"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.hidden < 1:
            raise ValueError("hidden must be >= 1")


def domain_classifier(channels: int, hidden: int) -> nn.Module:
    """(B, C, H, W) feature maps -> (B, 1, H, W) domain logits."""
    return nn.Sequential(
        nn.Conv2d(channels, hidden, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(hidden, hidden, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(hidden, 1, 1),
    )


class DANN(Method):
    name = "dann"
    description = "Domain-adversarial training with gradient reversal on encoder features (Eq. 1)."
    Options = DannOptions

    def build_heads(self, model):
        weights = level_weights(self.options.lambdas, len(model.encoder.channels))
        return {
            f"domain{level}": domain_classifier(channels, self.options.hidden)
            for level, (weight, channels) in enumerate(zip(weights, model.encoder.channels))
            if weight > 0
        }

    def reversal_coefficient(self, progress: float) -> float:
        return ganin_schedule(progress, self.options.gamma) if self.options.schedule else 1.0

    def loss_terms(self, step):
        terms = super().loss_terms(step)
        coefficient = self.reversal_coefficient(step.progress)
        source, target = step.source_out.features, step.target_out.features
        weights = level_weights(self.options.lambdas, len(source))
        for level, (weight, xs, xt) in enumerate(zip(weights, source, target)):
            if weight == 0:
                continue
            samples = grad_reverse(torch.cat([xs, xt]), coefficient)
            logits = step.heads[f"domain{level}"](samples.float()).squeeze(1)
            domain = torch.cat([torch.zeros(len(xs)), torch.ones(len(xt))]).to(logits.device)
            domain = domain.view(-1, *[1] * (logits.dim() - 1)).expand_as(logits)
            terms[f"dann{level}"] = weight * F.binary_cross_entropy_with_logits(logits, domain)
            step.log_metric(
                f"domain_accuracy{level}", ((logits > 0).float() == domain).float().mean()
            )
        return terms


@hookimpl
def emda_register_methods(register):
    register.add(DANN)
