"""A finished model's predictions of the target as training material (pseudo-labels).

Self-training methods need three things from the core: a frozen *teacher* network
that predicts target patches, the teacher's prediction of whole target slices (with
``emda predict``'s own tiles and blending), or a prediction already written to a
file; and, optionally, per-class confidence thresholds read off that prediction.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from emda.data.dihedral import dihedral, undo_dihedral
from emda.data.normalization import IntensityRange
from emda.data.resample import in_plane, pixel_zoom
from emda.errors import EmdaError
from emda.evaluation.evaluate import prediction_kind
from emda.inference.sliding_window import SlidingWindowPredictor
from emda.io.volume import Volume, open_volume, split_address
from emda.model.checkpoint import Checkpoint, load_checkpoint
from emda.postprocessing.ensemble import to_probability

log = logging.getLogger("emda")

TILE, BATCH = 256, 8  # emda predict's default tiles


class FrozenTeacher(nn.Module):
    """A finished model, frozen, that predicts target patches under test-time flips."""

    def __init__(self, checkpoint: Checkpoint, batch_stats: bool = False) -> None:
        super().__init__()
        self.net = checkpoint.build_model()
        self.pixel_size = checkpoint.pixel_size  # slices of another pixel size are resampled
        self.batch_stats = batch_stats
        for p in self.net.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def probabilities(self, x: torch.Tensor, transforms: list[int]) -> torch.Tensor:
        """Foreground probability of ``x``, averaged over the dihedral ``transforms``."""
        self.net.train(self.batch_stats)  # the loop sets heads to train mode: undo that
        total = torch.zeros_like(x, dtype=torch.float32)
        for k in transforms:
            total += torch.sigmoid(undo_dihedral(self.net(dihedral(x, k)).float(), k))
        return total / len(transforms)

    def predict_slices(
        self,
        raw: Volume,
        intensity: IntensityRange,
        z_indices: list[int],
        views: int,
        device: torch.device,
    ) -> Volume:
        """The teacher's probabilities for the slices ``z_indices`` of ``raw`` (the rest
        stays 0), the first ``views`` flips/rotations averaged. Held in memory: 4 bytes
        per voxel of ``raw``."""
        zoom = pixel_zoom(in_plane(raw.voxel_size), self.pixel_size)
        predictor = SlidingWindowPredictor(
            self.net, device, TILE, batch_size=BATCH, tta=views > 1, views=views, zoom=zoom
        )
        prob = np.zeros(raw.shape, dtype=np.float32)
        for z in z_indices:
            prob[z] = predictor.predict_slice(intensity.apply(raw.read(z)))
        return Volume(prob, f"{raw.path} (teacher prediction)", raw.voxel_size)


def load_teacher(path: str | Path, needs_target_bn: bool = True) -> Checkpoint:
    """A teacher's checkpoint; warns when it still holds source batch-norm statistics."""
    checkpoint = load_checkpoint(path)
    if needs_target_bn and not (checkpoint.training or {}).get("target_bn"):
        log.warning(
            "teacher %s holds source batch-norm statistics; give it target ones "
            "(emda recalibrate) or use --opt teacher_bn=batch",
            path,
        )
    return checkpoint


def read_prediction(path: str, raw: Volume, z_indices: list[int], option: str) -> Volume:
    """A stored prediction of ``raw`` as probabilities, its slices ``z_indices`` read and
    checked now (the rest 0), not half way through training. ``option`` names where
    the path came from in error messages."""
    if not split_address(path)[0].exists():
        raise EmdaError(f"{option}: no such file")
    volume = open_volume(path)
    if volume.shape != raw.shape:
        raise EmdaError(
            f"{option}: shape {volume.shape} differs from the target {raw.path}'s {raw.shape}"
        )
    if volume.dtype.kind not in "fuib":
        raise EmdaError(f"{option}: dtype {volume.dtype} is not a prediction")
    kind = prediction_kind(volume)
    prob = np.zeros(raw.shape, dtype=np.float32)
    for z in z_indices:
        prob[z] = to_probability(volume.read(z), kind, f"{path} (z={z})")
    return Volume(prob, path, raw.voxel_size)


def class_balanced_confidence(
    guide: Volume, z_indices: list[int], confidence: float, bins: int = 2000
) -> tuple[float, float]:
    """(foreground, background) thresholds at which each class of the prediction
    ``guide`` teaches the same share of its own pixels (slices ``z_indices``): the class
    that teaches the larger share at ``confidence`` keeps it, the other's threshold is
    lowered to match (class-balanced self-training, Zou et al. 2018). Without it a
    teacher that is less sure of mitochondria than of background teaches mostly
    background. Thresholds are read off a histogram of ``bins`` steps over [0.5, 1]."""
    edges = np.linspace(0.5, 1.0, bins + 1)
    counts = np.zeros((2, bins), dtype=np.int64)  # foreground, background
    taught = np.zeros(2, dtype=np.int64)  # at `confidence`, counted exactly
    for z in z_indices:
        p = guide.read(z).ravel()
        fg = p > 0.5
        for c, sure in enumerate((p[fg], 1 - p[~fg])):  # each class's own confidence
            counts[c] += np.histogram(sure, edges)[0]
            taught[c] += int((sure >= confidence).sum())
    totals = counts.sum(axis=1)
    if not totals.all():
        return confidence, confidence  # one class only: nothing to balance
    shares = taught / totals
    smaller = int(np.argmin(shares))
    # the smaller class's share at or above each edge; edge 0.5 holds all of it
    above = np.cumsum(counts[smaller][::-1])[::-1] / totals[smaller]
    highest = int(np.nonzero(above >= shares[1 - smaller])[0][-1])
    thresholds = [confidence, confidence]
    thresholds[smaller] = min(float(edges[highest]), confidence)
    return thresholds[0], thresholds[1]
