"""The interface a domain-adaptation method implements.

A method declares its options (a dataclass), may build extra heads that hang
off the encoder, and returns *named loss terms* for one training step. The one
training loop (:mod:`emda.training.loop`) sums the terms, back-propagates and logs each
by name; it knows nothing about any particular method.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from emda.data.normalization import IntensityRange
from emda.io.volume import Volume
from emda.methods.losses import segmentation_loss
from emda.model import SegmentationOutput, UNet


@dataclass
class NoOptions:
    """A method without options."""


@dataclass
class Batch:
    x: torch.Tensor  # (B, 1, H, W) normalised intensities
    y: torch.Tensor | None = None  # (B, 1, H, W) float {0, 1}, None where unlabelled
    #: (B, 1, H, W) the same windows of the method's ``target_guide`` volume, if any
    guide: torch.Tensor | None = None


@dataclass
class TrainStep:
    """Everything a method may use to compute its loss terms for one step."""

    model: UNet
    heads: nn.ModuleDict  # the modules this method built in ``build_heads``
    source: Batch
    source_out: SegmentationOutput
    target: Batch | None  # None when the method does not use the target
    target_out: SegmentationOutput | None  # logits are None unless needs_target_logits
    progress: float  # fraction of the iteration budget done, in [0, 1)
    iteration: int
    seg_loss: str = "bce_dice"
    #: diagnostics recorded with :meth:`log_metric`, written under "metrics" in the log
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)

    def log_metric(self, name: str, value: torch.Tensor | float) -> None:
        """Record a diagnostic for this step, e.g. a domain classifier's accuracy.

        Unlike a loss term it is not summed and carries no gradient; the training loop
        writes it to ``log.jsonl`` (under ``"metrics"``) and draws it in the training
        curve. Values are kept as tensors so that recording costs no device sync.
        """
        if not name.isidentifier():
            raise ValueError(f"metric name {name!r} must be an identifier")
        value = value.detach() if isinstance(value, torch.Tensor) else torch.tensor(value)
        if value.numel() != 1:
            raise ValueError(f"metric {name!r} must be a scalar")
        self.metrics[name] = value.reshape(())

    def source_segmentation_loss(self) -> torch.Tensor:
        assert self.source.y is not None, "source batches are always labelled"
        return segmentation_loss(self.source_out.logits, self.source.y, self.seg_loss)


class Method:
    """Base class of every domain-adaptation method.

    Subclasses set ``name`` (the CLI name), a one-line ``description`` and,
    optionally, an ``Options`` dataclass whose fields carry
    ``metadata={"help": ...}``. The default ``loss_terms`` is plain supervised
    training on the source, which is what FT does.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    #: whether the training loop should sample target patches and run them
    #: through the network (FT does not need them).
    uses_target: ClassVar[bool] = True
    #: whether target patches also go through the decoder (costs time); when
    #: False, ``step.target_out.logits`` is None and only features are given.
    #: Set it on the instance in ``__init__`` when an option decides it.
    needs_target_logits: ClassVar[bool] = False

    def __init__(self, options: Any = None) -> None:
        self.options = options if options is not None else self.Options()

    def build_heads(self, model: UNet) -> dict[str, nn.Module]:
        """Extra modules trained with the network, e.g. a domain classifier.

        They receive ``model.encoder``'s outputs; ``model.encoder.channels``
        gives their widths. They are dropped from exported models. A head whose
        parameters are frozen (``requires_grad=False``) is left out of the
        optimiser: the method updates it in ``loss_terms``, e.g. an EMA teacher.
        """
        return {}

    def initialise(self, model: UNet) -> None:
        """Set the network's starting weights before training; the default keeps the
        seeded random initialisation. E.g. self-training starts from its teacher.
        Not called when a run resumes: the saved state replaces the weights."""

    def target_guide(
        self, raw: Volume, intensity: IntensityRange, z_indices: list[int], device: torch.device
    ) -> Volume | None:
        """A volume aligned with the target training volume ``raw`` whose window comes
        with every target patch as ``step.target.guide`` (flipped and rotated with it),
        or None. Called once before training, after ``build_heads``; e.g. a teacher's
        prediction of the whole target, which lets target patches come from any plane.
        ``intensity`` normalises ``raw``; only the slices ``z_indices`` may be read."""
        return None

    def loss_terms(self, step: TrainStep) -> dict[str, torch.Tensor]:
        """Named scalar losses for one step; the loop sums and logs them."""
        return {"seg": step.source_segmentation_loss()}


class Supervised(Method):
    """Plain supervised training on labelled batches; what ``emda finetune`` runs."""

    name = "supervised"
    description = "Segmentation loss on labelled patches only."
    uses_target = False
