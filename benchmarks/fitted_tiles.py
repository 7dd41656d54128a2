"""Square tiles against fitted tiles on the (z, x) and (z, y) planes of a volume.

`emda predict --planes ortho` segments every (z, x) and (z, y) plane of the volume too.
On EPFL's test volume those planes are 165 rows high: until stop 26 each was reflected
out to the 256-pixel tile; now a side shorter than the tile gets a tile of its own
length rounded up to the network's multiple (176 rows, `emda.inference.sliding_window.fitted_tile`).
This predicts the same evenly spaced planes both ways with one model and reports
seconds per plane, IoU/precision/recall against the labels on those planes, and the
largest difference in probability. The (y, x) slices are not affected (768 x 1024 >=
256), so the projected ortho time keeps their share as measured here.

    python benchmarks/fitted_tiles.py benchmarks/work/cpu/KEY/run_target_bn --planes 48
"""

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from emda.inference.sliding_window import SlidingWindowPredictor, sliding_window_inference
from emda.io.volume import open_volume
from emda.model.checkpoint import load_checkpoint

HERE = Path(__file__).resolve().parent
EPFL_TEST = HERE.parent.parent / "shared/data/epfl_lucchi_pp/test"


def square_tiles(predictor: SlidingWindowPredictor, image: np.ndarray) -> np.ndarray:
    """The predictor as it was before fitted tiles: every tile tile_size square."""
    x = torch.from_numpy(np.ascontiguousarray(image, np.float32))[None, None]
    with torch.inference_mode():
        out = sliding_window_inference(x, predictor._forward, predictor.tile_size,
                                       predictor.overlap, predictor.batch_size)  # fmt: skip
    return out[0, 0].numpy()


def scores(prob: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    pred, true = prob >= 0.5, truth > 0
    tp = float(np.sum(pred & true))
    fp, fn = float(np.sum(pred & ~true)), float(np.sum(~pred & true))
    return {"iou": tp / (tp + fp + fn), "precision": tp / (tp + fp), "recall": tp / (tp + fn)}


def planes_of(volume: np.ndarray, n: int) -> list[tuple[str, int, np.ndarray]]:
    """``n`` evenly spaced (z, x) planes (fixed y) and ``n`` (z, y) planes (fixed x)."""
    _, ny, nx = volume.shape
    xz = [("xz", int(y), volume[:, y]) for y in np.linspace(0, ny - 1, n).astype(int)]
    yz = [("yz", int(x), volume[:, :, x]) for x in np.linspace(0, nx - 1, n).astype(int)]
    return xz + yz


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, help="a trained run (e.g. a model with target BN)")
    parser.add_argument("--raw", type=Path, default=EPFL_TEST / "raw.tif")
    parser.add_argument("--labels", type=Path, default=EPFL_TEST / "labels.tif")
    parser.add_argument("--planes", type=int, default=24, help="of each off-axis kind")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="default: results/cpu/fitted_tiles/KEY.json")
    args = parser.parse_args()
    args.out = args.out or HERE / "results/cpu/fitted_tiles" / f"{args.run.parent.name}.json"
    torch.set_num_threads(args.threads)
    ckpt = load_checkpoint(args.run)
    raw = open_volume(str(args.raw))
    image = ckpt.normalization.fit(raw).apply(raw.read())
    truth = open_volume(str(args.labels)).read()
    predictor = SlidingWindowPredictor(ckpt.build_model(), torch.device("cpu"))
    picked = planes_of(image, args.planes)
    label_planes = [t for _, _, t in planes_of(truth, args.planes)]
    predictor.predict_slice(picked[0][2])  # warm-ups, not timed
    square_tiles(predictor, picked[0][2])
    square, fitted, seconds = [], [], {}
    for kind in ("xz", "yz"):
        planes = [p for k, _, p in picked if k == kind]
        t0 = time.perf_counter()
        square += [square_tiles(predictor, p) for p in planes]
        t1 = time.perf_counter()
        fitted += [predictor.predict_slice(p) for p in planes]
        t2 = time.perf_counter()
        seconds[kind] = {
            "square": round((t1 - t0) / len(planes), 3),
            "fitted": round((t2 - t1) / len(planes), 3),
        }
    # the whole --planes ortho pass over the off-axis planes, at these rates
    counts = {"xz": raw.shape[1], "yz": raw.shape[2]}
    off_axis = {
        way: round(sum(counts[k] * seconds[k][way] for k in counts)) for way in ("square", "fitted")
    }
    truth_all = np.concatenate([t.ravel() for t in label_planes])
    result = {
        "run": str(args.run),
        "volume": str(args.raw),
        "volume_shape": list(raw.shape),
        "planes": [f"{kind}={i}" for kind, i, _ in picked],
        "tile_size": predictor.tile_size,
        "threads": args.threads,
        "torch": torch.__version__,
        "cpu": platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "seconds_per_plane": seconds,
        "seconds_all_off_axis_planes": off_axis,
        "speedup": round(off_axis["square"] / off_axis["fitted"], 2),
        "square": scores(np.concatenate([p.ravel() for p in square]), truth_all),
        "fitted": scores(np.concatenate([p.ravel() for p in fitted]), truth_all),
        "max_abs_difference": float(max(np.abs(a - b).max() for a, b in zip(square, fitted))),
        "mean_abs_difference": float(
            np.mean([np.abs(a - b).mean() for a, b in zip(square, fitted)])
        ),
        "rerun": "python benchmarks/fitted_tiles.py "
        + " ".join([str(args.run), "--planes", str(args.planes), "--threads", str(args.threads)]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
