"""`emda instances`: individual mitochondria from a prediction, as a label image.

The prediction is thresholded and its 3D connected components are labelled block by
block (:mod:`emda.postprocessing.labeling`), so volumes of any size fit in memory.
Objects connect across slices when the z-step is at most ``CONNECT_Z_MAX_NM``: a
mitochondrion is at least ~200 nm across, so at such a step it spans two or more
sections that overlap; at a coarser step (thick serial sections), neighbouring sections
of one object may not overlap and unrelated objects would be joined, so each slice is
labelled on its own. Objects smaller than ``min_size`` (nm^3) are removed; without one,
a tenth of the median source mitochondrion that trained the model
(:mod:`emda.analysis.source_objects`), when the prediction or ``run`` records it.

Until the output is complete, the work is kept beside it (:func:`state_dir`): the first
pass's labelled blocks, the output's finished blocks and how far splitting got. An
interrupted run (a kill, a full disk) is continued with ``resume``.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from emda.errors import EmdaError
from emda.evaluation.evaluate import binarize, check_threshold, prediction_kind
from emda.io.volume import Volume, VoxelSize, open_volume, split_address
from emda.io.writer import VolumeWriter
from emda.postprocessing.labeling import Block, label_blocks, plan_blocks
from emda.postprocessing.split import split_objects
from emda.safety.fingerprint import content_fingerprint
from emda.safety.locks import output_lock
from emda.safety.paths import check_output, refuse_writing_inputs, write_atomically
from emda.safety.validate import check_complete

CONNECT_Z_MAX_NM = 100.0
BLOCK_DEPTH = 32  # slices per block
BLOCK_SIZE = 1024  # y and x of a block: one block of uint64 labels is 256 MiB at most
STATE_SUFFIX = ".emda-instances"


@dataclass(frozen=True)
class InstanceSummary:
    count: int
    removed: int  # objects under the minimum size
    min_voxels: int
    connect_z: bool
    shape: tuple[int, int, int]
    dtype: str
    seconds: float
    split: int = 0  # objects added by splitting touching ones
    min_size_from: str = ""  # where the minimum size came from, for the user


def connects_across_z(voxel_size: VoxelSize | None) -> bool:
    """The default: connect across slices unless the z-step is coarser than the limit."""
    return voxel_size is None or voxel_size[0] <= CONNECT_Z_MAX_NM


def min_voxels(min_size: float | None, voxel_size: VoxelSize | None, path: str) -> int:
    """A minimum object size in nm^3 as a voxel count for this volume."""
    if min_size is None:
        return 0
    if not math.isfinite(min_size) or min_size <= 0:
        raise EmdaError(f"--min-size {min_size}: must be a positive volume in nm^3")
    if voxel_size is None:
        raise EmdaError(f"--min-size is in nm^3, and {path} has no voxel size: give "
                        "--voxel-size Z,Y,X")  # fmt: skip
    return math.ceil(min_size / float(np.prod(voxel_size)))


def choose_min_size(volume: Volume, min_size: float | None, run: str | None,
                    all_objects: bool) -> tuple[float | None, str]:  # fmt: skip
    """The minimum object size (nm^3) and where it came from."""
    from emda.analysis.source_objects import MIN_SIZE_FRACTION, default_min_size, recorded

    if min_size is not None or all_objects:
        if min_size is not None and all_objects:
            raise EmdaError("--min-size and --all-objects contradict each other: choose one")
        return min_size, "--min-size" if min_size is not None else "--all-objects"
    if run is not None:
        from emda.model.checkpoint import load_checkpoint

        record, where = recorded(load_checkpoint(run).training), str(run)
    else:
        record, where = volume.attributes().get("emda_source_objects"), "the prediction"
    size = default_min_size(record)
    if size is None or volume.voxel_size is None:
        return None, "none: no record of the source's objects (give --min-size or --run)"
    median = float(record["median_nm3"])  # type: ignore[index]
    return size, f"{MIN_SIZE_FRACTION:.0%} of the median source object ({median:.3g} nm^3, {where})"


def check_prediction(volume: Volume) -> str:
    """A probability map or mask, not a label image: the kind ``binarize`` needs."""
    kind = prediction_kind(volume)
    if kind == "labels":
        raise EmdaError(f"{volume.path}: is a label image, not a probability map or mask")
    return kind


def state_dir(output: str) -> Path:
    """Where a run keeps its work until the output is complete: beside the output."""
    store, key = split_address(output)
    final = store / key if key else store
    return final.with_name(final.name + STATE_SUFFIX)


def label_instances(
    prediction: str,
    output: str,
    *,
    threshold: float = 0.5,
    min_size: float | None = None,
    connect_z: bool | None = None,
    split: bool = False,
    key: str | None = None,
    voxel_size: VoxelSize | None = None,
    overwrite: bool = False,
    resume: bool = False,
    ngff: str | None = None,
    run: str | None = None,
    all_objects: bool = False,
    progress=None,
) -> InstanceSummary:
    """Write the individual objects of ``prediction`` (probabilities at ``threshold``, or
    a mask) to ``output`` as a label image (uint32, uint64 when needed): 0 is
    background, objects are numbered 1..N. ``min_size`` in nm^3; ``connect_z`` None
    chooses from the voxel size (module docstring); ``split`` separates touching objects
    (:mod:`emda.postprocessing.split`). An interrupted run keeps its work beside the
    output (:func:`state_dir`); ``resume`` continues it when the input and settings are
    the same. ``ngff``: the NGFF version of an .ome.zarr output. Without ``min_size``,
    the minimum size comes from the source record of ``run`` or of the prediction, unless
    ``all_objects``."""
    check_threshold(threshold)
    if resume and overwrite:
        raise EmdaError("--resume and --overwrite contradict each other: choose one")
    volume = open_volume(prediction, key, voxel_size)
    check_complete(volume)
    refuse_writing_inputs({"--output": output}, [volume.location])
    check_output(output, overwrite)
    kind = check_prediction(volume)
    min_size, min_size_from = choose_min_size(volume, min_size, run, all_objects)
    smallest = min_voxels(min_size, volume.voxel_size, str(prediction))
    connect = connects_across_z(volume.voxel_size) if connect_z is None else connect_z
    start = time.perf_counter()
    # what makes two runs produce the same labels (resume checks it)
    job = {"input": str(volume.location), "shape": list(volume.shape),
           "content": content_fingerprint(volume), "threshold": threshold,
           "min_voxels": smallest, "connect_z": connect, "split": split,
           "blocks": [BLOCK_DEPTH, BLOCK_SIZE]}  # fmt: skip

    def read_mask(block: Block) -> np.ndarray:
        return binarize(volume.read(block.z, block.y, block.x), kind, threshold, volume.path)

    with output_lock(output):
        state = _open_state(output, job, overwrite, resume)
        try:
            components, read_labels, _ = label_blocks(
                read_mask, volume.shape, connect, smallest, BLOCK_DEPTH, BLOCK_SIZE,
                progress=progress, state=state,
            )  # fmt: skip
            count = _write(output, volume, components, read_labels, job, overwrite, resume,
                           split, state, progress, ngff)  # fmt: skip
        except BaseException:
            if not any((state / "blocks").glob("*.npz")):  # nothing worth resuming
                shutil.rmtree(state, ignore_errors=True)
            raise
        shutil.rmtree(state, ignore_errors=True)
    return InstanceSummary(
        count, components.removed, smallest, connect, volume.shape,
        str(components.lookup.dtype), time.perf_counter() - start, count - components.count,
        min_size_from,
    )  # fmt: skip


def _open_state(output: str, job: dict, overwrite: bool, resume: bool) -> Path:
    """The work directory of this run: new, or an interrupted run's with the same job."""
    state = state_dir(output)
    saved = state / "job.json"
    if state.exists():
        if overwrite:
            shutil.rmtree(state)
        elif not resume:
            raise EmdaError(f"{output}: an interrupted run left {state}; pass --resume to "
                            "continue it or --overwrite to start over")  # fmt: skip
        else:
            try:
                before = json.loads(saved.read_text())
            except (OSError, ValueError):
                before = {"unreadable": True}
            if differs := [k for k in job if before.get(k) != json.loads(json.dumps(job[k]))]:
                what = {"content": "the input's content"}.get(differs[0], differs[0])
                what = "its record is unreadable" if "unreadable" in before else what
                raise EmdaError(
                    f"{output}: the interrupted run in {state} was made with other settings "
                    f"or inputs ({what}); pass --overwrite to start over"
                )
            return state
    state.mkdir(parents=True)
    write_atomically(saved, lambda tmp: Path(tmp).write_text(json.dumps(job)))
    return state


def _write(output, volume, components, read_labels, job, overwrite, resume, split, state,
           progress, ngff=None) -> int:  # fmt: skip
    """Second pass: final labels block by block, then the split; returns the count."""
    blocks = plan_blocks(volume.shape, BLOCK_DEPTH, BLOCK_SIZE)
    attrs = {"emda_kind": "labels", "emda_instances": {
        "input": job["input"], "threshold": job["threshold"], "min_voxels": job["min_voxels"],
        "connect_z": job["connect_z"], "count": components.count}}  # fmt: skip
    writer = VolumeWriter(output, volume.shape, components.lookup.dtype, volume.voxel_size,
                          overwrite, attrs=attrs, job=job, resume=resume, ngff=ngff)  # fmt: skip
    try:
        for done, block in enumerate(blocks, 1):
            if str(done) not in writer.done:
                writer.array[block.index] = read_labels(block)
                writer.mark_done(done)
            if progress:
                progress(len(blocks) + done, 2 * len(blocks))
        count = components.count
        if split:
            count = _split(writer, components, read_labels, state, volume, job["connect_z"])
            attrs["emda_instances"]["count"] = count
            writer.attrs = attrs
            writer.array.attrs.update({"emda_instances": attrs["emda_instances"]})
        writer.commit()
    except BaseException:
        writer.abort()  # finished blocks stay for --resume
        raise
    return count


def _split(writer, components, read_labels, state: Path, volume, connect: bool) -> int:
    """Split touching objects, continuing after the last one an interrupted run split.
    Each object's voxels come from the first pass's labels, so redoing one is harmless."""
    progress_file = state / "split.json"
    after, count = 0, components.count
    if progress_file.exists():
        saved = json.loads(progress_file.read_text())
        after, count = int(saved["after"]), int(saved["count"])

    def record(label: int, count: int) -> None:
        text = json.dumps({"after": label, "count": count})
        write_atomically(progress_file, lambda tmp: Path(tmp).write_text(text))

    return split_objects(
        lambda label, box: read_labels(Block(*box)) == label,
        range(after + 1, components.count + 1), components.box,
        partial(_store_parts, writer.array), count, volume.voxel_size, connect, record,
    )  # fmt: skip


def _store_parts(array, box, mask: np.ndarray, parts: np.ndarray) -> None:
    current = np.asarray(array[box])
    array[box] = np.where(mask, parts, current).astype(current.dtype)
