"""emda's Python API: the functions the ``emda`` commands call, usable from a notebook.

Each takes typed settings, writes what its command writes and returns a typed result;
bad input raises :class:`emda.EmdaError` with a one-line message (docs/api.md).

    import emda

    run = emda.adapt_with_recipe(  # what `emda adapt` runs without --method
        [emda.VolumeSpec("source.tif", labels="source_labels.tif")],
        emda.VolumeSpec("target.tif"),
        "runs/recipe",
        emda.DEFAULT_RECIPE,
    )
    emda.predict(run.run_dir, "target.tif", output="target_prob.ome.zarr")
    [scores] = emda.evaluate(["target_prob.ome.zarr"], "target_labels.tif")
    print(scores.total.scores()["iou"])
"""

from emda.analysis.measure import measure
from emda.evaluation.evaluate import Evaluation, evaluate
from emda.inference.predict import PredictResult, PredictSettings, predict
from emda.postprocessing.instances import InstanceSummary, label_instances
from emda.training.adapt import RunSummary, VolumeSpec, adapt
from emda.training.config import TrainConfig
from emda.training.finetune import finetune
from emda.training.recalibrate import recalibrate
from emda.training.recipe import DEFAULT_RECIPE, Recipe, Stage, load_recipe
from emda.training.recipe_run import adapt_with_recipe

__all__ = [
    "DEFAULT_RECIPE",
    "Evaluation",
    "InstanceSummary",
    "PredictResult",
    "PredictSettings",
    "Recipe",
    "RunSummary",
    "Stage",
    "TrainConfig",
    "VolumeSpec",
    "adapt",
    "adapt_with_recipe",
    "evaluate",
    "finetune",
    "label_instances",
    "load_recipe",
    "measure",
    "predict",
    "recalibrate",
]
