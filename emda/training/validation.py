"""Held-out source slices: the one check of an adapted model that needs no target label.

Adaptation is judged on the target, whose labels it must not see; but a model that no
longer segments held-out slices of its own *source* has learned a cue that real images
do not have (an augmentation's artefact, a reversed gradient that won). `emda adapt
--source-val-z` scores such slices after training, before target batch-norm statistics
replace the source's, and records the scores in the run.
"""

from __future__ import annotations

import numpy as np
import torch

from emda.data.normalization import IntensityRange
from emda.errors import EmdaError
from emda.evaluation.metrics import Confusion
from emda.inference.sliding_window import SlidingWindowPredictor
from emda.io.volume import Volume

THRESHOLD = 0.5


def check_held_out(val_z: tuple[int, int], train_z: list[int], option: str) -> None:
    """Refuse held-out slices that training also uses."""
    shared = sorted(set(range(*val_z)) & set(train_z))
    if shared:
        raise EmdaError(
            f"{option} {val_z[0]}:{val_z[1]}: slices {shared[0]}-{shared[-1]} are also "
            f"trained on (--source-z {train_z[0]}:{train_z[-1] + 1}); held-out slices must not be"
        )


def score_slices(
    model: torch.nn.Module,
    raw: Volume,
    labels: Volume,
    intensity: IntensityRange,
    z_range: tuple[int, int],
    device: torch.device,
) -> dict:
    """IoU, Dice, precision and recall of ``model`` on slices ``z_range`` at 0.5."""
    predictor = SlidingWindowPredictor(model, device)
    total = Confusion()
    for z in range(*z_range):
        prob = predictor.predict_slice(intensity.apply(raw.read(z)))
        total = total + Confusion.of(prob >= THRESHOLD, np.asarray(labels.read(z)) > 0)
    return {"z_range": list(z_range), "threshold": THRESHOLD, **total.scores()}
