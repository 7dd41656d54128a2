"""PNG figures: the training curve of a run and prediction overlays."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def training_curve(records: list[dict], path: str | Path) -> None:
    """Every logged loss term against the iteration (smoothed), one line each; the
    method's diagnostics (``"metrics"``), if any, in a second panel below."""
    plt = _pyplot()
    skip = {"iteration", "lr", "seconds", "metrics"}
    names = [k for k in records[0] if k not in skip] if records else []
    if len(names) == 2:  # one term: "loss" would repeat it
        names = names[1:]
    metric_names = list(dict.fromkeys(k for r in records for k in r.get("metrics", {})))
    it = np.array([r["iteration"] for r in records])
    window = max(1, len(records) // 50)
    panels = 2 if metric_names else 1
    fig, axes = plt.subplots(panels, 1, figsize=(7, 4 * panels), dpi=100, sharex=True,
                             squeeze=False)  # fmt: skip
    losses = axes[0, 0]
    for name in names:
        values = np.array([r.get(name, np.nan) for r in records], dtype=float)
        _smoothed(losses, it, values, window, name, lw=1.5 if name == "loss" else 1)
    losses.set_ylabel(f"loss (moving mean of {window})")
    losses.set_yscale("log")
    for name in metric_names:
        values = np.array([r.get("metrics", {}).get(name, np.nan) for r in records], dtype=float)
        _smoothed(axes[1, 0], it, values, window, name, lw=1)
    if metric_names:
        axes[1, 0].set_ylabel(f"method metrics (moving mean of {window})")
    axes[-1, 0].set_xlabel("iteration")
    for ax in axes[:, 0]:
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _smoothed(ax, it: np.ndarray, values: np.ndarray, window: int, label: str, lw: float) -> None:
    smooth = np.convolve(values, np.ones(window) / window, mode="valid")
    ax.plot(it[window - 1 :], smooth, label=label, lw=lw)


def overlay(
    image: np.ndarray,
    truth: np.ndarray | None,
    predictions: dict[str, np.ndarray],
    path: str | Path,
    title: str = "",
) -> None:
    """Panels: the image, then each prediction outlined (ground truth in green)."""
    plt = _pyplot()
    panels = 1 + len(predictions)
    fig, axes = plt.subplots(1, panels, figsize=(4 * panels, 4.3), dpi=100, squeeze=False)
    lo, hi = np.percentile(image, [1, 99])
    for ax in axes[0]:
        ax.imshow(image, cmap="gray", vmin=lo, vmax=hi)
        ax.set_axis_off()
    axes[0][0].set_title("image" + (" + ground truth" if truth is not None else ""))
    if truth is not None:
        for ax in axes[0]:
            ax.contour(truth.astype(float), levels=[0.5], colors="lime", linewidths=1)
    for ax, (name, mask) in zip(axes[0][1:], predictions.items()):
        ax.contour(mask.astype(float), levels=[0.5], colors="magenta", linewidths=1)
        ax.set_title(name)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
