"""``recalibrate``: a model's batch-norm statistics re-estimated on a target, no training.

The step ``emda adapt`` ends with when it has a target (:func:`recalibrate_on_target`),
and a command of its own for any finished run.
"""

from __future__ import annotations

from pathlib import Path

import torch

from emda import __version__
from emda.data.resample import in_plane, pixel_zoom
from emda.data.sampling import Augmentation, PatchSampler
from emda.device import as_device
from emda.errors import EmdaError
from emda.model.checkpoint import load_checkpoint, save_checkpoint
from emda.training.batchnorm import DEFAULT_BATCHES, recalibrate_batchnorm
from emda.training.config import TrainConfig
from emda.training.inputs import VolumeSpec, load_training_volume
from emda.training.run_dir import checkpoint_file, prepare_run_dir, writes_run
from emda.training.state import CHECKPOINT_NAME


@writes_run(lambda a: [checkpoint_file(a["run"]), a["target"].raw])
def recalibrate(
    run: str | Path,
    target: VolumeSpec,
    out: str | Path,
    *,
    batches: int = DEFAULT_BATCHES,
    resample: bool = True,
    device: str | torch.device = "auto",
    overwrite: bool = False,
) -> Path:
    """A new run directory ``out`` whose model is ``run``'s with batch-norm statistics
    estimated on ``target`` (AdaBN): adaptation without training or labels.

    The same step ``adapt`` ends with (same patch size, batch size and seed as the base
    run's training), usable on any finished run. With ``resample``, target patches are
    resampled to the model's pixel size (:mod:`emda.data.resample`).
    """
    base, run_dir, device = run, Path(out), as_device(device)
    if batches <= 0:
        raise EmdaError(f"--batches {batches}: must be positive")
    ckpt = load_checkpoint(base)
    raw, _, zs = load_training_volume(target, "target")
    prepare_run_dir(run_dir, overwrite)
    training = ckpt.training or {}
    config = TrainConfig(
        patch_size=int(training.get("patch_size", 128)),
        batch_size=int(training.get("batch_size", 8)),
        seed=int(training.get("seed", 0)),
    )
    intensity = ckpt.normalization.fit(raw)
    model = ckpt.build_model()
    pixel = ckpt.pixel_size
    zoom = pixel_zoom(in_plane(raw.voxel_size), pixel) if resample else 1.0
    ckpt.training = {
        "command": "recalibrate",
        "base": str(base),
        "base_training": training,
        "target": target.raw,
        "target_z": [zs[0], zs[-1] + 1],
        "batches": batches,
        "emda_version": __version__,
        "target_bn": True,
        "pixel_size": pixel if resample else None,
        "target_zoom": zoom,
    }
    recalibrate_on_target(model, raw, intensity, zs, config, device, run_dir, ckpt, batches, zoom)
    return run_dir


def recalibrate_on_target(
    model, raw, intensity, z_indices, config, device, run_dir, template,
    batches=DEFAULT_BATCHES, zoom=1.0,
) -> None:  # fmt: skip
    """Target batch-norm statistics, then rewrite the final checkpoint with them."""
    # the target as inference sees it: dihedral copies only, no intensity changes
    plain = PatchSampler(raw, intensity, config.patch_size, None, z_indices, Augmentation(),
                         zoom=zoom)  # fmt: skip
    recalibrate_batchnorm(model, plain, device, batches, config.batch_size, config.seed)
    template.state_dict = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_checkpoint(template, run_dir / CHECKPOINT_NAME)
