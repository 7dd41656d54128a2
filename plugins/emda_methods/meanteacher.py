"""Mean teacher: self-ensembling with confident pseudo-labels on the target.

French et al., "Self-ensembling for visual domain adaptation" (ICLR 2018), for
segmentation. A *teacher* network is the exponential moving average (EMA) of the
trained network's weights. Each step it predicts the target batch, seen under a
different flip/rotation than the one the trained network sees, with the target
batch's own batch-norm statistics (what target BN gives the final model). Where
the teacher is confident, its thresholded prediction is a pseudo-label for the
trained network:

    loss = seg(source) + lambda_c * BCE(student(x_t), 1[teacher(x_t) > 0.5]) on
           pixels with max(p, 1 - p) >= confidence

with lambda_c ramped up over the first quarter of training.

The EMA makes the pseudo-labels steadier than the network's own (an ensemble over
iterations); the confidence mask keeps an untrained or unsure teacher from
teaching anything. The teacher is a training-time head: exported models and
``emda predict`` hold the trained network alone.

Logged metrics, per step: ``teaching_fraction`` (target pixels confident enough to
teach), ``teacher_foreground`` (target pixels the teacher calls foreground),
``pseudo_foreground`` (foreground share of the teaching pixels) and
``source_foreground`` (of the source labels), to see whether the teacher
under-segments the target.
"""

import copy
import math
from dataclasses import dataclass, field

import torch
from torch import nn

from emda.methods import Method, dihedral, hookimpl, pseudo_label_loss, undo_dihedral


@dataclass
class MeanTeacherOptions:
    lambda_consistency: float = field(
        default=1.0, metadata={"help": "weight of the pseudo-label loss on the target"}
    )
    ema: float = field(default=0.99, metadata={"help": "teacher = ema * teacher + (1 - ema) * net"})
    confidence: float = field(
        default=0.9, metadata={"help": "teacher probability (of either class) needed to teach"}
    )
    rampup: float = field(
        default=0.25, metadata={"help": "fraction of training over which lambda ramps up from 0"}
    )

    def __post_init__(self) -> None:
        if self.lambda_consistency < 0:
            raise ValueError("lambda_consistency must be >= 0")
        if not 0 <= self.ema < 1:
            raise ValueError("ema must be in [0, 1)")
        if not 0.5 <= self.confidence < 1:
            raise ValueError("confidence must be in [0.5, 1)")
        if not 0 <= self.rampup <= 1:
            raise ValueError("rampup must be in [0, 1]")

    def weight(self, progress: float) -> float:
        """lambda_c, ramped up as exp(-5 (1 - t)^2) (Laine & Aila 2017): an early
        teacher, confident on the source only, should not yet steer the target."""
        if self.rampup == 0:
            return self.lambda_consistency
        t = min(progress / self.rampup, 1.0)
        return self.lambda_consistency * math.exp(-5 * (1 - t) ** 2)


class Teacher(nn.Module):
    """A frozen copy of the network whose weights follow the network's by EMA."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.net = copy.deepcopy(model)
        for p in self.net.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def follow(self, model: nn.Module, ema: float) -> None:
        mine, theirs = self.net.state_dict(), model.state_dict()
        for name, value in mine.items():
            if value.is_floating_point():
                value.mul_(ema).add_(theirs[name].detach().to(value.dtype), alpha=1 - ema)
            else:  # e.g. batch norm's num_batches_tracked
                value.copy_(theirs[name])

    @torch.no_grad()
    def probabilities(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """The teacher's foreground probability of ``x`` seen under dihedral transform
        ``k`` (:mod:`emda.data.dihedral`), mapped back onto ``x``'s grid. Batch statistics
        of ``x`` are used (train mode), as target BN will for the final model."""
        self.net.train()
        return torch.sigmoid(undo_dihedral(self.net(dihedral(x, k)).float(), k))


class MeanTeacher(Method):
    name = "meanteacher"
    description = "An EMA teacher's confident target predictions train the network (French 2018)."
    Options = MeanTeacherOptions
    needs_target_logits = True

    def build_heads(self, model):
        return {"teacher": Teacher(model)}

    def loss_terms(self, step):
        terms = super().loss_terms(step)
        teacher = step.heads["teacher"]
        teacher.follow(step.model, 0.0 if step.iteration == 0 else self.options.ema)
        # a transform other than the identity, drawn from the step so resuming repeats it
        k = 1 + step.iteration % 7
        p = teacher.probabilities(step.target.x, k)
        loss, confident, pseudo = pseudo_label_loss(
            step.target_out.logits, p, self.options.confidence
        )
        terms["pseudo_label"] = self.options.weight(step.progress) * loss
        # is the teacher under-segmenting the target? compare its foreground with the source's
        step.log_metric("teaching_fraction", confident.mean())
        step.log_metric("teacher_foreground", pseudo.mean())
        step.log_metric(
            "pseudo_foreground", (pseudo * confident).sum() / confident.sum().clamp(min=1)
        )
        step.log_metric("source_foreground", step.source.y.mean())
        return terms


@hookimpl
def emda_register_methods(register):
    register.add(MeanTeacher)
