"""The predict pipeline: plan the work, execute it block by block, commit the outputs.

A volume of any size is predicted block by block (:mod:`emda.inference.blocks`):
memory holds one block with its halo, never the volume. Outputs are written
through :class:`~emda.io.writer.VolumeWriter`, so nothing appears under an output's
name until every block is in it; an interrupted prediction keeps its finished blocks
and ``resume`` skips them. ``planes="ortho"`` predicts the (y, x), (z, x) and (z, y)
plane stacks into temporary arrays and averages them into the outputs.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch

from emda.analysis.source_objects import recorded
from emda.data.normalization import IntensityRange, NormalizeMode
from emda.data.planes import (
    PLANE_AXES,
    Planes,
    combine_regions,
    mean_of_planes,
    ortho_warnings,
    region_key,
    resolve_planes,
    trained_in_three_planes,
)
from emda.data.resample import model_zoom
from emda.device import as_device
from emda.errors import EmdaError
from emda.inference.blocks import Block, check_block_size, output_chunks, plan_blocks
from emda.inference.dask import dask_client, require_dask, run_blocks_on_dask, worker_job
from emda.inference.jobs import PredictJob, encode_prob, run_block
from emda.inference.jobs import load as load_job
from emda.inference.jobs import release as release_job
from emda.inference.settings import PredictResult, PredictSettings, check_prediction_outputs
from emda.inference.sliding_window import BlendMode, SlidingWindowPredictor
from emda.interrupt import Interrupted, StopOnInterrupt
from emda.io.volume import Volume, VoxelSize, open_volume, split_address
from emda.io.writer import VolumeWriter
from emda.model.checkpoint import Checkpoint, load_checkpoint
from emda.precision import name as precision_name
from emda.precision import resolve_precision
from emda.pretrained import resolve as resolve_run
from emda.safety.boundary import as_user_error
from emda.safety.fingerprint import content_fingerprint
from emda.safety.paths import check_output, refuse_writing_inputs
from emda.training.state import CHECKPOINT_NAME

log = logging.getLogger("emda")

STACK_CHUNK = 256  # (y, x) chunk edge of a plane stack: averaging reads it across its slices
COMBINE_DEPTH = 32  # slices averaged at a time: memory is this x one output chunk per stack

Progress = Callable[[int, int], None]


@dataclass
class _Pass:
    """Blocks of one plane stack, the job that predicts them and the writers they finish."""

    job: PredictJob
    marks: list[VolumeWriter]
    arrays: dict
    blocks: list[Block]


@dataclass
class _Plan:
    checkpoint: Checkpoint
    volume: Volume
    stacks: list[str]
    intensity: IntensityRange
    fingerprint: dict
    zoom: float = 1.0
    writers: dict[str, VolumeWriter] = field(default_factory=dict)
    stack_writers: dict[str, VolumeWriter] = field(default_factory=dict)

    @property
    def every_writer(self) -> list[VolumeWriter]:
        return [*self.writers.values(), *self.stack_writers.values()]


def predict(
    checkpoint: str | Path,
    input_path: str,
    output: str | None = None,
    mask: str | None = None,
    *,
    settings: PredictSettings | None = None,
    device: str | torch.device = "auto",
    key: str | None = None,
    voxel_size: VoxelSize | None = None,
    channel: int | None = None,
    overwrite: bool = False,
    resume: bool = False,
    progress: Progress | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    threads: int | None = None,
) -> PredictResult:
    """Segment ``input_path`` (TIFF or zarr, any size) with the model of ``checkpoint`` (a
    run directory or its ``checkpoint.pt``): probabilities to ``output`` and/or a binary
    mask to ``mask`` (``.tif``, ``.zarr``, ``.ome.zarr``). ``progress(done, total)`` is
    called after every block; ``channel`` picks one of a multichannel OME-Zarr input.

    ``scheduler`` (a Dask scheduler address) or ``workers`` (a local Dask cluster of that
    many processes) spread the blocks over processes; the output is the same as one
    process's. ``threads``: torch threads per Dask worker (default: a local cluster
    shares this machine's cores evenly). With ``resume``, blocks an interrupted run of
    the same command finished are kept and not predicted again.
    """
    s = settings or PredictSettings()
    device = as_device(device)
    check_prediction_outputs(output, mask, s.threshold, s.prob_dtype)
    check_block_size(s.block_size, s.block_halo)
    if s.pyramid < 0:
        raise EmdaError(f"--pyramid {s.pyramid}: must be >= 0")
    if scheduler and workers:
        raise EmdaError("--scheduler and --workers contradict each other: choose one")
    if workers is not None and workers < 1:
        raise EmdaError(f"--workers {workers}: must be >= 1")
    if scheduler or workers:
        require_dask()
    dtype = resolve_precision(s.precision, device, "predict")
    plan = _plan(checkpoint, input_path, output, mask, s, key, voxel_size, overwrite, resume,
                 channel)  # fmt: skip
    if dtype is not None:  # outputs begun before precision was recorded were float32
        plan.fingerprint["precision"] = precision_name(dtype)
    predictor = SlidingWindowPredictor(
        plan.checkpoint.build_model(), device, s.tile_size, s.overlap, s.batch_size, s.blend,
        tta=s.tta, zoom=plan.zoom, precision=dtype,
    )  # fmt: skip
    _open_writers(plan, output, mask, s, overwrite, resume)
    job = PredictJob(
        checkpoint=plan.fingerprint["checkpoint"],
        input=str(Path(input_path).resolve()),
        key=key,
        voxel_size=voxel_size,
        intensity=(plan.intensity.low, plan.intensity.high),
        tile_size=s.tile_size,
        overlap=s.overlap,
        batch_size=s.batch_size,
        blend=str(BlendMode(s.blend).value),
        tta=s.tta,
        device=str(device),
        prob_path=_partial(plan.writers.get("prob")),
        prob_dtype=s.prob_dtype,
        mask_path=_partial(plan.writers.get("mask")),
        threshold=s.threshold,
        zoom=plan.zoom,
        channel=channel,
        precision=precision_name(dtype),
    )
    start = time.perf_counter()
    total = _execute(plan, job, predictor, s, progress, scheduler, workers, threads)
    seconds = time.perf_counter() - start
    volume = plan.volume
    return PredictResult(
        input=input_path,
        shape=volume.shape,
        planes=list(plan.stacks),
        seconds=seconds,
        voxels_per_second=float(np.prod(volume.shape)) / seconds,
        intensity_range=(plan.intensity.low, plan.intensity.high),
        blocks=total,
        precision=precision_name(dtype),
    )


def _partial(writer: VolumeWriter | None) -> str | None:
    return str(writer.partial.resolve()) if writer is not None else None


def _plan(checkpoint, input_path, output, mask, s, key, voxel_size, overwrite, resume,
          channel=None) -> _Plan:  # fmt: skip
    """Read the model and the volume, check the outputs, fix what resuming must match."""
    ckpt = load_checkpoint(checkpoint)
    volume = open_volume(input_path, key, voxel_size, channel)
    where = resolve_run(checkpoint)  # emda:NAME: a shipped model
    ckpt_file = where / CHECKPOINT_NAME if where.is_dir() else where
    refuse_writing_inputs({"--output": output, "--mask": mask}, [volume.location, ckpt_file])
    for path, option in ((output, "--output"), (mask, "--mask")):
        if path:
            check_output(path, overwrite, option)
    if resume and overwrite:
        raise EmdaError("--resume and --overwrite contradict each other: choose one")
    saw = trained_in_three_planes(ckpt.training)
    stacks = resolve_planes(s.planes, volume, ckpt.voxel_size, saw)
    if len(stacks) > 1 and Planes(s.planes) is Planes.ortho:
        for message in ortho_warnings(str(input_path), volume.voxel_size, ckpt.voxel_size, saw):
            log.warning("%s", message)
    intensity = (
        ckpt.normalization.fit(volume)
        if NormalizeMode(s.normalize) is NormalizeMode.volume
        else ckpt.source_range
    )
    stat = ckpt_file.stat()
    # what makes two runs of this command produce the same output (resume checks it)
    fingerprint = {
        "checkpoint": str(ckpt_file.resolve()),
        "checkpoint_size_mtime": [stat.st_size, stat.st_mtime_ns],
        "input": str(Path(split_address(input_path)[0]).resolve()),
        "key": key,
        "channel": channel,
        "shape": list(volume.shape),
        "content": content_fingerprint(volume),  # the same data, not only the same path
        "tile_size": s.tile_size,
        "tiles": "fitted",  # a side shorter than the tile gets a shorter tile
        "overlap": s.overlap,
        "blend": str(BlendMode(s.blend).value),
        "tta": s.tta,
        "intensity": [intensity.low, intensity.high],
        "block_size": s.block_size,
        "halo": s.block_halo,
        "planes": list(stacks),
    }
    zoom = model_zoom(ckpt, volume, str(input_path)) if s.resample else 1.0
    if zoom != 1.0:  # older partial outputs (no zoom recorded) were predicted without it
        fingerprint["zoom"] = zoom
    return _Plan(ckpt, volume, list(stacks), intensity, fingerprint, zoom=zoom)


def _open_writers(plan: _Plan, output, mask, s: PredictSettings, overwrite, resume) -> None:
    volume, fingerprint = plan.volume, plan.fingerprint
    chunks = output_chunks(volume.shape, s.block_size)
    outputs = {
        "prob": (output, s.prob_dtype, {"prob_dtype": s.prob_dtype}),
        "mask": (mask, "uint8", {"threshold": s.threshold}),
    }
    try:
        for kind, (path, dtype, extra) in outputs.items():
            if path:
                plan.writers[kind] = VolumeWriter(
                    path, volume.shape, dtype, volume.voxel_size, overwrite, chunks,
                    attrs={"emda_kind": "probability" if kind == "prob" else "mask",
                           "emda_source_objects": recorded(plan.checkpoint.training)},
                    job={**fingerprint, **extra}, resume=resume, pyramid=s.pyramid,
                    ngff=s.ngff if ".ome.zarr" in str(path).lower() else None,
                )  # fmt: skip
        if len(plan.stacks) > 1:
            # each plane stack's probabilities (float32, in its own axis order) until averaged
            base = next(iter(plan.writers.values())).path  # out.tif -> out.tif.xz.zarr partial
            for plane in plan.stacks:
                shape = volume.permuted(PLANE_AXES[plane]).shape
                plan.stack_writers[plane] = VolumeWriter(
                    f"{base}.{plane}.zarr", shape, "float32", None,
                    overwrite, (1, min(shape[1], STACK_CHUNK), min(shape[2], STACK_CHUNK)),
                    job={**fingerprint, "plane": plane}, resume=resume,
                )  # fmt: skip
    except BaseException:
        for writer in plan.every_writer:
            writer.abort()
        raise


def _passes(plan: _Plan, job: PredictJob, s: PredictSettings) -> list[_Pass]:
    """One pass per plane stack, each with the blocks its writers have not finished."""
    passes = []
    if plan.stack_writers:
        for plane, writer in plan.stack_writers.items():
            stack_job = dataclasses.replace(
                job, axes=PLANE_AXES[plane], prob_path=str(writer.partial.resolve()),
                prob_dtype="float32", mask_path=None,
            )  # fmt: skip
            # window by window, plane after plane: consecutive planes come from one slab read
            blocks = sorted(plan_blocks(writer.shape, s.block_size, s.block_halo),
                            key=lambda b: (b.y.start, b.x.start, b.z))  # fmt: skip
            passes.append(_Pass(stack_job, [writer], {"prob": writer.array}, blocks))
    else:
        arrays = {kind: w.array for kind, w in plan.writers.items()}
        blocks = plan_blocks(plan.volume.shape, s.block_size, s.block_halo)
        passes.append(_Pass(job, list(plan.writers.values()), arrays, blocks))
    return passes


def _execute(plan, job, predictor, s, progress, scheduler, workers, threads) -> int:
    """Predict every unfinished block, average plane stacks, commit; returns the blocks."""
    writers = plan.writers
    passes = _passes(plan, job, s)
    regions = []
    if plan.stack_writers:
        regions = combine_regions(plan.volume.shape, output_chunks(plan.volume.shape,
                                  s.block_size), COMBINE_DEPTH)  # fmt: skip
    total = sum(len(p.blocks) for p in passes) + len(regions)
    for p in passes:  # a resumed run skips the blocks its writers finished
        p.blocks = [b for b in p.blocks if not all(b.key in w.done for w in p.marks)]
    skip = set.intersection(*(w.done for w in writers.values()))
    regions = [r for r in regions if region_key(r) not in skip]
    finished = total - sum(len(p.blocks) for p in passes) - len(regions)

    def done(marks: list[VolumeWriter], block_key: str) -> None:
        nonlocal finished
        for writer in marks:
            writer.mark_done(block_key)
        finished += 1
        if progress is not None:
            progress(finished, total)

    distributed = bool(scheduler or workers)
    try:
        with StopOnInterrupt() as stop:
            with dask_client(scheduler, workers) if distributed else nullcontext() as client:
                for p in passes:
                    if client is not None:
                        spread = worker_job(p.job, scheduler, workers, threads)
                        run_blocks_on_dask(spread, p.blocks, client, partial(done, p.marks), stop)
                        continue
                    load_job(p.job, predictor, plan.volume.permuted(p.job.axes), p.arrays)
                    try:
                        for block in p.blocks:
                            done(p.marks, run_block(p.job, block))
                            if stop.requested:  # Ctrl-C: stop between blocks, finished ones kept
                                raise KeyboardInterrupt
                    finally:
                        release_job()
            stacks_read = {plane: w.array for plane, w in plan.stack_writers.items()}
            for region in regions:
                prob = mean_of_planes(stacks_read, region)
                if "prob" in writers:
                    writers["prob"].array[region] = encode_prob(prob, s.prob_dtype)
                if "mask" in writers:
                    writers["mask"].array[region] = (prob >= s.threshold).astype(np.uint8)
                done(list(writers.values()), region_key(region))
                if stop.requested:
                    raise KeyboardInterrupt
            for writer in writers.values():
                writer.commit()
            for writer in plan.stack_writers.values():
                writer.abort(keep=False)
    except KeyboardInterrupt:
        for writer in plan.every_writer:
            writer.abort()
        kept = [str(w.partial) for w in plan.every_writer if w.partial.exists()]
        raise Interrupted(
            "interrupted; "
            + (f"finished blocks are kept in {', '.join(kept)}: " if kept else "")
            + "rerun the same command with --resume to continue"
        ) from None
    except BaseException as exc:
        # bad input: the partial output is of no use; a crash or a full disk: keep it to resume
        for writer in plan.every_writer:
            writer.abort(keep=not isinstance(exc, EmdaError))
        kept = [str(w.partial) for w in plan.every_writer if w.partial.exists()]
        if isinstance(exc, OSError) and kept:
            raise EmdaError(
                f"{as_user_error(exc)}; finished blocks are kept in "
                f"{', '.join(kept)}: rerun with --resume once it is fixed"
            ) from exc
        raise
    return total
