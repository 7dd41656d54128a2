"""The public API for domain-adaptation methods: what a plugin imports.

A method subclasses :class:`Method`, returns named loss terms for a
:class:`TrainStep` and is registered through :data:`hookimpl`. The helpers below
are the building blocks the built-in methods use (docs/plugins.md):

- feature alignment (Eq. 1): :class:`FeatureAlignment`, :class:`AlignmentOptions`,
  :func:`gaussian_mmd2`, :func:`coral`, :func:`grad_reverse`, :func:`ganin_schedule`,
  :func:`level_weights`;
- losses: :func:`segmentation_loss`, :func:`pseudo_label_loss`;
- flips and rotations: :func:`dihedral`, :func:`undo_dihedral`;
- network parts: :class:`Decoder` (e.g. a reconstruction decoder);
- pseudo-labels from a finished model: :class:`FrozenTeacher`, :func:`load_teacher`,
  :func:`read_prediction`, :func:`class_balanced_confidence`;
- the plugin test kit: :func:`check_method`.
"""

from importlib import import_module
from typing import Any

from emda.data.dihedral import dihedral, undo_dihedral
from emda.methods.alignment import (
    AlignmentOptions,
    FeatureAlignment,
    coral,
    ganin_schedule,
    gaussian_mmd2,
    grad_reverse,
    level_weights,
)
from emda.methods.base import Batch, Method, NoOptions, TrainStep
from emda.methods.hookspecs import hookimpl
from emda.methods.losses import pseudo_label_loss, segmentation_loss
from emda.model import Decoder

# loaded on first use: they pull in inference and training, which import this package
_LAZY = {
    "FrozenTeacher": "emda.inference.pseudo_labels",
    "load_teacher": "emda.inference.pseudo_labels",
    "read_prediction": "emda.inference.pseudo_labels",
    "class_balanced_confidence": "emda.inference.pseudo_labels",
    "check_method": "emda.methods.testing",
}

__all__ = [
    "AlignmentOptions",
    "Batch",
    "Decoder",
    "FeatureAlignment",
    "Method",
    "NoOptions",
    "TrainStep",
    "coral",
    "dihedral",
    "ganin_schedule",
    "gaussian_mmd2",
    "grad_reverse",
    "hookimpl",
    "level_weights",
    "pseudo_label_loss",
    "segmentation_loss",
    "undo_dihedral",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'emda.methods' has no attribute {name!r}")
