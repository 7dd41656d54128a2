"""Score predictions (probabilities or masks) against a ground-truth mask."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emda.errors import EmdaError
from emda.evaluation.metrics import Confusion
from emda.io.volume import Volume, open_volume, to_foreground
from emda.safety.validate import check_complete, check_probabilities

#: each entry of ``emda evaluate --json`` (a list, one entry per prediction) names its
#: layout; bumped when a field changes meaning or goes away
SCHEMA = "emda-evaluate/1"


@dataclass
class Evaluation:
    prediction: str
    truth: str
    threshold: float
    z_range: tuple[int, int]
    total: Confusion
    per_slice: list[tuple[int, Confusion]] = field(default_factory=list)
    instances: Any = None  # emda.evaluation.instances.InstanceScores, when asked for

    def to_dict(self, per_slice: bool = False) -> dict:
        out = {
            "schema": SCHEMA,
            "prediction": self.prediction,
            "truth": self.truth,
            "threshold": self.threshold,
            "z_range": list(self.z_range),
            **_defined(self.total.scores()),
            **self.total.counts(),
        }
        if per_slice:  # the CSV's rows: scores and the counts they come from
            out["per_slice"] = [{"z": z, **_defined(c.scores()), **c.counts()}
                                for z, c in self.per_slice]  # fmt: skip
        if self.instances is not None:
            out["instances"] = _defined(self.instances.to_dict())
        return out


def _defined(values: dict) -> dict:
    """NaN (precision without predicted pixels, ...) as JSON's null, which every parser
    reads; NaN is not JSON."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in values.items()}


def parse_z_range(text: str | None, depth: int, option: str = "--z-range") -> tuple[int, int]:
    """``"13:20"`` -> (13, 20), half-open like Python slices; None -> whole stack."""
    if text is None or text.strip() == "":
        return 0, depth
    start_s, sep, stop_s = text.partition(":")
    try:
        start = int(start_s) if start_s.strip() else 0
        stop = int(stop_s) if stop_s.strip() else depth
    except ValueError:
        raise EmdaError(f"{option} {text}: expected START:STOP, e.g. 13:20") from None
    if not sep or not 0 <= start < stop <= depth:
        raise EmdaError(
            f"{option} {text}: expected START:STOP with 0 <= START < STOP <= {depth} (z size)"
        )
    return start, stop


def prediction_kind(volume: Volume) -> str:
    """'mask', 'probability' or 'labels'. Integers with max <= 1 are masks; emda's label
    images (``emda instances``) and integers wider than 8 bits beyond {0, 1, 255} are
    labels (objects against 0); other integers are probabilities scaled to 0-255 (which
    also reads {0, 255} masks correctly); floats are probabilities in [0, 1]."""
    if volume.dtype.kind == "f":
        return "probability"
    if volume.dtype.kind == "b":
        return "mask"
    attrs = getattr(volume.array, "attrs", None)
    if attrs is not None and dict(attrs).get("emda_kind") in ("mask", "probability", "labels"):
        return dict(attrs)["emda_kind"]
    peak = max(int(np.max(volume.read(z))) for z in range(volume.shape[0]))
    if peak > 255 or (volume.dtype.itemsize > 1 and holds_labels(volume)):
        return "labels"
    return "mask" if peak <= 1 else "probability"


def holds_labels(volume: Volume, zs: range | None = None) -> bool:
    """Integers beyond a mask's {0, 1} or {0, 255} on the slices ``zs`` (default all)."""
    if volume.dtype.kind not in "iu":
        return False
    for z in range(volume.shape[0]) if zs is None else zs:
        block = volume.read(z)
        if np.any((block != 0) & (block != 1) & (block != 255)):
            return True
    return False


def check_threshold(threshold: float) -> None:
    if not 0 <= threshold <= 1:
        raise EmdaError(f"--threshold {threshold}: must be in [0, 1]")


def binarize(block: np.ndarray, kind: str, threshold: float, source: str) -> np.ndarray:
    if kind in ("mask", "labels"):
        return block.astype(bool)
    if block.dtype.kind == "f":
        check_probabilities(block, source)
        return block >= threshold
    return block.astype(np.float32) / 255.0 >= threshold


def score_volume(
    prediction: Volume,
    truth: Volume,
    threshold: float = 0.5,
    z_range: str | None = None,
    foreground: float | None = None,
) -> Evaluation:
    """Pixel counts of ``prediction`` (probabilities or a mask) against the mask ``truth``,
    overall and per slice, on slices ``z_range`` (START:STOP, default all)."""
    check_threshold(threshold)
    if prediction.shape != truth.shape:
        raise EmdaError(
            f"{prediction.path}: shape {prediction.shape} differs from ground truth "
            f"{truth.path} shape {truth.shape}"
        )
    check_complete(prediction)
    start, stop = parse_z_range(z_range, truth.shape[0])
    kind = prediction_kind(prediction)
    per_slice = []
    for z in range(start, stop):
        pred = binarize(prediction.read(z), kind, threshold, prediction.path)
        gt = to_foreground(truth.read(z), truth.path, foreground)
        per_slice.append((z, Confusion.of(pred, gt)))
    total = sum((c for _, c in per_slice), Confusion())
    return Evaluation(prediction.path, truth.path, threshold, (start, stop), total, per_slice)


def evaluate(
    predictions: list[str],
    labels: str | list[str],
    *,
    threshold: float = 0.5,
    z_range: str | None = None,
    foreground: float | None = None,
    key: str | None = None,
    labels_key: str | None = None,
    instances: bool = False,
    min_size: float | None = None,
) -> list[Evaluation]:
    """Score each prediction file (probabilities or a mask) against the ground truth
    ``labels`` (a mask, or a label image): IoU, Dice, precision and recall, overall and
    per slice; with ``instances``, also the object metrics of
    :mod:`emda.evaluation.instances` (predicted objects under ``min_size`` nm^3 dropped).
    ``labels``: one ground truth for every prediction, or one per prediction, in order."""
    paired = pair_labels(predictions, labels)
    truths = {path: open_volume(path, labels_key) for path in dict.fromkeys(paired)}
    results = []
    for path, truth_path in zip(predictions, paired, strict=True):
        truth = truths[truth_path]
        prediction = open_volume(path, key)
        result = score_volume(prediction, _as_mask(truth, foreground), threshold, z_range,
                              foreground)  # fmt: skip
        if instances:
            from emda.evaluation.instances import score_instances

            zs = range(*result.z_range)
            result.instances = score_instances(prediction, truth, threshold, zs, foreground,
                                               min_size)  # fmt: skip
        results.append(result)
    return results


def pair_labels(predictions: list[str], labels: str | list[str]) -> list[str]:
    """The ground truth of each prediction: ``labels`` given once or once per prediction."""
    labels = [labels] if isinstance(labels, str) else list(labels)
    if len(labels) == 1:
        return labels * len(predictions)
    if len(labels) != len(predictions):
        raise EmdaError(f"--labels: {len(labels)} given for {len(predictions)} predictions "
                        "(give one for all, or one per prediction in order)")  # fmt: skip
    return labels


def _as_mask(truth: Volume, foreground: float | None) -> Volume:
    """A label image is scored pixel-wise as its objects against background."""
    if foreground is None and holds_labels(truth):
        return Volume(truth.array, truth.path, truth.voxel_size,
                      lambda block: (block > 0).astype(np.uint8), truth.location)  # fmt: skip
    return truth
