"""What ``emda measure`` writes: the objects as CSV, a per-volume summary, a histogram."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from emda.safety.paths import write_atomically

NM3_PER_UM3 = 1e9


def objects_csv(rows: dict[str, np.ndarray], intensity: np.ndarray | None) -> str:
    """One line per object; column names carry their units (docs: emda.analysis.measure)."""
    columns = dict(rows)
    if intensity is not None:
        columns["mean_intensity"] = intensity
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(columns)
    for values in zip(*columns.values()):
        writer.writerow([_cell(v) for v in values])
    return buf.getvalue()


def _cell(value) -> str:
    if isinstance(value, np.bool_ | bool):
        return str(bool(value)).lower()
    if isinstance(value, np.integer | int):
        return str(int(value))
    return f"{float(value):.6g}"


def summary(rows: dict[str, np.ndarray], shape, voxel_size) -> dict[str, float]:
    """Count, density per um^3 of the imaged volume, and the volume distribution (um^3)."""
    volumes = rows["volume_nm3"] / NM3_PER_UM3
    imaged = float(np.prod(shape) * np.prod(voxel_size or (1.0, 1.0, 1.0))) / NM3_PER_UM3
    quartiles = np.percentile(volumes, [25, 50, 75]) if len(volumes) else [np.nan] * 3
    return {
        "objects": len(volumes),
        "touching the border": int(np.count_nonzero(rows["touches_border"])),
        "imaged volume (um^3)": imaged,
        "density (objects per um^3)": len(volumes) / imaged,
        "volume fraction": float(volumes.sum() / imaged),
        "object volume, 25th percentile (um^3)": float(quartiles[0]),
        "object volume, median (um^3)": float(quartiles[1]),
        "object volume, 75th percentile (um^3)": float(quartiles[2]),
    }


def size_histogram(rows: dict[str, np.ndarray], path: str | Path, title: str) -> None:
    """Object volumes on log-spaced bins (um^3)."""
    from emda.evaluation.plots import _pyplot

    plt = _pyplot()
    volumes = rows["volume_nm3"] / NM3_PER_UM3
    fig, ax = plt.subplots(figsize=(6, 4))
    if len(volumes):
        low, high = volumes.min(), volumes.max()
        bins = np.geomspace(low, high * 1.0001, 30) if high > low else 10
        ax.hist(volumes, bins=bins, color="tab:orange")
        ax.set_xscale("log" if high > low else "linear")
    ax.set_xlabel("object volume (um^3)")
    ax.set_ylabel("objects")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)
