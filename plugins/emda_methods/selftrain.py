"""Self-training: a finished adapted model's confident target predictions train a new one.

The teacher (``teacher=RUN``, best with target batch-norm statistics, i.e. what
``emda adapt`` or ``emda recalibrate`` wrote) is frozen; the network trains on
``seg(source) + lambda_p * seg(net(x_t), 1[p > 0.5])`` over the pixels where
``max(p, 1 - p) >= confidence``, with ``p`` the teacher's foreground probability and
``seg`` the run's ``--seg-loss`` (BCE + soft Dice by default) for both.
``pseudo_labels``: ``volume`` (the teacher predicts the allowed target slices once, as
``emda predict`` would, and each patch reads its labels from that, so patches may come
from any plane with ``--target-planes ortho``), ``patch`` (the teacher predicts each
sampled patch), or the PATH of a prediction of the target written earlier
(``init=scratch`` then needs no teacher).
``balance=class`` lowers the threshold of the class that teaches the smaller share of
its own pixels until both match (Zou et al. 2018). Logged metrics:
``teaching_fraction``, ``pseudo_foreground``, ``source_foreground``, ``agreement``.
"""

import logging
from dataclasses import dataclass, field

from emda import EmdaError
from emda.methods import (
    FrozenTeacher,
    Method,
    class_balanced_confidence,
    hookimpl,
    load_teacher,
    pseudo_label_loss,
    read_prediction,
)

log = logging.getLogger("emda")

CHOICES = {"init": ("teacher", "scratch"), "teacher_bn": ("stored", "batch"),
           "balance": ("none", "class")}  # fmt: skip
PSEUDO_LABELS = ("patch", "volume")  # or the path of a prediction of the target


def _help(text: str) -> dict:
    return {"help": text}


@dataclass
class SelfTrainOptions:
    teacher: str = field(default="", metadata=_help("run directory or checkpoint that teaches"))
    lambda_pseudo: float = field(default=1.0, metadata=_help("weight of the pseudo-label loss"))
    confidence: float = field(default=0.9, metadata=_help("teacher probability needed to teach"))
    views: int = field(default=2, metadata=_help("flips/rotations the teacher averages (1-8)"))
    init: str = field(default="teacher", metadata=_help("start from the teacher or scratch"))
    teacher_bn: str = field(
        default="stored", metadata=_help("teacher batch norm: its saved statistics or the batch's")
    )
    pseudo_labels: str = field(
        default="volume", metadata=_help("volume, patch, or PATH of a prediction of the target")
    )
    balance: str = field(default="none", metadata=_help("class: balance the two thresholds"))

    def __post_init__(self) -> None:
        if self.lambda_pseudo < 0:
            raise ValueError("lambda_pseudo must be >= 0")
        if not 0.5 <= self.confidence < 1:
            raise ValueError("confidence must be in [0.5, 1)")
        if not 1 <= self.views <= 8:
            raise ValueError("views must be in 1..8")
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}")
        if not self.pseudo_labels:
            raise ValueError(f"pseudo_labels must be one of {', '.join(PSEUDO_LABELS)} or a path")
        if self.pseudo_labels == "volume" and self.teacher_bn == "batch":
            raise ValueError("teacher_bn=batch needs pseudo_labels=patch")
        if self.balance == "class" and self.pseudo_labels == "patch":
            raise ValueError("balance=class needs pseudo_labels=volume or a PATH")


class SelfTrain(Method):
    name = "selftrain"
    description = "A frozen adapted model's confident target predictions train the network."
    Options = SelfTrainOptions
    needs_target_logits = True
    thresholds: tuple[float, float] | None = None  # set by balance=class

    def _teacher(self):
        if not self.options.teacher:
            raise EmdaError("method 'selftrain' needs --opt teacher=RUN (an adapted run)")
        if not hasattr(self, "_checkpoint"):
            stored = self.options.teacher_bn == "stored"
            self._checkpoint = load_teacher(self.options.teacher, needs_target_bn=stored)
        return self._checkpoint

    def build_heads(self, model):
        if self.options.pseudo_labels not in PSEUDO_LABELS and self.options.init != "teacher":
            return {}  # a prediction read from a file teaches alone
        ckpt = self._teacher()
        if self.options.init == "teacher" and ckpt.model_config != model.config:
            raise EmdaError(
                f"teacher {self.options.teacher}: its network ({ckpt.model_config}) differs "
                f"from this run's ({model.config}); match --base-channels/--depth or use "
                "--opt init=scratch"
            )
        return {"teacher": FrozenTeacher(ckpt, self.options.teacher_bn == "batch")}

    def initialise(self, model):
        if self.options.init == "teacher":
            model.load_state_dict(self._teacher().state_dict)

    def target_guide(self, raw, intensity, z_indices, device):
        o = self.options
        if o.pseudo_labels == "patch":
            return None
        if o.pseudo_labels == "volume":
            log.info("selftrain: the teacher predicts %d target slices", len(z_indices))
            teacher = FrozenTeacher(self._teacher())
            guide = teacher.predict_slices(raw, intensity, z_indices, o.views, device)
        else:
            option = f"--opt pseudo_labels={o.pseudo_labels}"
            guide = read_prediction(o.pseudo_labels, raw, z_indices, option)
        if o.balance == "class":
            self.thresholds = class_balanced_confidence(guide, z_indices, o.confidence)
            log.info("selftrain: foreground p >= %.4f and background p <= %.4f teach",
                     self.thresholds[0], 1 - self.thresholds[1])  # fmt: skip
        return guide

    def loss_terms(self, step):
        terms = super().loss_terms(step)
        if step.target.guide is not None:  # read with the patch
            p = step.target.guide.float()
        else:  # the identity, then transforms drawn from the step so resuming repeats them
            views = [0] + [1 + (step.iteration + j) % 7 for j in range(self.options.views - 1)]
            p = step.heads["teacher"].probabilities(step.target.x, views)
        confidence = self.thresholds or self.options.confidence
        # the labels' own loss: with BCE alone rare, unsure mitochondria shrank every round
        logits = step.target_out.logits
        loss, confident, pseudo = pseudo_label_loss(logits, p, confidence, step.seg_loss)
        terms["pseudo_label"] = self.options.lambda_pseudo * loss
        taught = confident.sum().clamp(min=1)
        step.log_metric("teaching_fraction", confident.mean())
        step.log_metric("pseudo_foreground", (pseudo * confident).sum() / taught)
        step.log_metric("source_foreground", step.source.y.mean())
        agree = ((logits.detach() > 0).float() == pseudo).float()
        step.log_metric("agreement", (agree * confident).sum() / taught)
        if self.thresholds:  # balance=class: kept in log.jsonl with every step
            step.log_metric("foreground_confidence", self.thresholds[0])
            step.log_metric("background_confidence", self.thresholds[1])
        return terms


@hookimpl
def emda_register_methods(register):
    register.add(SelfTrain)
