"""What does the pixel-size difference do to the EPFL -> VNC numbers? (diagnostic)

EPFL pixels are 5 nm, VNC pixels 4.6 nm: a VNC mitochondrion is 9 % larger in pixels than
the same object at the source's pixel size. For each finished run given, scores VNC
z 13-19 (threshold 0.5) twice: at the native pixel size, and after resampling each VNC
slice to the run's source pixel size (antialiased bilinear), predicting, and resampling
the probabilities back. Nothing is chosen from these numbers; emda does not resample by
default. Writes benchmarks/results/resolution_probe.json (earlier entries kept).

    python benchmarks/resolution_probe.py RUN_DIR [RUN_DIR ...]
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from emda.evaluation.metrics import Confusion
from emda.inference.sliding_window import SlidingWindowPredictor
from emda.io.volume import open_volume, read_labels
from emda.model.checkpoint import load_checkpoint

HERE = Path(__file__).resolve().parent


def resize(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    down = shape[0] < image.shape[0]
    out = F.interpolate(t, size=shape, mode="bilinear", align_corners=False, antialias=down)
    return out[0, 0].numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data"))
    args = parser.parse_args()
    raw = open_volume(Path(args.data) / "drosophila_vnc" / "raw.tif")
    labels = read_labels(Path(args.data) / "drosophila_vnc" / "labels.tif")
    out = HERE / "results" / "resolution_probe.json"
    results = json.loads(out.read_text()) if out.exists() else {}
    target_px = raw.voxel_size[2]
    for run in args.runs:
        ckpt = load_checkpoint(run)
        source_px = ckpt.voxel_size[2]
        scale = target_px / source_px
        predictor = SlidingWindowPredictor(ckpt.build_model(), torch.device("cpu"), 256, 0.25, 8)
        intensity = ckpt.normalization.fit(raw)
        native, resampled = Confusion(), Confusion()
        for z in range(13, 20):
            image, truth = intensity.apply(raw.read(z)), labels.read(z)
            native = native + Confusion.of(predictor.predict_slice(image) >= 0.5, truth)
            small = tuple(round(n * scale) for n in image.shape)
            prob = resize(predictor.predict_slice(resize(image, small)), image.shape)
            resampled = resampled + Confusion.of(prob >= 0.5, truth)
        results[str(run)] = {
            "source_pixel_nm": source_px,
            "target_pixel_nm": target_px,
            "vnc_z13_20_iou_native": native.iou,
            "vnc_z13_20_iou_resampled_to_source": resampled.iou,
        }
        print(json.dumps(results[str(run)]), flush=True)
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
