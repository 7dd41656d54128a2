"""emda: domain-adaptive segmentation for volume electron microscopy.

The Python API (:mod:`emda.api`) does what the ``emda`` commands do::

    import emda
    run = emda.adapt(emda.VolumeSpec("src.tif", labels="src_labels.tif"),
                     emda.VolumeSpec("target.tif"), "runs/ynet", method="ynet")
    emda.predict(run.run_dir, "target.tif", output="target_prob.tif")

Method plugins import from :mod:`emda.methods` (``Method``, ``hookimpl``, ...).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("emda")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

from emda.api import (
    PredictResult,
    PredictSettings,
    RunSummary,
    TrainConfig,
    VolumeSpec,
    adapt,
    evaluate,
    finetune,
    predict,
    recalibrate,
)
from emda.errors import EmdaError
from emda.methods import Batch, Method, TrainStep, hookimpl
from emda.methods.registry import MethodRegister

__all__ = [
    "Batch",
    "EmdaError",
    "Method",
    "MethodRegister",
    "PredictResult",
    "PredictSettings",
    "RunSummary",
    "TrainConfig",
    "TrainStep",
    "VolumeSpec",
    "__version__",
    "adapt",
    "evaluate",
    "finetune",
    "hookimpl",
    "predict",
    "recalibrate",
]
