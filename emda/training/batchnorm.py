"""Target batch-norm statistics (AdaBN, Li et al. 2016).

Training passes source and target batches through the network separately, so each
domain is normalised with its own batch statistics during training, while the
running statistics used at inference are a blend of both domains. Re-estimating
the running statistics on target patches after training gives the target, at
inference, the normalisation it had during training. No weight changes and no
label is used.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from emda.data.sampling import PatchSampler

DEFAULT_BATCHES = 100


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module,
    sampler: PatchSampler,
    device: torch.device,
    batches: int = DEFAULT_BATCHES,
    batch_size: int = 8,
    seed: int = 0,
) -> int:
    """Replace every batch-norm layer's running mean/variance with the average over
    ``batches`` batches from ``sampler``; returns how many layers were updated.

    The model is left in eval mode; its weights are untouched.
    """
    layers = batchnorm_layers(model)
    if not layers:
        return 0
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # cumulative average: every batch counts the same
    rng = np.random.default_rng(seed)
    model.to(device).train()
    try:
        for _ in range(batches):
            x = sampler.sample(batch_size, rng).x.to(device, memory_format=torch.channels_last)
            model(x)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
        model.eval()
    return len(layers)
