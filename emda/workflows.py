"""What the commands do, as plain functions (the CLI and the demo both call these)."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from emda import __version__, ddp, sharpness, validation
from emda.batchnorm import DEFAULT_BATCHES, recalibrate_batchnorm
from emda.blocks import check_block_size, output_chunks, plan_blocks
from emda.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from emda.distributed import dask_client, require_dask, run_blocks_on_dask, worker_job
from emda.errors import EmdaError
from emda.evaluate import Evaluation, check_threshold, evaluate, parse_z_range
from emda.inference import BlendMode, SlidingWindowPredictor
from emda.interrupt import Interrupted, StopOnInterrupt
from emda.method import Method, Supervised
from emda.model import UNet, UNetConfig
from emda.normalization import Normalization, NormalizeMode
from emda.options import options_to_dict, parse_options
from emda.planes import (
    PLANE_AXES,
    Planes,
    combine_regions,
    is_isotropic,
    mean_of_planes,
    ortho_warnings,
    region_key,
    resolve_planes,
    trained_in_three_planes,
)
from emda.plots import training_curve
from emda.predict_job import PredictJob, encode_prob, run_block
from emda.predict_job import load as load_job
from emda.predict_job import release as release_job
from emda.registry import load_registry
from emda.sampling import Augmentation, PatchSampler, choose_slices
from emda.train import (
    CHECKPOINT_NAME,
    LOG_NAME,
    STATE_NAME,
    TARGET_PLANES,
    TrainConfig,
    read_log,
    train,
)
from emda.volume import (
    Volume,
    VolumeWriter,
    check_output,
    open_volume,
    read_labels,
    split_address,
)

if TYPE_CHECKING:  # scipy loads only for `emda clean`
    from emda.cleaning import CleaningCounts, CleaningSizes

log = logging.getLogger("emda")

CONFIG_NAME = "config.toml"
CURVE_NAME = "training_curve.png"
RUN_FILES = (CHECKPOINT_NAME, STATE_NAME, LOG_NAME, CONFIG_NAME, CURVE_NAME)
STACK_CHUNK = 256  # (y, x) chunk edge of a plane stack: averaging reads it across its slices
COMBINE_DEPTH = 32  # slices averaged at a time: memory is this x one output chunk per stack


@dataclass
class VolumeSpec:
    """Where a training volume is and which z-slices of it to use."""

    raw: str
    labels: str | None = None
    z_range: str | None = None
    voxel_size: tuple[float, float, float] | None = None
    foreground: float | None = None


@dataclass
class RunSummary:
    run_dir: Path
    iterations: int
    seconds: float
    final_terms: dict[str, float]
    source_validation: dict | None = None  # scores on held-out source slices, as trained


def check_run_dir(run_dir: Path, overwrite: bool, resume: bool = False) -> None:
    """:func:`prepare_run_dir`'s refusals alone, writing nothing: for commands that do
    long work (a teacher's prediction) before the run directory is made."""
    run_dir = Path(run_dir)
    if resume:
        if overwrite:
            raise EmdaError("--resume and --overwrite contradict each other: choose one")
        if not (run_dir / STATE_NAME).is_file():
            finished = (run_dir / CHECKPOINT_NAME).is_file()
            raise EmdaError(
                f"--resume: {run_dir} "
                + ("holds a finished run: nothing to resume" if finished else "has no saved state")
            )
        return
    if run_dir.exists() and not run_dir.is_dir():
        raise EmdaError(f"--out {run_dir}: exists and is not a directory")
    existing = [f for f in RUN_FILES if (run_dir / f).exists()]
    if existing and not overwrite:
        raise EmdaError(f"--out {run_dir}: already holds a run (pass --overwrite to replace it)")
    parent = run_dir.parent if str(run_dir.parent) else Path(".")
    if not run_dir.exists() and not parent.exists():
        raise EmdaError(f"--out {run_dir}: parent directory {parent} does not exist")


def prepare_run_dir(run_dir: Path, overwrite: bool, resume: bool = False) -> None:
    """Refuse to mix two runs; ``overwrite`` removes only files emda itself writes;
    ``resume`` keeps an interrupted run's files (train checks they fit)."""
    run_dir = Path(run_dir)
    check_run_dir(run_dir, overwrite, resume)
    if resume:
        for leftover in run_dir.glob(".*.tmp"):  # from a save that a kill cut short
            leftover.unlink()
        return
    existing = [f for f in RUN_FILES if (run_dir / f).exists()]
    try:
        run_dir.mkdir(exist_ok=True)
        probe = run_dir / ".emda-write-test"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise EmdaError(f"--out {run_dir}: not writable ({exc.strerror})") from None
    for name in existing:
        (run_dir / name).unlink()


def _load_training_volume(spec: VolumeSpec, role: str) -> tuple[Volume, Volume | None, list[int]]:
    raw = open_volume(spec.raw, voxel_size=spec.voxel_size)
    labels = None
    if spec.labels:
        labels = read_labels(spec.labels, foreground=spec.foreground)
        if labels.shape != raw.shape:
            raise EmdaError(
                f"{spec.labels}: label shape {labels.shape} differs from {role} raw "
                f"{spec.raw} shape {raw.shape}"
            )
    start, stop = parse_z_range(spec.z_range, raw.shape[0], f"--{role}-z")
    zs = list(range(start, stop))
    if labels is not None and not any(np.any(labels.read(z)) for z in zs):
        raise EmdaError(f"{spec.labels}: no foreground voxels in the {role} labels used")
    return raw, labels, zs


def resolve_method(name: str, opts: list[str] | dict) -> Method:
    info = load_registry().get(name)
    return info.cls(parse_options(info.cls.Options, opts, name))


def adapt(
    source: VolumeSpec,
    target: VolumeSpec | None,
    run_dir: Path,
    method: Method,
    config: TrainConfig,
    model_config: UNetConfig,
    normalization: Normalization,
    device: torch.device,
    overwrite: bool = False,
    show_progress: bool = True,
    resolved_config: dict | None = None,
    target_bn: bool = True,
    resume: bool = False,
    source_val_z: str | None = None,
) -> RunSummary:
    """Train a new model on the labelled source (and unlabelled target) with ``method``.

    With ``target_bn`` and a target, the batch-norm statistics are re-estimated on the
    target after training (see ``emda.batchnorm``); this holds for every method, ft too.
    ``source_val_z``: held-out source slices START:STOP, scored after training with the
    source's statistics (``emda.validation``) and recorded in the checkpoint.
    """
    config = config.for_method(method)  # what the checkpoint records is what ran
    for option, spec in (("--source", source), ("--target", target)):
        if spec is not None and not split_address(spec.raw)[0].exists():
            raise EmdaError(f"{option} {spec.raw}: no such file")  # even if the method ignores it
    src_raw, src_labels, src_z = _load_training_volume(source, "source")
    if src_labels is None:
        raise EmdaError("--source-labels is required: the source must be labelled")
    val_z = None
    if source_val_z is not None:
        val_z = parse_z_range(source_val_z, src_raw.shape[0], "--source-val-z")
        validation.check_held_out(val_z, src_z, "--source-val-z")
    tgt_sampler = None
    tgt_range = None
    mixes = config.amplitude_mix > 0  # target patches lend their style to the source's
    if mixes and target is None:
        raise EmdaError("--amplitude-mix needs --target (the style comes from target patches)")
    if target is not None and (method.uses_target or target_bn or mixes):
        tgt_raw, _, tgt_z = _load_training_volume(target, "target")
        tgt_range = normalization.fit(tgt_raw)
        _check_target_planes(config.target_planes, tgt_raw, tgt_z, config.patch_size)
    elif method.uses_target:
        raise EmdaError(f"--target is required by method '{method.name}'")
    elif config.target_planes != "xy":
        raise EmdaError("--target-planes needs --target")
    torch.manual_seed(config.seed)  # the initial weights are part of what the seed fixes
    model = UNet(model_config)
    method.build_heads(model)  # a method's option errors surface before anything is written
    if tgt_range is not None:  # after build_heads: a guide may come from a head's model
        guide = None
        if method.uses_target:
            if ddp.is_main():  # other ranks could find the files rank 0 has since written
                check_run_dir(run_dir, overwrite, resume)  # before minutes of a teacher's work
            guide = method.target_guide(tgt_raw, tgt_range, tgt_z, device)
        tgt_sampler = PatchSampler(
            tgt_raw,
            tgt_range,
            config.patch_size,
            None,
            tgt_z,
            config.augmentation(),
            TARGET_PLANES[config.target_planes],
            guide,
        )
    if not resume:  # a resumed run's weights come from its saved state
        method.initialise(model)
    if ddp.is_main():  # under torchrun, rank 0 alone writes the run directory
        prepare_run_dir(run_dir, overwrite, resume)
    src_range = normalization.fit(src_raw)
    src_sampler = PatchSampler(
        src_raw,
        src_range,
        config.patch_size,
        src_labels,
        src_z,
        config.augmentation(),
    )
    template = Checkpoint(
        model_config=model_config,
        state_dict={},
        normalization=normalization,
        source_range=src_range,
        voxel_size=src_raw.voxel_size,
        method=method.name,
        method_options=options_to_dict(method.options),
        training={
            "command": "adapt",
            **_training_dict(config),
            "source": source.raw,
            "target": target.raw if target else None,
            "target_range": [tgt_range.low, tgt_range.high] if tgt_range else None,
            "target_bn": bool(target_bn and tgt_sampler is not None),
        },
    )
    if not resume and ddp.is_main():
        _write_config(run_dir, "adapt", resolved_config)
    train_target = tgt_sampler if method.uses_target or mixes else None
    result = train(
        model,
        method,
        src_sampler,
        train_target,
        config,
        device,
        run_dir,
        template,
        show_progress,
        resume,
    )
    if not ddp.is_main():
        return RunSummary(run_dir, result.iterations, result.seconds, result.final_terms)
    scores = None
    if val_z is not None:  # before target statistics replace the source's
        scores = validation.score_slices(model, src_raw, src_labels, src_range, val_z, device)
        template.training["source_validation"] = scores
        save_checkpoint(template, run_dir / CHECKPOINT_NAME)
    if target_bn and tgt_sampler is not None:
        _recalibrate_on_target(model, tgt_raw, tgt_range, tgt_z, config, device, run_dir, template)
    _write_curve(run_dir)
    return RunSummary(run_dir, result.iterations, result.seconds, result.final_terms, scores)


def recalibrate(
    base: str | Path,
    target: VolumeSpec,
    run_dir: Path,
    device: torch.device,
    batches: int = DEFAULT_BATCHES,
    overwrite: bool = False,
) -> Path:
    """A new run whose model is ``base``'s with batch-norm statistics from ``target``.

    The same step ``adapt`` ends with (same patch size, batch size and seed as the base
    run's training), usable on any finished run: adaptation without training.
    """
    if batches <= 0:
        raise EmdaError(f"--batches {batches}: must be positive")
    ckpt = load_checkpoint(base)
    raw, _, zs = _load_training_volume(target, "target")
    prepare_run_dir(run_dir, overwrite)
    training = ckpt.training or {}
    config = TrainConfig(
        patch_size=int(training.get("patch_size", 128)),
        batch_size=int(training.get("batch_size", 8)),
        seed=int(training.get("seed", 0)),
    )
    intensity = ckpt.normalization.fit(raw)
    model = ckpt.build_model()
    ckpt.training = {
        "command": "recalibrate",
        "base": str(base),
        "base_training": training,
        "target": target.raw,
        "target_z": [zs[0], zs[-1] + 1],
        "batches": batches,
        "emda_version": __version__,
        "target_bn": True,
    }
    _recalibrate_on_target(model, raw, intensity, zs, config, device, run_dir, ckpt, batches)
    return run_dir


def _recalibrate_on_target(
    model, raw, intensity, z_indices, config, device, run_dir, template, batches=DEFAULT_BATCHES
) -> None:
    """Target batch-norm statistics, then rewrite the final checkpoint with them."""
    # the target as inference sees it: dihedral copies only, no intensity changes
    plain = PatchSampler(raw, intensity, config.patch_size, None, z_indices, Augmentation())
    recalibrate_batchnorm(model, plain, device, batches, config.batch_size, config.seed)
    template.state_dict = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_checkpoint(template, run_dir / CHECKPOINT_NAME)


def finetune(
    base: str | Path,
    target: VolumeSpec,
    run_dir: Path,
    fraction: float,
    config: TrainConfig,
    device: torch.device,
    overwrite: bool = False,
    show_progress: bool = True,
    resolved_config: dict | None = None,
    resume: bool = False,
) -> RunSummary:
    """Continue a run's model on ``fraction`` of the target's labelled z-slices."""
    if not 0 < fraction <= 1:
        raise EmdaError(f"--fraction {fraction}: must be in (0, 1]")
    method = Supervised()  # finetuning trains on target labels alone, whatever ran before
    config = config.for_method(method)
    ckpt = load_checkpoint(base)
    if target.labels is None:
        raise EmdaError("--target-labels is required for finetuning")
    raw, labels, zs = _load_training_volume(target, "target")
    chosen = [zs[i] for i in choose_slices(len(zs), fraction, config.seed)]
    assert labels is not None
    if not any(np.any(labels.read(z)) for z in chosen):
        log.warning("the chosen target slices %s contain no foreground", chosen)
    if ddp.is_main():
        prepare_run_dir(run_dir, overwrite, resume)
    tgt_range = ckpt.normalization.fit(raw)
    sampler = PatchSampler(raw, tgt_range, config.patch_size, labels, chosen, config.augmentation())
    model = ckpt.build_model()
    template = Checkpoint(
        model_config=ckpt.model_config,
        state_dict={},
        normalization=ckpt.normalization,
        source_range=tgt_range,
        voxel_size=raw.voxel_size or ckpt.voxel_size,
        method=ckpt.method,
        method_options=ckpt.method_options,
        training={
            "command": "finetune",
            **_training_dict(config),
            "base": str(base),
            "base_training": ckpt.training,
            "fraction": fraction,
            "labelled_slices": chosen,
            "target": target.raw,
        },
    )
    if not resume and ddp.is_main():
        _write_config(run_dir, "finetune", resolved_config)
    result = train(
        model, method, sampler, None, config, device, run_dir, template, show_progress, resume
    )
    if ddp.is_main():
        _write_curve(run_dir)
    return RunSummary(run_dir, result.iterations, result.seconds, result.final_terms)


def check_prediction_outputs(
    output: str | None, mask: str | None, threshold: float, prob_dtype: str
) -> None:
    """The options of a command that writes probabilities and/or a mask (predict, ensemble)."""
    if output is None and mask is None:
        raise EmdaError("nothing to write: give --output (probabilities) and/or --mask")
    check_threshold(threshold)
    if prob_dtype not in ("uint8", "float32"):
        raise EmdaError(f"--prob-dtype {prob_dtype}: must be uint8 or float32")
    if output and mask and Path(output).resolve() == Path(mask).resolve():
        raise EmdaError("--output and --mask must be different paths")


def predict(
    checkpoint: str | Path,
    input_path: str,
    output: str | None,
    mask: str | None,
    device: torch.device,
    key: str | None = None,
    threshold: float = 0.5,
    prob_dtype: str = "uint8",
    tile_size: int = 256,
    overlap: float = 0.25,
    batch_size: int = 8,
    blend: str = BlendMode.gaussian,
    normalize: str = NormalizeMode.volume,
    voxel_size: tuple[float, float, float] | None = None,
    overwrite: bool = False,
    progress=None,
    resume: bool = False,
    tta: bool = False,
    block_size: int = 2048,
    halo: int | None = None,
    pyramid: int = 0,
    scheduler: str | None = None,
    workers: int | None = None,
    threads: int | None = None,
    planes: str = Planes.xy,
) -> dict:
    """Write foreground probabilities and/or a mask for a volume of any size.

    The volume is predicted block by block (:mod:`emda.blocks`): memory holds one block
    with its halo, never the volume. ``scheduler`` (a Dask scheduler address) or
    ``workers`` (a local Dask cluster of that many processes) spread the blocks over
    processes; the output is the same as a single process's. With ``resume``, blocks an
    interrupted run of the same command finished are kept and not predicted again.
    ``threads``: torch threads per Dask worker (default: a local cluster shares this
    machine's cores evenly). ``planes`` (:mod:`emda.planes`): ``ortho`` predicts the
    (y, x), (z, x) and (z, y) plane stacks and averages them.
    """
    check_prediction_outputs(output, mask, threshold, prob_dtype)
    halo = tile_size // 2 if halo is None else halo
    check_block_size(block_size, halo)
    if pyramid < 0:
        raise EmdaError(f"--pyramid {pyramid}: must be >= 0")
    if scheduler and workers:
        raise EmdaError("--scheduler and --workers contradict each other: choose one")
    if workers is not None and workers < 1:
        raise EmdaError(f"--workers {workers}: must be >= 1")
    distributed = bool(scheduler or workers)
    if distributed:
        require_dask()
    ckpt = load_checkpoint(checkpoint)
    volume = open_volume(input_path, key, voxel_size)
    for path, option in ((output, "--output"), (mask, "--mask")):
        if path:
            check_output(path, overwrite, option)
    if resume and overwrite:
        raise EmdaError("--resume and --overwrite contradict each other: choose one")
    stacks = resolve_planes(planes, volume, ckpt.voxel_size)
    if len(stacks) > 1 and Planes(planes) is Planes.ortho:
        saw = trained_in_three_planes(ckpt.training)
        for message in ortho_warnings(str(input_path), volume.voxel_size, ckpt.voxel_size, saw):
            log.warning("%s", message)
    model = ckpt.build_model()
    predictor = SlidingWindowPredictor(
        model, device, tile_size, overlap, batch_size, blend, tta=tta
    )
    intensity = (
        ckpt.normalization.fit(volume)
        if NormalizeMode(normalize) is NormalizeMode.volume
        else ckpt.source_range
    )
    voxel = volume.voxel_size
    # what makes two runs of this command produce the same output (resume checks it)
    ckpt_file = (
        Path(checkpoint) / CHECKPOINT_NAME if Path(checkpoint).is_dir() else Path(checkpoint)
    )
    stat = ckpt_file.stat()
    fingerprint = {
        "checkpoint": str(ckpt_file.resolve()),
        "checkpoint_size_mtime": [stat.st_size, stat.st_mtime_ns],
        "input": str(Path(split_address(input_path)[0]).resolve()),
        "key": key,
        "shape": list(volume.shape),
        "tile_size": tile_size,
        "tiles": "fitted",  # a side shorter than the tile gets a shorter tile
        "overlap": overlap,
        "blend": str(BlendMode(blend).value),
        "tta": tta,
        "intensity": [intensity.low, intensity.high],
        "block_size": block_size,
        "halo": halo,
        "planes": list(stacks),
    }
    chunks = output_chunks(volume.shape, block_size)
    writers: dict[str, VolumeWriter] = {}
    # ortho: each plane stack's probabilities (float32, in its own axis order) until averaged
    stack_writers: dict[str, VolumeWriter] = {}
    try:
        if output:
            attrs = {"emda_kind": "probability"}
            job_prob = {**fingerprint, "prob_dtype": prob_dtype}
            writers["prob"] = VolumeWriter(output, volume.shape, prob_dtype, voxel, overwrite,
                                           chunks, attrs=attrs, job=job_prob, resume=resume,
                                           pyramid=pyramid)  # fmt: skip
        if mask:
            attrs = {"emda_kind": "mask"}
            job_mask = {**fingerprint, "threshold": threshold}
            writers["mask"] = VolumeWriter(mask, volume.shape, "uint8", voxel, overwrite, chunks,
                                           attrs=attrs, job=job_mask, resume=resume,
                                           pyramid=pyramid)  # fmt: skip
        if len(stacks) > 1:
            base = next(iter(writers.values())).path  # out.tif -> out.tif.xz.emda-partial.zarr
            for plane in stacks:
                shape = volume.permuted(PLANE_AXES[plane]).shape
                stack_writers[plane] = VolumeWriter(
                    f"{base}.{plane}.zarr", shape, "float32", None,
                    overwrite, (1, min(shape[1], STACK_CHUNK), min(shape[2], STACK_CHUNK)),
                    job={**fingerprint, "plane": plane}, resume=resume,
                )  # fmt: skip
    except BaseException:
        for writer in [*writers.values(), *stack_writers.values()]:
            writer.abort()
        raise
    job = PredictJob(
        checkpoint=str(ckpt_file.resolve()),
        input=str(Path(input_path).resolve()),
        key=key,
        voxel_size=voxel_size,
        intensity=(intensity.low, intensity.high),
        tile_size=tile_size,
        overlap=overlap,
        batch_size=batch_size,
        blend=str(BlendMode(blend).value),
        tta=tta,
        device=str(device),
        prob_path=str(writers["prob"].partial.resolve()) if "prob" in writers else None,
        prob_dtype=prob_dtype,
        mask_path=str(writers["mask"].partial.resolve()) if "mask" in writers else None,
        threshold=threshold,
    )
    skip = set.intersection(*(w.done for w in writers.values()))
    # one pass per plane stack: (job, the writers its blocks finish, their arrays, blocks)
    passes: list[tuple[PredictJob, list[VolumeWriter], dict, list]] = []
    if stack_writers:
        for plane, writer in stack_writers.items():
            stack_job = dataclasses.replace(
                job, axes=PLANE_AXES[plane], prob_path=str(writer.partial.resolve()),
                prob_dtype="float32", mask_path=None,
            )  # fmt: skip
            # window by window, plane after plane: consecutive planes come from one slab read
            blocks = sorted(plan_blocks(writer.shape, block_size, halo),
                            key=lambda b: (b.y.start, b.x.start, b.z))  # fmt: skip
            passes.append((stack_job, [writer], {"prob": writer.array}, blocks))
        regions = combine_regions(volume.shape, chunks, COMBINE_DEPTH)
    else:
        arrays = {kind: w.array for kind, w in writers.items()}
        blocks = plan_blocks(volume.shape, block_size, halo)
        passes.append((job, list(writers.values()), arrays, blocks))
        regions = []
    total = sum(len(blocks) for *_, blocks in passes) + len(regions)
    passes = [  # a resumed run skips the blocks its writers finished
        (pass_job, marks, arrays, [b for b in blocks if not all(b.key in w.done for w in marks)])
        for pass_job, marks, arrays, blocks in passes
    ]
    regions = [r for r in regions if region_key(r) not in skip]
    finished = total - sum(len(blocks) for *_, blocks in passes) - len(regions)

    def done(marks: list[VolumeWriter], block_key: str) -> None:
        nonlocal finished
        for writer in marks:
            writer.mark_done(block_key)
        finished += 1
        if progress is not None:
            progress(finished, total)

    every = [*writers.values(), *stack_writers.values()]
    start = time.perf_counter()
    try:
        with StopOnInterrupt() as stop:
            with dask_client(scheduler, workers) if distributed else nullcontext() as client:
                for pass_job, marks, arrays, blocks in passes:
                    if client is not None:
                        spread = worker_job(pass_job, scheduler, workers, threads)
                        run_blocks_on_dask(spread, blocks, client, partial(done, marks), stop)
                        continue
                    load_job(pass_job, predictor, volume.permuted(pass_job.axes), arrays)
                    try:
                        for block in blocks:
                            done(marks, run_block(pass_job, block))
                            if stop.requested:  # Ctrl-C: stop between blocks, finished ones kept
                                raise KeyboardInterrupt
                    finally:
                        release_job()
            stacks_read = {plane: w.array for plane, w in stack_writers.items()}
            for region in regions:
                prob = mean_of_planes(stacks_read, region)
                if "prob" in writers:
                    writers["prob"].array[region] = encode_prob(prob, prob_dtype)
                if "mask" in writers:
                    writers["mask"].array[region] = (prob >= threshold).astype(np.uint8)
                done(list(writers.values()), region_key(region))
                if stop.requested:
                    raise KeyboardInterrupt
            for writer in writers.values():
                writer.commit()
            for writer in stack_writers.values():
                writer.abort(keep=False)
    except KeyboardInterrupt:
        for writer in every:
            writer.abort()
        kept = [str(w.partial) for w in every if w.partial.exists()]
        raise Interrupted(
            "interrupted; "
            + (f"finished blocks are kept in {', '.join(kept)}: " if kept else "")
            + "rerun the same command with --resume to continue"
        ) from None
    except BaseException as exc:
        # bad input: the partial output is of no use; a crash: keep it to resume
        for writer in every:
            writer.abort(keep=not isinstance(exc, EmdaError))
        raise
    seconds = time.perf_counter() - start
    return {
        "input": input_path,
        "shape": volume.shape,
        "planes": list(stacks),
        "seconds": seconds,
        "voxels_per_second": float(np.prod(volume.shape)) / seconds,
        "intensity_range": [intensity.low, intensity.high],
        "blocks": total,
    }


def evaluate_many(
    predictions: list[str],
    truth: str,
    threshold: float = 0.5,
    z_range: str | None = None,
    foreground: float | None = None,
    key: str | None = None,
    truth_key: str | None = None,
) -> list[Evaluation]:
    gt = open_volume(truth, truth_key)
    return [evaluate(open_volume(p, key), gt, threshold, z_range, foreground) for p in predictions]


@dataclass
class SmoothSummary:
    sigma: float
    level_before: float  # gradient level of the measured slices, before and after
    level_after: float
    reference_level: float | None
    seconds: float


def smooth(
    input_path: str,
    output: str,
    sigma: float | None = None,
    like: str | None = None,
    z_range: str | None = None,
    like_z_range: str | None = None,
    key: str | None = None,
    overwrite: bool = False,
    progress=None,
) -> SmoothSummary:
    """Blur ``input_path`` in-plane by ``sigma`` pixels, or by the sigma that makes its
    slices (``z_range``) as sharp as ``like``'s (``like_z_range``), into ``output``."""
    if (sigma is None) == (like is None):
        raise EmdaError("emda smooth needs exactly one of --sigma or --like")
    if sigma is not None and not 0 <= sigma <= sharpness.MAX_SIGMA:
        raise EmdaError(f"--sigma {sigma}: must be in [0, {sharpness.MAX_SIGMA:g}] pixels")
    check_output(output, overwrite)
    start = time.perf_counter()
    volume = open_volume(input_path, key)
    zs = range(*parse_z_range(z_range, volume.shape[0]))
    reference_level = None
    if like is not None:
        reference = open_volume(like)
        like_zs = range(*parse_z_range(like_z_range, reference.shape[0], "--like-z"))
        reference_level = sharpness.gradient_level(reference, like_zs)
        sigma = sharpness.matching_sigma(volume, zs, reference_level)
    before = sharpness.gradient_level(volume, zs)
    after = sharpness.gradient_level(volume, zs, sigma)
    attrs = {"emda_kind": "smoothed", "emda_smooth_sigma": sigma, "emda_smooth_input": input_path}
    writer = VolumeWriter(output, volume.shape, volume.dtype, volume.voxel_size, overwrite,
                          attrs=attrs)  # fmt: skip
    try:
        sharpness.smooth_volume(volume, sigma, writer, progress)
        writer.commit()
    except BaseException:  # no --resume here: an interrupted blur leaves nothing behind
        writer.abort(keep=False)
        raise
    return SmoothSummary(sigma, before, after, reference_level, time.perf_counter() - start)


@dataclass
class EnsembleSummary:
    members: int
    shape: tuple[int, int, int]
    seconds: float


def ensemble(
    inputs: list[str],
    output: str | None,
    mask: str | None = None,
    threshold: float = 0.5,
    prob_dtype: str = "uint8",
    overwrite: bool = False,
    progress=None,
) -> EnsembleSummary:
    """Write the mean probability of several predictions of one volume (``output``)
    and/or its mask at ``threshold``; an interrupted run leaves nothing behind."""
    from emda.ensemble import check_members, mean_probability

    check_prediction_outputs(output, mask, threshold, prob_dtype)
    targets = {option: path for option, path in (("--output", output), ("--mask", mask)) if path}
    start = time.perf_counter()
    volumes = [open_volume(path) for path in inputs]
    check_members(volumes)
    read = {Path(split_address(path)[0]).resolve() for path in inputs}
    for option, path in targets.items():
        if Path(split_address(path)[0]).resolve() in read:
            raise EmdaError(f"{option} {path}: is one of the inputs; write somewhere else")
        check_output(path, overwrite, option)
    shape, voxel = volumes[0].shape, volumes[0].voxel_size
    attrs = {"emda_ensemble_inputs": [str(p) for p in inputs]}
    writers: dict[str, VolumeWriter] = {}
    try:
        if output:
            writers["prob"] = VolumeWriter(output, shape, prob_dtype, voxel, overwrite,
                                           attrs={**attrs, "emda_kind": "probability"})  # fmt: skip
        if mask:
            writers["mask"] = VolumeWriter(mask, shape, "uint8", voxel, overwrite,
                                           attrs={**attrs, "emda_kind": "mask"})  # fmt: skip

        def write(z: slice, mean: np.ndarray) -> None:
            if "prob" in writers:
                writers["prob"].write(z, encode_prob(mean, prob_dtype))
            if "mask" in writers:
                writers["mask"].write(z, (mean >= threshold).astype(np.uint8))

        mean_probability(volumes, write, progress)
        for writer in writers.values():
            writer.commit()
    except BaseException:  # no --resume: averaging again is cheap, so nothing is kept
        for writer in writers.values():
            writer.abort(keep=False)
        raise
    return EnsembleSummary(len(volumes), shape, time.perf_counter() - start)


def _check_target_planes(choice: str, raw: Volume, z: list[int], patch_size: int) -> None:
    """``--target-planes ortho`` needs a 3D target; anisotropic voxels, or fewer slices
    than a patch has rows (its off-axis patches are then mirror-padded), only warn."""
    if choice == "xy":
        return
    if raw.shape[0] == 1:
        raise EmdaError(f"--target-planes {choice}: {raw.path} is a 2D image, it has only (y, x)")
    if len(z) < patch_size:
        log.warning(
            "--target-planes %s: %d target slices, fewer than the patch's %d rows; its (z, x) "
            "and (z, y) patches are mirror-padded",
            choice,
            len(z),
            patch_size,
        )
    if not is_isotropic(raw.voxel_size):
        log.warning(
            "--target-planes %s: %s has voxel size %s (not isotropic, or unknown); its (z, x) "
            "and (z, y) planes are stretched images",
            choice,
            raw.path,
            raw.voxel_size,
        )


def _training_dict(config: TrainConfig) -> dict:
    from dataclasses import asdict

    # a CPU run repeats bit for bit only with the same torch, thread count and vector
    # instructions (each sums in another order), so they are kept beside the settings
    computed = {
        "torch_version": str(torch.__version__),
        "cpu_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    # the convolutions' instructions are oneDNN's own choice: capping them is what makes
    # an AVX-512 CPU repeat an AVX2 one's run, so a cap is part of the record
    if isa := onednn_isa_cap():
        computed["onednn_max_cpu_isa"] = isa
    return {**asdict(config), "emda_version": __version__, **computed}


def onednn_isa_cap() -> str | None:
    """The instruction-set cap oneDNN reads from the environment (``ONEDNN_MAX_CPU_ISA``,
    or its old name ``DNNL_MAX_CPU_ISA``), upper-cased; None when uncapped."""
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    return isa.upper() if isa else None


def _write_config(run_dir: Path, command: str, resolved: dict | None) -> None:
    if resolved is None:
        return
    import tomli_w

    clean = {k: _plain(v) for k, v in resolved.items() if v is not None}
    (run_dir / CONFIG_NAME).write_text(
        f"# resolved settings of this run; rerun with: emda {command} --config {CONFIG_NAME}\n"
        + tomli_w.dumps({command: clean})
    )


def _plain(value):
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "value"):  # enums
        return value.value
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    return value


def _write_curve(run_dir: Path) -> None:
    records = read_log(run_dir)
    if records:
        training_curve(records, run_dir / CURVE_NAME)


@dataclass
class CleanSummary:
    sizes: CleaningSizes
    counts: CleaningCounts
    shape: tuple[int, int, int]
    seconds: float


def clean(
    prediction: str,
    mask: str,
    min_size: int | None = None,
    max_hole: int | None = None,
    sizes_from: str | None = None,
    sizes_z: str | None = None,
    threshold: float = 0.5,
    key: str | None = None,
    overwrite: bool = False,
    progress=None,
) -> CleanSummary:
    """Write ``prediction`` thresholded and cleaned (:mod:`emda.cleaning`) to ``mask``.
    Sizes given by hand win over those read from ``sizes_from`` labels; an interrupted
    run leaves nothing behind."""
    from emda.cleaning import CleaningSizes, clean_volume, sizes_from_labels

    check_threshold(threshold)
    if sizes_z is not None and sizes_from is None:
        raise EmdaError("--sizes-z: needs --sizes-from LABELS")
    if sizes_from is None and (min_size is None or max_hole is None):
        raise EmdaError(
            "emda clean needs --sizes-from LABELS (e.g. the source's training labels) "
            "or both --min-size and --max-hole"
        )
    by_hand = {k: v for k, v in (("min_size", min_size), ("max_hole", max_hole)) if v is not None}
    CleaningSizes(**{"min_size": 0, "max_hole": 0, **by_hand})  # fails early on a bad size
    volume = open_volume(prediction, key)
    if Path(split_address(mask)[0]).resolve() == Path(split_address(prediction)[0]).resolve():
        raise EmdaError(f"--mask {mask}: is the input; write somewhere else")
    check_output(mask, overwrite, "--mask")
    if sizes_from is None:
        sizes = CleaningSizes(**by_hand)
    else:
        labels = read_labels(sizes_from)
        z_range = parse_z_range(sizes_z, labels.shape[0], "--sizes-z")
        sizes = dataclasses.replace(sizes_from_labels(labels, z_range), **by_hand)
    start = time.perf_counter()
    attrs = {
        "emda_kind": "mask",
        "emda_clean": {**dataclasses.asdict(sizes), "threshold": threshold,
                       "sizes_from": sizes_from, "input": prediction},
    }  # fmt: skip
    writer = VolumeWriter(mask, volume.shape, "uint8", volume.voxel_size, overwrite, attrs=attrs)
    try:
        counts = clean_volume(volume, sizes, writer.write, threshold, progress)
        writer.commit()
    except BaseException:  # cleaning again is cheap, so nothing is kept
        writer.abort(keep=False)
        raise
    return CleanSummary(sizes, counts, volume.shape, time.perf_counter() - start)
