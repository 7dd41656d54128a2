"""Is EPFL -> VNC's low IoU a threshold problem? (diagnostic, nothing is chosen from it)

Every EPFL -> VNC run of the harness has predicted the whole VNC stack, so the target
*training* slices (z 0-12, whose labels no method sees) are there too. For each run,
with and without target BN, this reports:

- the foreground share the network predicts on z 0-12 at threshold 0.5, next to the
  source labels' share (what a label-free method could know) and z 0-12's true share
  (from the labels, for the diagnosis only);
- the test IoU (z 13-19) at 0.5 and at the *prior-matched* threshold: the quantile of
  the z 0-12 probabilities that makes the predicted share equal the source labels'
  share. That rule has no free parameter and uses no target label; if it lifted the
  IoU, under-segmentation would be a calibration problem that thresholding could fix.

Writes benchmarks/results/<profile>/prior_probe.json.

    python benchmarks/prior_probe.py [--profile cpu]
"""

import argparse
import json
from pathlib import Path

import numpy as np
import tifffile

from emda.evaluation.metrics import Confusion

HERE = Path(__file__).resolve().parent


def share(mask: np.ndarray) -> float:
    return round(float(mask.mean()), 4)


def iou(prediction: np.ndarray, truth: np.ndarray) -> float:
    return round(Confusion.of(prediction, truth).iou, 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", default="cpu")
    args = parser.parse_args()
    results = HERE / "results" / args.profile
    work = HERE / "work" / args.profile
    source_share: dict[str, float] = {}
    rows = []
    for path in sorted((results / "runs").glob("*.json")):
        run = json.loads(path.read_text())
        config = run["config"]
        direction = config["direction"]
        if direction["name"] != "epfl2vnc" or config["semi_fraction"]:
            continue
        labels = direction["source"]["labels"]
        if labels not in source_share:
            source_share[labels] = share(tifffile.imread(labels) > 0)
        truth = tifffile.imread(direction["target_test"]["labels"]) > 0
        for variant in ("run", "run_target_bn"):
            probabilities = work / run["key"] / f"{variant}_prob.tif"
            if not probabilities.exists():
                continue
            p = tifffile.imread(probabilities)
            scale = 255.0 if p.dtype == np.uint8 else 1.0
            train, test = p[0:13], p[13:20]
            tau = float(np.quantile(train, 1 - source_share[labels])) / scale
            rows.append(
                {
                    "method": config["method"],
                    "seed": config["seed"],
                    "target_bn": variant == "run_target_bn",
                    "source_label_share": source_share[labels],
                    "predicted_share_z0_12": share(train > 0.5 * scale),
                    "true_share_z0_12": share(truth[0:13]),
                    "prior_matched_threshold": round(tau, 4),
                    "test_iou_at_0.5": iou(test > 0.5 * scale, truth[13:20]),
                    "test_iou_prior_matched": iou(test > tau * scale, truth[13:20]),
                }
            )
            print(rows[-1], flush=True)
    out = results / "prior_probe.json"
    out.write_text(json.dumps(rows, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
