"""Binary segmentation metrics from confusion counts.

Volume scores are computed from the summed counts of all slices (not the mean
of per-slice scores), as the paper and most EM benchmarks report them. When
prediction and ground truth are both empty, IoU and Dice are 1 (perfect
agreement); precision and recall with an empty denominator are reported as NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Confusion:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    @classmethod
    def of(cls, pred: np.ndarray, truth: np.ndarray) -> Confusion:
        pred = pred.astype(bool, copy=False)
        truth = truth.astype(bool, copy=False)
        tp = int(np.count_nonzero(pred & truth))
        fp = int(np.count_nonzero(pred)) - tp
        fn = int(np.count_nonzero(truth)) - tp
        return cls(tp, fp, fn, int(pred.size) - tp - fp - fn)

    def __add__(self, other: Confusion) -> Confusion:
        return Confusion(
            self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn
        )

    @property
    def iou(self) -> float:
        union = self.tp + self.fp + self.fn
        return self.tp / union if union else 1.0

    @property
    def dice(self) -> float:
        denom = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denom if denom else 1.0

    @property
    def precision(self) -> float:
        d = self.tp + self.fp
        return self.tp / d if d else float("nan")

    @property
    def recall(self) -> float:
        d = self.tp + self.fn
        return self.tp / d if d else float("nan")

    @property
    def voxels(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    def counts(self) -> dict[str, int]:
        """Pixels: true and false positives, false and true negatives."""
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn}

    def scores(self) -> dict[str, float]:
        return {
            "iou": self.iou,
            "dice": self.dice,
            "precision": self.precision,
            "recall": self.recall,
        }
