"""Does averaging the three orthogonal plane stacks help on isotropic EPFL FIB-SEM, and
for which models? (diagnostic on test labels: nothing is chosen from it)

For each run, a crop of the EPFL test volume (all 165 slices, y 256-511, x 256-767) is
normalised as `emda predict` does (the run's percentiles of the whole volume) and
segmented slice by slice in each of its three plane stacks, (y, x), (z, x) and (z, y),
with the CPU profile's window (256^2 tiles, overlap 0.25, gaussian blending). Reports
the IoU at 0.5 of each stack and of their mean (what `emda predict --planes ortho`
computes block-wise), with each one's precision, recall and foreground share.
`planes_validation.sh` measures the same on held-out source slices, which is where the
choice for the in-domain model comes from.

    python benchmarks/planes_probe.py RUN... [--out benchmarks/results/cpu/planes_probe.json]
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from emda.evaluation.metrics import Confusion
from emda.inference.sliding_window import SlidingWindowPredictor
from emda.io.volume import open_volume
from emda.model.checkpoint import load_checkpoint

HERE = Path(__file__).resolve().parent
TEST = HERE.parent.parent / "shared/data/epfl_lucchi_pp/test"
CROP = (slice(None), slice(256, 512), slice(256, 768))


def planes(predictor: SlidingWindowPredictor, volume: np.ndarray) -> dict[str, np.ndarray]:
    """Probabilities of each plane stack, back in (z, y, x) order."""
    nz, ny, nx = volume.shape
    return {
        "xy": np.stack([predictor.predict_slice(volume[z]) for z in range(nz)]),
        "xz": np.stack([predictor.predict_slice(volume[:, y]) for y in range(ny)], axis=1),
        "yz": np.stack([predictor.predict_slice(volume[:, :, x]) for x in range(nx)], axis=2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=HERE / "results/cpu/planes_probe.json")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    raw = open_volume(TEST / "raw.tif")
    truth = open_volume(TEST / "labels.tif").read()[CROP] > 0
    results = {}
    for run in args.runs:
        ckpt = load_checkpoint(run)
        image = ckpt.normalization.fit(raw).apply(raw.read()[CROP]).astype(np.float32)
        predictor = SlidingWindowPredictor(ckpt.build_model(), torch.device("cpu"), 256, 0.25, 8)
        t0 = time.perf_counter()
        stacks = planes(predictor, image)
        stacks["ortho"] = (stacks["xy"] + stacks["xz"] + stacks["yz"]) / 3
        row = {name: round(Confusion.of(p >= 0.5, truth).iou, 4) for name, p in stacks.items()}
        # which plane calls more or less foreground than the labels hold
        row["foreground"] = {name: round(float((p >= 0.5).mean()), 4) for name, p in stacks.items()}
        row["foreground"]["labels"] = round(float(truth.mean()), 4)
        for name, p in stacks.items():
            s = Confusion.of(p >= 0.5, truth).scores()
            row[f"{name}_precision_recall"] = [round(s["precision"], 4), round(s["recall"], 4)]
        row["seconds"] = round(time.perf_counter() - t0, 1)
        results[str(run)] = row
        print(run, row, flush=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
