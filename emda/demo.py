"""``emda demo``: the main job on the bundled crops, end to end, in a few minutes on a CPU.

EPFL hippocampus (FIB-SEM, labelled) is the source, the Drosophila VNC (ssTEM)
crop the target: adapt -> predict -> evaluate -> overlay figure.
"""

from __future__ import annotations

from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from emda import api
from emda.errors import EmdaError
from emda.evaluation.plots import overlay
from emda.io.volume import open_volume
from emda.training.adapt import VolumeSpec, resolve_method
from emda.training.config import TrainConfig

CROPS = ("epfl_train", "vnc")
DEMO_METHODS = ("ft", "ynet")
DEMO_BATCH = 4  # with the default iterations, both methods train in < 3 min on 2 CPU cores


def default_data_dir() -> Path:
    """The crops installed with the package (see demo_data/README.md for their licences)."""
    return Path(__file__).resolve().parent / "demo_data"


def run_demo(
    out: Path,
    iterations: int,
    data: Path | None,
    device: torch.device,
    show_progress: bool = True,
    figure_dir: Path | None = None,
) -> dict[str, dict]:
    data = Path(data) if data else default_data_dir()
    for crop in CROPS:
        for kind in ("raw", "labels"):
            if not (data / crop / f"{kind}.tif").is_file():
                raise EmdaError(
                    f"--data {data}: missing {crop}/{kind}.tif (the bundled crops "
                    "live in emda/demo_data of the emda package)"
                )
    console = Console(stderr=True)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    source = VolumeSpec(str(data / "epfl_train/raw.tif"), str(data / "epfl_train/labels.tif"))
    target_raw, target_labels = str(data / "vnc/raw.tif"), str(data / "vnc/labels.tif")
    config = TrainConfig(iterations=iterations, batch_size=DEMO_BATCH, patch_size=128)
    results, masks = {}, {}
    for name in DEMO_METHODS:
        console.rule(f"[bold]{name}: adapt EPFL -> VNC ({iterations} iterations)")
        run_dir = out / f"run_{name}"
        method = resolve_method(name, [])
        summary = api.adapt(
            source,
            # ft stays the source-only baseline; the others adapt (and end with target BN)
            VolumeSpec(target_raw) if method.uses_target else None,
            run_dir,
            method=method,
            config=config,
            device=device,
            overwrite=True,
            show_progress=show_progress,
        )
        pred = out / f"vnc_{name}_prob.tif"
        api.predict(run_dir, target_raw, str(pred), device=device, overwrite=True)
        (ev,) = api.evaluate([str(pred)], target_labels)
        results[name] = {**ev.total.scores(), "train_seconds": summary.seconds}
        masks[name] = open_volume(pred).read() >= 128
    raw = open_volume(target_raw).read()
    truth = open_volume(target_labels).read()
    z = raw.shape[0] // 2
    figure = (figure_dir or out) / "demo_overlay.png"
    overlay(
        raw[z],
        truth[z],
        {f"{k} (IoU {results[k]['iou']:.2f})": m[z] for k, m in masks.items()},
        figure,
        title=f"Drosophila VNC crop, slice {z}: ground truth green, prediction magenta",
    )
    table = Table(title="EPFL hippocampus -> Drosophila VNC (bundled crops)")
    for col in ("method", "IoU", "Dice", "precision", "recall", "train s"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for name, r in results.items():
        table.add_row(
            name,
            *(f"{r[k]:.3f}" for k in ("iou", "dice", "precision", "recall")),
            f"{r['train_seconds']:.0f}",
        )
    Console().print(table)
    console.print(f"overlay: {figure}   runs and predictions: {out}")
    return results
