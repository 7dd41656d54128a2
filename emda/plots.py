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
    """Every logged loss term against the iteration (smoothed), one line each."""
    plt = _pyplot()
    skip = {"iteration", "lr", "seconds"}
    names = [k for k in records[0] if k not in skip] if records else []
    if len(names) == 2:  # one term: "loss" would repeat it
        names = names[1:]
    it = np.array([r["iteration"] for r in records])
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    window = max(1, len(records) // 50)
    for name in names:
        values = np.array([r.get(name, np.nan) for r in records], dtype=float)
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        ax.plot(it[window - 1 :], smooth, label=name, lw=1.5 if name == "loss" else 1)
    ax.set_xlabel("iteration")
    ax.set_ylabel(f"loss (moving mean of {window})")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if names:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


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
