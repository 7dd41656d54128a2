"""The figure of docs/instances.md: one slice of a scored prediction, as objects.

    python benchmarks/instance_figure.py PROB RAW LABELS --z 16 [--min-size 5e6]

Labels the prediction (``emda instances --split``, and the truth's connected
components with ``emda instances``), then draws the raw slice, the true objects and the
predicted objects side by side, each object in its own colour. Writes
``benchmarks/results/instances_slice.png`` and prints the commands it ran.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def instances(source: str, out: Path, *extra: str) -> None:
    cmd = ["emda", "instances", source, "-o", str(out), "--quiet", *extra]
    print("$", shlex.join(cmd))
    subprocess.run([sys.executable, "-m", *cmd], check=True)


def coloured(labels: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(0)
    colours = rng.uniform(0.2, 1.0, (int(labels.max()) + 1, 3))
    colours[0] = 0
    return colours[labels]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("prob")
    parser.add_argument("raw")
    parser.add_argument("labels")
    parser.add_argument("--z", type=int, required=True)
    parser.add_argument("--min-size", default="5e6")
    args = parser.parse_args()
    from emda.evaluation.plots import _pyplot
    from emda.io.volume import open_volume

    with tempfile.TemporaryDirectory() as tmp:
        pred, true = Path(tmp) / "pred.zarr", Path(tmp) / "true.zarr"
        instances(args.prob, pred, "--split", "--min-size", args.min_size)
        instances(args.labels, true)
        panels = {
            "image": open_volume(args.raw).read(args.z),
            "true objects (connected components)": coloured(open_volume(true).read(args.z)),
            f"predicted objects (--split, --min-size {args.min_size} nm^3)": coloured(
                open_volume(pred).read(args.z)
            ),
        }
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.4))
    for ax, (title, image) in zip(axes, panels.items()):
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None, interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    fig.suptitle(f"{Path(args.prob).name}, z = {args.z}", fontsize=10)
    fig.tight_layout()
    out = HERE / "results" / "instances_slice.png"
    fig.savefig(out, dpi=80)
    print("wrote", out)


if __name__ == "__main__":
    main()
