"""Output-space adversarial adaptation (AdaptSegNet, Tsai et al., CVPR 2018).

A discriminator looks at *segmentation maps*, not features: it learns to tell the
network's foreground probabilities on source patches from those on target patches,
and the network, through a gradient-reversal layer, learns target predictions the
discriminator cannot tell from source ones:

    loss = seg(source) + lambda * BCE(D(GRL(p)), domain)

Why it suits mitochondria across microscopes: what the two domains share is the
*output* (the organelles are the same size in pixels in EPFL FIB-SEM and Drosophila
ssTEM, ``benchmarks/domain_gap_probe.py``), while their appearance differs, so matching
the layout of the predictions asks for less than matching features. It is the
adversarial core of the later EM methods (DAMT-Net, DA-ISC).

The discriminator is AdaptSegNet's: 4x4 convolutions with stride 2 and leaky ReLU,
one logit per patch of the map. The reversal coefficient ramps up with Ganin's
schedule, as DANN's. Logged metric: ``domain_accuracy`` (0.5: the discriminator is
fooled). The discriminator is a training-time head, dropped from exported models.
"""

from dataclasses import dataclass, field
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

from emda import Method, hookimpl
from emda.alignment import ganin_schedule, grad_reverse


@dataclass
class OutAdvOptions:
    # the D loss starts at ln 2: 0.1 makes the term 5-25 % of the segmentation loss, the
    # scale rule every other method's weights follow (README, Built-in methods)
    weight: float = field(default=0.1, metadata={"help": "weight of the adversarial term"})
    width: int = field(default=32, metadata={"help": "feature maps of the first D layer"})
    gamma: float = field(default=10.0, metadata={"help": "steepness of the reversal schedule"})
    schedule: bool = field(
        default=True, metadata={"help": "ramp the reversal coefficient up (false: always 1)"}
    )

    def __post_init__(self) -> None:
        if self.weight < 0:
            raise ValueError("weight must be >= 0")
        if self.width < 1:
            raise ValueError("width must be >= 1")


def output_discriminator(width: int) -> nn.Module:
    """(B, 1, H, W) probabilities -> (B, 1, H/16, W/16) logits (AdaptSegNet's D)."""
    layers: list[nn.Module] = []
    channels = [1, width, 2 * width, 4 * width, 8 * width]
    for c_in, c_out in pairwise(channels):
        layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
    layers.append(nn.Conv2d(channels[-1], 1, 3, padding=1))
    return nn.Sequential(*layers)


class OutputAdversarial(Method):
    name = "outadv"
    description = "A discriminator on the segmentation maps, fooled through gradient reversal."
    Options = OutAdvOptions
    needs_target_logits = True

    def build_heads(self, model):
        return {"discriminator": output_discriminator(self.options.width)}

    def loss_terms(self, step):
        terms = super().loss_terms(step)
        o = self.options
        coefficient = ganin_schedule(step.progress, o.gamma) if o.schedule else 1.0
        maps = torch.cat([step.source_out.logits, step.target_out.logits]).float().sigmoid()
        logits = step.heads["discriminator"](grad_reverse(maps, coefficient))
        n = len(step.source_out.logits)
        domain = torch.zeros_like(logits)
        domain[n:] = 1.0
        terms["adversarial"] = o.weight * F.binary_cross_entropy_with_logits(logits, domain)
        step.log_metric("domain_accuracy", ((logits > 0).float() == domain).float().mean())
        return terms


@hookimpl
def emda_register_methods(register):
    register.add(OutputAdversarial)
