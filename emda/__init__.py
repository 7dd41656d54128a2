"""emda: domain-adaptive segmentation for volume electron microscopy.

The Python API (:mod:`emda.api`) does what the ``emda`` commands do::

    import emda
    run = emda.adapt_with_recipe([emda.VolumeSpec("src.tif", labels="src_labels.tif")],
                                 emda.VolumeSpec("target.tif"), "runs/r", emda.DEFAULT_RECIPE)
    emda.predict(run.run_dir, "target.tif", output="target_prob.tif")

Method plugins import from :mod:`emda.methods` (``Method``, ``hookimpl``, ...).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("emda")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

from emda.api import (
    DEFAULT_RECIPE,
    InstanceSummary,
    PredictResult,
    PredictSettings,
    Recipe,
    RunSummary,
    Stage,
    TrainConfig,
    VolumeSpec,
    adapt,
    adapt_with_recipe,
    evaluate,
    finetune,
    label_instances,
    load_recipe,
    measure,
    predict,
    recalibrate,
)
from emda.errors import EmdaError
from emda.methods import Batch, Method, TrainStep, hookimpl
from emda.methods.registry import MethodRegister

__all__ = [
    "DEFAULT_RECIPE",
    "Batch",
    "EmdaError",
    "InstanceSummary",
    "Method",
    "MethodRegister",
    "PredictResult",
    "PredictSettings",
    "Recipe",
    "RunSummary",
    "Stage",
    "TrainConfig",
    "TrainStep",
    "VolumeSpec",
    "__version__",
    "adapt",
    "adapt_with_recipe",
    "evaluate",
    "finetune",
    "hookimpl",
    "label_instances",
    "load_recipe",
    "measure",
    "predict",
    "recalibrate",
]
