"""Instance metrics: how well the predicted objects match the true ones, one to one.

Predicted objects are the connected components of the prediction at the threshold
(:mod:`emda.postprocessing.instances`, z-connectivity from the voxel size); true objects
are the labels of a label image, or the connected components of a binary mask (the
result says which). Both are labelled block by block and their overlaps counted block
by block, so volumes of any size fit in memory.

- A predicted and a true object *match* at threshold t when their IoU exceeds t; for
  t >= 0.5 an object can match at most one other, so matches need no assignment.
- ``precision``, ``recall``, ``f1`` at IoU 0.5 and 0.75: matched objects over predicted,
  over true, and their harmonic mean.
- ``ap50``, ``ap75``: average precision as in COCO and the MitoEM challenge: predicted
  objects ranked by score (their mean probability; 1 for a mask), precision
  interpolated at 101 recall points.
- ``pq``: panoptic quality at IoU 0.5, the mean IoU of matched pairs times F1
  (Kirillov et al. 2019).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emda.analysis.object_ids import ObjectSums, local_ids
from emda.evaluation.evaluate import binarize, holds_labels, prediction_kind
from emda.io.volume import Volume
from emda.postprocessing.instances import (
    BLOCK_DEPTH,
    BLOCK_SIZE,
    connects_across_z,
    min_voxels,
)
from emda.postprocessing.labeling import Block, label_blocks, plan_blocks

THRESHOLDS = (0.5, 0.75)


@dataclass(frozen=True)
class InstanceScores:
    predicted: int
    true: int
    truth_objects: str  # "labels" or "connected components of the mask"
    scores: dict[str, float]

    def to_dict(self) -> dict:
        return {"predicted": self.predicted, "true": self.true,
                "truth_objects": self.truth_objects, **self.scores}  # fmt: skip


def match(
    sizes_pred: np.ndarray, sizes_true: np.ndarray, pairs: np.ndarray, inter: np.ndarray,
    scores: np.ndarray | None = None,
) -> dict[str, float]:  # fmt: skip
    """Scores from object sizes (index 0 unused), overlapping pairs ``(pred, true)`` and
    their intersections; ``scores`` rank the predicted objects for AP (default: equal)."""
    n_pred, n_true = len(sizes_pred) - 1, len(sizes_true) - 1
    p, t = pairs[:, 0], pairs[:, 1]
    iou = inter / (sizes_pred[p] + sizes_true[t] - inter) if len(pairs) else np.zeros(0)
    best = np.zeros(n_pred + 1)  # each predicted object's best IoU (unique above 0.5)
    np.maximum.at(best, p, iou)
    out: dict[str, float] = {}
    for threshold in THRESHOLDS:
        tp = int(np.count_nonzero(iou > threshold))
        name = f"{round(threshold * 100)}"
        out[f"precision{name}"] = tp / n_pred if n_pred else float(n_true == 0)
        out[f"recall{name}"] = tp / n_true if n_true else float(n_pred == 0)
        out[f"f1_{name}"] = 2 * tp / (n_pred + n_true) if n_pred + n_true else 1.0
        out[f"ap{name}"] = _average_precision(best[1:] > threshold, scores, n_true)
    matched = iou > 0.5
    out["pq"] = float(iou[matched].sum() / (matched.sum() + 0.5 * (n_pred + n_true - 2 *
                      matched.sum()))) if n_pred + n_true else 1.0  # fmt: skip
    return out


def _average_precision(hit: np.ndarray, scores: np.ndarray | None, n_true: int) -> float:
    """COCO's 101-point interpolated AP of predictions ranked by score."""
    if n_true == 0:
        return float(len(hit) == 0)
    order = np.argsort(-scores[1:], kind="stable") if scores is not None else np.arange(len(hit))
    tp = np.cumsum(hit[order])
    precision = tp / np.arange(1, len(hit) + 1)
    recall = tp / n_true
    envelope = np.maximum.accumulate(precision[::-1])[::-1] if len(hit) else precision
    points = np.linspace(0, 1, 101)
    index = np.searchsorted(recall, points, side="left")
    return float(np.mean([envelope[i] if i < len(envelope) else 0.0 for i in index]))


def score_instances(
    prediction: Volume, truth: Volume, threshold: float, zs: range, foreground=None,
    min_size: float | None = None,
) -> InstanceScores:  # fmt: skip
    """Instance metrics of ``prediction`` against ``truth`` on the slices ``zs``; predicted
    objects under ``min_size`` nm^3 are dropped first (as ``emda instances`` would)."""
    from emda.io.volume import to_foreground

    shape = (len(zs), *prediction.shape[1:])
    origin = zs.start
    connect = connects_across_z(truth.voxel_size or prediction.voxel_size)
    kind = prediction_kind(prediction)
    labelled_truth = holds_labels(truth, zs) and foreground is None

    def shifted(block: Block) -> tuple:
        return (slice(block.z.start + origin, block.z.stop + origin), block.y, block.x)

    def pred_mask(block: Block) -> np.ndarray:
        return binarize(prediction.read(*shifted(block)), kind, threshold, prediction.path)

    def true_mask(block: Block) -> np.ndarray:
        return to_foreground(truth.read(*shifted(block)), truth.path, foreground).astype(bool)

    if kind == "labels":  # a label image: its own objects
        read_pred, done_pred = lambda b: prediction.read(*shifted(b)), None
    else:
        smallest = min_voxels(min_size, prediction.voxel_size or truth.voxel_size,
                              str(prediction.path))  # fmt: skip
        _, read_pred, done_pred = label_blocks(pred_mask, shape, connect, smallest,
                                               BLOCK_DEPTH, BLOCK_SIZE)  # fmt: skip
    try:
        if labelled_truth:
            read_true, done_true = lambda b: truth.read(*shifted(b)), None
        else:
            _, read_true, done_true = label_blocks(true_mask, shape, connect, 0, BLOCK_DEPTH,
                                                   BLOCK_SIZE)  # fmt: skip
        try:
            return _count(read_pred, read_true, prediction, kind, shape, shifted,
                          labelled_truth)  # fmt: skip
        finally:
            if done_true is not None:
                done_true()
    finally:
        if done_pred is not None:
            done_pred()


def _count(read_pred, read_true, prediction, kind, shape, shifted,
           labelled_truth) -> InstanceScores:  # fmt: skip
    codes, counts = [], []
    sums = {"pred": ObjectSums(), "true": ObjectSums()}
    for block in plan_blocks(shape, BLOCK_DEPTH, BLOCK_SIZE):
        # IDs of a label image may be sparse or huge: sums are kept per ID, not by index
        p_ids, p = local_ids(read_pred(block), prediction.path)
        t_ids, t = local_ids(read_true(block), "the truth")
        p_rows, t_rows = sums["pred"].rows(p_ids), sums["true"].rows(t_ids)
        sums["pred"].add("size", p_rows, np.bincount(p.ravel(), minlength=len(p_ids)))
        sums["true"].add("size", t_rows, np.bincount(t.ravel(), minlength=len(t_ids)))
        if kind == "probability":
            prob = prediction.read(*shifted(block)).astype(np.float64)
            prob = prob / 255.0 if prediction.dtype.kind in "iu" else prob
            sums["pred"].add("score", p_rows, np.bincount(p.ravel(), prob.ravel(), len(p_ids)))
        both = (p_ids[p] > 0) & (t_ids[t] > 0)
        pair, count = np.unique(np.stack([p_ids[p[both]], t_ids[t[both]]]), axis=1,
                                return_counts=True)  # fmt: skip
        codes.append(pair)
        counts.append(count)
    pairs, inverse = np.unique(np.concatenate(codes, axis=1), axis=1, return_inverse=True)
    inter = np.bincount(inverse.ravel(), np.concatenate(counts), minlength=pairs.shape[1])
    # objects numbered 1..N on each side: label images need not be consecutive
    sizes_p, present_p = _renumber(sums["pred"])
    sizes_t, present_t = _renumber(sums["true"])
    pairs = np.stack([np.searchsorted(present_p, pairs[0]) + 1,
                      np.searchsorted(present_t, pairs[1]) + 1], 1)  # fmt: skip
    scores = None
    if kind == "probability":  # an object's score: its mean probability
        rows = np.searchsorted(sums["pred"].ids, present_p)
        scores = np.concatenate([[0.0], sums["pred"].get("score")[rows] / sizes_p[1:]])
    result = match(sizes_p, sizes_t, pairs, inter, scores)
    truth_objects = "labels" if labelled_truth else "connected components of the mask"
    return InstanceScores(len(sizes_p) - 1, len(sizes_t) - 1, truth_objects, result)


def _renumber(sums: ObjectSums) -> tuple[np.ndarray, np.ndarray]:
    """Sizes of the objects present as 1..N (index 0 unused), and their IDs in order."""
    size = sums.get("size")
    keep = (size > 0) & (sums.ids > 0)
    return np.concatenate([[0], size[keep]]).astype(np.int64), sums.ids[keep]
