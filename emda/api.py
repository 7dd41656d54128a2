"""emda's Python API: the functions the ``emda`` commands call, usable from a notebook.

Each takes typed settings, writes what its command writes and returns a typed result;
bad input raises :class:`emda.EmdaError` with a one-line message (docs/api.md).

    import emda

    run = emda.adapt(
        emda.VolumeSpec("source.tif", labels="source_labels.tif"),
        emda.VolumeSpec("target.tif"),
        "runs/ynet",
        method="ynet",
    )
    emda.predict(run.run_dir, "target.tif", output="target_prob.ome.zarr")
    [scores] = emda.evaluate(["target_prob.ome.zarr"], "target_labels.tif")
    print(scores.total.scores()["iou"])
"""

from emda.evaluation.evaluate import Evaluation, evaluate
from emda.inference.predict import PredictResult, PredictSettings, predict
from emda.training.adapt import RunSummary, VolumeSpec, adapt, finetune, recalibrate
from emda.training.config import TrainConfig

__all__ = [
    "Evaluation",
    "PredictResult",
    "PredictSettings",
    "RunSummary",
    "TrainConfig",
    "VolumeSpec",
    "adapt",
    "evaluate",
    "finetune",
    "predict",
    "recalibrate",
]
