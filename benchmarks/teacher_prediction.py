"""How fast the selftrain teacher predicts a target volume (`--opt pseudo_labels=volume`):
its patch-wise forward (`FrozenTeacher.probabilities`, no channels_last, `no_grad`)
tiled by `sliding_window_inference`, which is how the volume was predicted until stop
25, against `FrozenTeacher.predict_slices`, which now uses `emda predict`'s
`SlidingWindowPredictor`. Same slices, tiles (256, overlap 0.25, Gaussian), batch 8 and
views; reports seconds per slice of each and the largest difference between them.

    python benchmarks/teacher_prediction.py RUN [--slices 4] [--views 2] [--threads 1]
"""

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from emda.inference.sliding_window import sliding_window_inference
from emda.io.volume import open_volume
from emda.model.checkpoint import load_checkpoint
from emda_methods.selftrain import VOLUME_BATCH, VOLUME_TILE, FrozenTeacher

HERE = Path(__file__).resolve().parent
EPFL_TRAIN = HERE.parent.parent / "shared/data/epfl_lucchi_pp/train/raw.tif"


def patchwise(teacher: FrozenTeacher, image: np.ndarray, views: int) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(image, np.float32))[None, None]
    out = sliding_window_inference(
        x, lambda t: teacher.probabilities(t, list(range(views))), VOLUME_TILE,
        batch_size=VOLUME_BATCH,
    )  # fmt: skip
    return out[0, 0].numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, help="a teacher run (e.g. a Y-Net with target BN)")
    parser.add_argument("--volume", type=Path, default=EPFL_TRAIN)
    parser.add_argument("--slices", type=int, default=4)
    parser.add_argument("--views", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=HERE / "results/teacher_prediction.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ckpt = load_checkpoint(args.run)
    raw = open_volume(args.volume)
    intensity = ckpt.normalization.fit(raw)
    zs = list(range(args.slices))
    cpu = torch.device("cpu")
    old_teacher = FrozenTeacher(ckpt, batch_stats=False)
    new_teacher = FrozenTeacher(ckpt, batch_stats=False)
    patchwise(old_teacher, intensity.apply(raw.read(0)), 1)  # warm-ups, not timed
    new_teacher.predict_slices(raw, intensity, [0], 1, cpu)
    t0 = time.perf_counter()
    before = np.stack(
        [patchwise(old_teacher, intensity.apply(raw.read(z)), args.views) for z in zs]
    )
    t1 = time.perf_counter()
    now = new_teacher.predict_slices(raw, intensity, zs, args.views, cpu)
    t2 = time.perf_counter()
    result = {
        "run": str(args.run),
        "volume": str(args.volume),
        "slice_shape": list(raw.shape[1:]),
        "slices": len(zs),
        "views": args.views,
        "threads": args.threads,
        "torch": torch.__version__,
        "cpu": platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "seconds_per_slice_patchwise_forward": round((t1 - t0) / len(zs), 2),
        "seconds_per_slice_predict_slices": round((t2 - t1) / len(zs), 2),
        "speedup": round((t1 - t0) / (t2 - t1), 2),
        "max_abs_difference": float(np.abs(before - now.read()[zs]).max()),
    }
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
