"""Self-training: an adapted model's confident target predictions train a new one.

The second stage of most strong unsupervised DA pipelines for EM mitochondria (e.g.
pseudo-label rectification after adversarial alignment): take a model already
adapted by any method (the *teacher*, best with its target batch-norm statistics,
i.e. the run ``emda adapt`` or ``emda recalibrate`` wrote), freeze it, and train the
network on

    loss = seg(source) + lambda_p * BCE(net(x_t), 1[teacher(x_t) > 0.5]) on pixels
           with max(p, 1 - p) >= confidence

where ``p`` is the teacher's foreground probability. By default
(``pseudo_labels=volume``) the teacher predicts the allowed target slices once before
training, tile by tile with Gaussian blending (the ``views`` first flips/rotations
averaged, as ``emda predict`` would), and each target patch reads its pseudo-labels
from that prediction. The network sees the patch as sampled, so it learns to give the
teacher's confident answer under every augmentation; the source term keeps it
anchored where the teacher is unsure. Whole slices beat patches in both benchmark
directions (benchmarks/FINDINGS.md): the teacher sees a slice's context rather than
a 128-pixel patch. With ``pseudo_labels=patch`` the teacher instead predicts each
sampled target patch during training, averaged over ``views`` flips/rotations (needed
for ``teacher_bn=batch``). With ``volume`` target patches may come from any plane
(``emda adapt --target-planes ortho``): on an isotropic volume the network learns the
(z, x) and (z, y) planes from labels the teacher gave in (y, x) slices.
``pseudo_labels=PATH`` reads that prediction from a file instead: any prediction of the
target training volume ``emda predict`` or ``emda ensemble`` wrote (e.g. with
``--planes ortho``, ``--tta``, or several seeds averaged), made once and reused by every
run; ``teacher`` then only names the weights to start from (``init=teacher``) and may
be left out with ``init=scratch``. Both hold the prediction of the allowed slices in
memory, 4 bytes per voxel of the target volume.

``balance=class`` (volume or PATH pseudo-labels) sets one threshold per class from the
whole prediction before training: the class that teaches the smaller share of its own
pixels at ``confidence`` (on EM usually the mitochondria, whose boundaries the teacher
is unsure of) gets its threshold lowered until it teaches the same share as the other
(class-balanced self-training, Zou et al., ECCV 2018). The thresholds are logged
with every step (``foreground_confidence``, ``background_confidence``).

Unlike ``meanteacher`` the teacher does not move: it is the finished model of an
earlier run, so its mistakes cannot feed back into it. By default the network
starts from the teacher's weights (``init=teacher``); ``init=scratch`` trains a
fresh network (the teacher may then have another architecture). The teacher is a
training-time head: exported models and ``emda predict`` hold the trained network
alone.

Logged metrics, per step: ``teaching_fraction`` (target pixels confident enough to
teach), ``pseudo_foreground`` (foreground share of the teaching pixels),
``source_foreground`` (of the source labels), ``agreement`` (share of teaching
pixels the network already labels as the teacher does) and, with ``balance=class``,
the two thresholds.
"""

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from emda import Method, hookimpl
from emda.checkpoint import Checkpoint, load_checkpoint
from emda.dihedral import dihedral, undo_dihedral
from emda.ensemble import to_probability
from emda.errors import EmdaError
from emda.evaluate import prediction_kind
from emda.inference import SlidingWindowPredictor
from emda.losses import pseudo_label_loss
from emda.normalization import IntensityRange
from emda.volume import Volume, open_volume, split_address

log = logging.getLogger("emda")

INITS = ("teacher", "scratch")
TEACHER_BN = ("stored", "batch")
PSEUDO_LABELS = ("patch", "volume")  # or the path of a prediction of the target
BALANCE = ("none", "class")
# pseudo_labels=volume: emda predict's default tiles
VOLUME_TILE, VOLUME_BATCH = 256, 8


@dataclass
class SelfTrainOptions:
    teacher: str = field(
        default="",
        metadata={"help": "run directory or checkpoint of the adapted model that teaches"},
    )
    lambda_pseudo: float = field(default=1.0, metadata={"help": "weight of the pseudo-label loss"})
    confidence: float = field(
        default=0.9, metadata={"help": "teacher probability (of either class) needed to teach"}
    )
    views: int = field(
        default=2, metadata={"help": "flips/rotations the teacher's prediction averages (1-8)"}
    )
    init: str = field(
        default="teacher", metadata={"help": "start from the teacher's weights or from scratch"}
    )
    teacher_bn: str = field(
        default="stored",
        metadata={"help": "teacher batch norm: its saved statistics or each target batch's"},
    )
    pseudo_labels: str = field(
        default="volume",
        metadata={
            "help": "volume: the teacher predicts the whole target once before training; "
            "patch: each target patch as it is sampled; or PATH: a prediction of the "
            "target read from a file (volume and PATH allow --target-planes ortho)"
        },
    )
    balance: str = field(
        default="none",
        metadata={
            "help": "class: lower the threshold of the class that teaches the smaller share "
            "of its pixels until both shares match (needs volume or PATH pseudo-labels)"
        },
    )

    def __post_init__(self) -> None:
        if self.lambda_pseudo < 0:
            raise ValueError("lambda_pseudo must be >= 0")
        if not 0.5 <= self.confidence < 1:
            raise ValueError("confidence must be in [0.5, 1)")
        if not 1 <= self.views <= 8:
            raise ValueError("views must be in 1..8")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}")
        if self.teacher_bn not in TEACHER_BN:
            raise ValueError(f"teacher_bn must be one of {', '.join(TEACHER_BN)}")
        if not self.pseudo_labels:
            raise ValueError(f"pseudo_labels must be one of {', '.join(PSEUDO_LABELS)} or a path")
        if self.pseudo_labels == "volume" and self.teacher_bn == "batch":
            raise ValueError(
                "teacher_bn=batch needs pseudo_labels=patch (volume, the default, predicts "
                "whole slices with the teacher's stored statistics)"
            )
        if self.balance not in BALANCE:
            raise ValueError(f"balance must be one of {', '.join(BALANCE)}")
        if self.balance == "class" and self.pseudo_labels == "patch":
            raise ValueError(
                "balance=class needs pseudo_labels=volume or a PATH (its thresholds come "
                "from the whole prediction, which patch never makes)"
            )


class FrozenTeacher(nn.Module):
    """A finished model, frozen, that predicts target patches under test-time flips."""

    def __init__(self, checkpoint: Checkpoint, batch_stats: bool) -> None:
        super().__init__()
        self.net = checkpoint.build_model()
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
        stays 0), with ``emda predict``'s own predictor (its tiles, blending and speed),
        the first ``views`` flips/rotations averaged."""
        predictor = SlidingWindowPredictor(
            self.net, device, VOLUME_TILE, batch_size=VOLUME_BATCH, tta=views > 1, views=views
        )
        prob = np.zeros(raw.shape, dtype=np.float32)
        for z in z_indices:
            prob[z] = predictor.predict_slice(intensity.apply(raw.read(z)))
        return Volume(prob, f"{raw.path} (teacher prediction)", raw.voxel_size)


def read_prediction(path: str, raw: Volume, z_indices: list[int]) -> Volume:
    """A stored prediction of the target ``raw`` as probabilities, its slices
    ``z_indices`` read and checked now (the rest 0), not half way through training."""
    option = f"--opt pseudo_labels={path}"
    if not split_address(path)[0].exists():
        raise EmdaError(f"{option}: no such file (expected patch, volume or a prediction)")
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


class SelfTrain(Method):
    name = "selftrain"
    description = "A frozen adapted model's confident target predictions train the network."
    Options = SelfTrainOptions
    needs_target_logits = True
    #: (foreground, background) thresholds ``balance=class`` sets before training
    thresholds: tuple[float, float] | None = None

    def _teacher_checkpoint(self) -> Checkpoint:
        if not self.options.teacher:
            raise EmdaError("method 'selftrain' needs --opt teacher=RUN (an adapted run)")
        if not hasattr(self, "_checkpoint"):
            path = Path(self.options.teacher)
            self._checkpoint = load_checkpoint(path)
            training = self._checkpoint.training or {}
            if self.options.teacher_bn == "stored" and not training.get("target_bn"):
                log.warning(
                    "teacher %s holds source batch-norm statistics; give it target ones "
                    "(emda recalibrate) or use --opt teacher_bn=batch",
                    path,
                )
        return self._checkpoint

    def _needs_teacher(self) -> bool:
        """A prediction read from a file teaches alone; the teacher's weights may still
        be where the network starts."""
        return self.options.pseudo_labels in PSEUDO_LABELS or self.options.init == "teacher"

    def build_heads(self, model):
        if not self._needs_teacher():
            return {}
        ckpt = self._teacher_checkpoint()
        if self.options.init == "teacher" and ckpt.model_config != model.config:
            raise EmdaError(
                f"teacher {self.options.teacher}: its network ({ckpt.model_config}) differs "
                f"from this run's ({model.config}); match --base-channels/--depth or use "
                "--opt init=scratch"
            )
        return {"teacher": FrozenTeacher(ckpt, self.options.teacher_bn == "batch")}

    def initialise(self, model):
        if self.options.init == "teacher":
            model.load_state_dict(self._teacher_checkpoint().state_dict)

    def target_guide(self, raw, intensity, z_indices, device):
        if self.options.pseudo_labels == "patch":
            return None
        if self.options.pseudo_labels != "volume":
            guide = read_prediction(self.options.pseudo_labels, raw, z_indices)
        else:
            log.info("selftrain: the teacher predicts %d target slices", len(z_indices))
            start = time.perf_counter()
            teacher = FrozenTeacher(self._teacher_checkpoint(), batch_stats=False)
            guide = teacher.predict_slices(raw, intensity, z_indices, self.options.views, device)
            log.info("selftrain: teacher prediction done in %.0f s", time.perf_counter() - start)
        if self.options.balance == "class":
            self.thresholds = class_balanced_confidence(guide, z_indices, self.options.confidence)
            log.info(
                "selftrain: class-balanced thresholds: foreground p >= %.4f, background p <= %.4f",
                self.thresholds[0],
                1 - self.thresholds[1],
            )
        return guide

    def loss_terms(self, step):
        terms = super().loss_terms(step)
        if step.target.guide is not None:  # pseudo_labels=volume: read with the patch
            p = step.target.guide.float()
        else:
            # the identity, then transforms drawn from the step so that resuming repeats them
            views = [0] + [1 + (step.iteration + j) % 7 for j in range(self.options.views - 1)]
            p = step.heads["teacher"].probabilities(step.target.x, views)
        confidence = self.thresholds or self.options.confidence
        loss, confident, pseudo = pseudo_label_loss(step.target_out.logits, p, confidence)
        terms["pseudo_label"] = self.options.lambda_pseudo * loss
        taught = confident.sum().clamp(min=1)
        step.log_metric("teaching_fraction", confident.mean())
        step.log_metric("pseudo_foreground", (pseudo * confident).sum() / taught)
        step.log_metric("source_foreground", step.source.y.mean())
        agree = ((step.target_out.logits.detach() > 0).float() == pseudo).float()
        step.log_metric("agreement", (agree * confident).sum() / taught)
        if self.thresholds:  # balance=class: kept in log.jsonl with every step
            step.log_metric("foreground_confidence", self.thresholds[0])
            step.log_metric("background_confidence", self.thresholds[1])
        return terms


@hookimpl
def emda_register_methods(register):
    register.add(SelfTrain)
