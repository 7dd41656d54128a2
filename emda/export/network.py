"""The network as exported: a normalised (B, 1, H, W) image in, probabilities out.

emda's own predictor applies the sigmoid after the network; an exported model carries
it, so every runtime gets probabilities. Normalisation stays outside the network: emda
maps a whole volume's 1st and 99th percentiles to 0 and 1, which one tile cannot know
(docs/export.md says how each format describes it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from emda import __version__
from emda.errors import EmdaError
from emda.model.checkpoint import Checkpoint, load_checkpoint


class ProbabilityNetwork(nn.Module):
    """A U-Net in eval mode with the sigmoid on its logits."""

    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        self.unet = unet.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.unet(x))


def load_network(run: str | Path) -> tuple[Checkpoint, ProbabilityNetwork]:
    """The checkpoint of a run directory (or checkpoint.pt) and its exportable network."""
    checkpoint = load_checkpoint(run)
    return checkpoint, ProbabilityNetwork(checkpoint.build_model()).eval()


def describe(checkpoint: Checkpoint) -> dict[str, Any]:
    """What a user of the exported file needs to feed it: stored beside the weights."""
    norm = checkpoint.normalization
    return {
        "producer": f"emda {__version__}",
        "input": "float32 (batch, 1, height, width), height and width multiples of "
        f"{checkpoint.model_config.divisor}",
        "normalization": {
            "kind": "percentile range to [0, 1], not clipped",
            "lower_percentile": norm.lower_percentile,
            "upper_percentile": norm.upper_percentile,
            "over": "the whole volume (emda); per sample in bioimage.io packages",
        },
        "output": "float32 (batch, 1, height, width): mitochondria probability",
        "pixel_size_nm": checkpoint.pixel_size,
        "method": checkpoint.method,
        "size_multiple": checkpoint.model_config.divisor,
    }


def example_tile(checkpoint: Checkpoint, size: int = 256) -> torch.Tensor:
    """A (1, 1, size, size) tile to trace and check with: zeros and ones are not enough
    to exercise batch norm, so a seeded random image in emda's normalised range."""
    size -= size % checkpoint.model_config.divisor
    if size <= 0:
        raise EmdaError(f"tile size must be at least {checkpoint.model_config.divisor}")
    generator = np.random.default_rng(0)
    return torch.from_numpy(generator.random((1, 1, size, size), dtype=np.float32))


def metadata_json(checkpoint: Checkpoint) -> str:
    return json.dumps(describe(checkpoint), indent=2)
