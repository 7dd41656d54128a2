"""emda: domain-adaptive segmentation for volume electron microscopy."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("emda")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

from emda.errors import EmdaError
from emda.hookspecs import hookimpl
from emda.method import Batch, Method, TrainStep
from emda.registry import MethodRegister

__all__ = ["Batch", "EmdaError", "Method", "MethodRegister", "TrainStep", "__version__", "hookimpl"]
