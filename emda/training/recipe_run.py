"""Running a recipe (:mod:`emda.training.recipe`) inside one run directory.

``RUN/stages/1-align``, ``RUN/stages/2-selftrain-1``, ... are ordinary run directories
(each resumable on its own); ``RUN/recipe.json`` records the recipe, each stage's
status, settings, time and target statistics; ``RUN/config.toml`` holds the command's
settings; ``RUN/checkpoint.pt`` is the model of the last stage kept, so ``predict``,
``finetune``, ``evaluate`` and ``info`` use the run as any other. ``resume`` skips
finished stages and continues the one that was interrupted.

After every stage, the model predicts a few target slices (no labels): the share of
pixels it marks as mitochondria and its mean confidence are recorded. A stage taught by
an earlier model whose share falls below :data:`SHRINK_LIMIT` of its teacher's, or of
the untaught stage the rounds started from, is not kept: a teacher that is surer of
background than of mitochondria teaches its student to under-segment, and each further
round shrinks the objects again, so rounds that each shrink a little add up. The recipe
then stops with the teacher as its model.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emda.data.planes import is_isotropic
from emda.errors import EmdaError
from emda.model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from emda.training.adapt import RunSummary, VolumeSpec, adapt, resolve_method
from emda.training.config import TrainConfig
from emda.training.inputs import open_raw
from emda.training.recipe import AUTO_PLANES, Recipe, check_recipe, has_teacher, stage_dir_name
from emda.training.run_dir import check_run_dir, prepare_run_dir, write_config, writes_run
from emda.training.state import CHECKPOINT_NAME, STATE_NAME

log = logging.getLogger("emda")

RECIPE_NAME = "recipe.json"
STAGES_DIR = "stages"
#: a taught stage is kept only if it marks at least this share of the pixels its teacher
#: marked, and of those the untaught stage its rounds started from marked
SHRINK_LIMIT = 0.75
STAT_SLICES = 8  # target slices the statistics are read from, evenly spaced
STAT_CROP = 1024  # at most this square from each slice's centre: bounded time and memory


@writes_run(lambda a: [p for s in [*a["sources"], a["target"]] for p in (s.raw, s.labels)])
def adapt_with_recipe(
    sources: list[VolumeSpec],
    target: VolumeSpec,
    out: str | Path,
    recipe: Recipe,
    *,
    config: TrainConfig | None = None,
    device: str | torch.device = "auto",
    overwrite: bool = False,
    resume: bool = False,
    **adapt_options: Any,
) -> RunSummary:
    """Run every stage of ``recipe`` into ``out`` (see the module docstring).

    ``config`` holds the run's settings; each stage trains ``Stage.share`` of its
    iterations with the stage's own settings on top. ``adapt_options`` go to every
    stage's :func:`~emda.training.adapt.adapt` (model, normalisation, resample...).
    """
    check_recipe(recipe)
    resolved = adapt_options.pop("resolved_config", None)  # the run's, not each stage's
    config = config or TrainConfig()
    run_dir = Path(out)
    if resume:
        _check_resumable(run_dir, overwrite)
    else:
        check_run_dir(run_dir, overwrite)
        if (run_dir / RECIPE_NAME).exists() and not overwrite:
            raise EmdaError(
                f"--out {run_dir}: already holds a run (pass --overwrite to replace it)"
            )
    record = _start_record(run_dir, recipe, config, resume)
    if not resume:
        prepare_run_dir(run_dir, overwrite)
        shutil.rmtree(run_dir / STAGES_DIR, ignore_errors=True)
        (run_dir / STAGES_DIR).mkdir()
        write_config(run_dir, "adapt", resolved)
        _write(run_dir, record)
    tgt = open_raw(target, "target")
    kept: Path | None = None
    kept_stats: dict | None = None
    untaught: dict | None = None  # the statistics of the last kept stage with no teacher
    for i, stage in enumerate(recipe.stages, 1):
        entry = record["stages"][i - 1]
        stage_dir = run_dir / STAGES_DIR / stage_dir_name(i, stage)
        if entry["status"] in ("kept", "rejected"):
            if entry["status"] == "kept":
                taught = kept is not None and has_teacher(stage.method)  # as when it ran
                kept, kept_stats = stage_dir, entry.get("target")
                untaught = untaught if taught else kept_stats
            continue
        if entry["status"] == "stopped":
            continue
        teacher = kept if has_teacher(stage.method) else None
        if has_teacher(stage.method) and teacher is None and not stage.options.get("teacher"):
            raise EmdaError(f"recipe stage {i} ({stage.method}) needs an earlier stage to teach it")
        options = dict(stage.options)
        if teacher is not None and not options.get("teacher"):
            options["teacher"] = str(teacher)
        settings = dict(stage.settings)
        if settings.get("target_planes") == AUTO_PLANES:
            settings["target_planes"] = auto_target_planes(tgt, config.patch_size)
        stage_config = dataclasses.replace(
            config, iterations=stage.stage_iterations(config.iterations), **settings
        )
        entry.update(
            status="running",
            options=options,
            settings=_plain(settings),
            iterations=stage_config.iterations,
        )
        _write(run_dir, record)
        log.info("recipe stage %d/%d: %s (%s, %d iterations)", i, len(recipe.stages),
                 stage.name or stage.method, stage.method, stage_config.iterations)  # fmt: skip
        if not entry.get("trained"):  # a resumed run may have finished training, not judging
            stage_resume = resume and (stage_dir / STATE_NAME).is_file()
            summary = adapt(
                sources, target, stage_dir, method=resolve_method(stage.method, options),
                config=stage_config, device=device, overwrite=not stage_resume,
                resume=stage_resume, **adapt_options,
            )  # fmt: skip
            entry.update(trained=True, seconds=summary.seconds)
            _write(run_dir, record)
        stats = target_statistics(stage_dir, tgt, target.z_range, device)
        entry["target"] = stats
        reason = judge(stats, kept_stats, untaught) if teacher is not None and kept_stats else None
        if reason:
            entry["status"] = "rejected"
            entry["reason"] = reason
            log.warning("recipe stage %d not kept: it %s", i, entry["reason"])
            for later in record["stages"][i:]:
                later["status"] = "stopped"
            _write(run_dir, record)
            break
        entry["status"] = "kept"
        kept, kept_stats = stage_dir, stats
        untaught = untaught if teacher is not None else stats
        _write(run_dir, record)
    assert kept is not None, "the first stage is always kept"
    record["model"] = str(kept.relative_to(run_dir))
    record["seconds"] = sum(s.get("seconds", 0.0) for s in record["stages"])
    _finish(run_dir, kept, record)
    ckpt = load_checkpoint(kept)
    return RunSummary(
        run_dir,
        sum(s.get("iterations", 0) for s in record["stages"] if "seconds" in s),
        record["seconds"],
        {},
        ckpt.training.get("source_validation"),
        record["stages"],
    )


def auto_target_planes(target, patch_size: int) -> str:
    """``ortho`` for a 3D target of isotropic voxels with at least a patch's rows of
    slices (its (z, x) planes look like its slices), else ``xy``: reads voxel sizes only."""
    volumetric = target.shape[0] >= patch_size
    return "ortho" if volumetric and is_isotropic(target.voxel_size) else "xy"


def judge(stats: dict, teacher: dict, untaught: dict | None = None) -> str | None:
    """Why a taught stage is not kept, or None to keep it: it must mark at least
    :data:`SHRINK_LIMIT` of the share of target pixels its ``teacher`` marked as
    mitochondria, and of the share the ``untaught`` stage its rounds started from
    marked (statistics from :func:`target_statistics`)."""
    share = stats["foreground"]
    for whose, ref in (("its teacher's", teacher), ("the untaught stage's", untaught)):
        if ref is not None and share < SHRINK_LIMIT * ref["foreground"]:
            return (
                f"marks {share:.2%} of the target as mitochondria, under "
                f"{SHRINK_LIMIT:.0%} of {whose} {ref['foreground']:.2%}"
            )
    return None


@torch.no_grad()
def target_statistics(run: Path, target, z_range: str | None, device) -> dict[str, float]:
    """Label-free statistics of a model on its target: the share of pixels it marks as
    mitochondria (p >= 0.5) and its mean confidence max(p, 1 - p), over
    :data:`STAT_SLICES` evenly spaced slices (central crops of at most
    :data:`STAT_CROP`)."""
    from emda.data.resample import model_zoom
    from emda.evaluation.evaluate import parse_z_range
    from emda.inference.sliding_window import SlidingWindowPredictor

    ckpt = load_checkpoint(run)
    start, stop = parse_z_range(z_range, target.shape[0], "--target-z")
    zs = np.unique(np.linspace(start, stop - 1, min(STAT_SLICES, stop - start)).round()).astype(int)
    predictor = SlidingWindowPredictor(
        ckpt.build_model(), torch.device(device) if isinstance(device, str) else device,
        zoom=model_zoom(ckpt, target, str(target.path)),
    )  # fmt: skip
    intensity = ckpt.normalization.fit(target)
    _, h, w = target.shape
    y0, x0 = max(0, (h - STAT_CROP) // 2), max(0, (w - STAT_CROP) // 2)
    window = (slice(y0, y0 + STAT_CROP), slice(x0, x0 + STAT_CROP))
    fg = conf = 0.0
    for z in zs:
        p = predictor.predict_slice(intensity.apply(target.read(int(z), *window)))
        fg += float((p >= 0.5).mean())
        conf += float(np.maximum(p, 1 - p).mean())
    return {"foreground": fg / len(zs), "confidence": conf / len(zs), "slices": len(zs)}


def _check_resumable(run_dir: Path, overwrite: bool) -> None:
    if overwrite:
        raise EmdaError("--resume and --overwrite contradict each other: choose one")
    if not (run_dir / RECIPE_NAME).is_file():
        raise EmdaError(f"--resume: {run_dir} holds no recipe run (no {RECIPE_NAME})")


def _start_record(run_dir: Path, recipe: Recipe, config: TrainConfig, resume: bool) -> dict:
    definition = recipe.to_dict()
    if resume:
        record = read_recipe_record(run_dir)
        if record.get("recipe") != json.loads(json.dumps(definition)):
            raise EmdaError(f"--resume: {run_dir} ran another recipe ({record['recipe']['name']})")
        if record.get("iterations") != config.iterations:
            raise EmdaError(f"--resume: {run_dir} ran with --iterations {record['iterations']}")
        if "model" in record:
            raise EmdaError(f"--resume: {run_dir} holds a finished run: nothing to resume")
        return record
    stages = [{"name": stage_dir_name(i, s), "method": s.method, "status": "pending"}
              for i, s in enumerate(recipe.stages, 1)]  # fmt: skip
    return {"recipe": definition, "iterations": config.iterations, "stages": stages}


def read_recipe_record(run_dir: Path) -> dict:
    try:
        return json.loads((Path(run_dir) / RECIPE_NAME).read_text())
    except (OSError, ValueError) as exc:
        raise EmdaError(f"{run_dir / RECIPE_NAME}: unreadable ({exc})") from None


def _write(run_dir: Path, record: dict) -> None:
    tmp = run_dir / f".{RECIPE_NAME}.tmp"
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(run_dir / RECIPE_NAME)


def _finish(run_dir: Path, kept: Path, record: dict) -> None:
    """The kept stage's model as the run's checkpoint, the recipe in its record."""
    ckpt: Checkpoint = load_checkpoint(kept)
    ckpt.training = {**ckpt.training, "recipe": record}
    save_checkpoint(ckpt, run_dir / CHECKPOINT_NAME)
    _write(run_dir, record)


def _plain(values: dict) -> dict:
    return {k: getattr(v, "value", v) for k, v in values.items()}
