"""Instance metrics of the paper-table harness's scored predictions.

    python benchmarks/instance_metrics.py [--profile cpu]

For every prediction the harness kept in ``benchmarks/work/<profile>/<key>/`` (a
``*_prob.tif`` beside its ``*_scores.json``), run ``emda evaluate --instances`` on the
same test slices and threshold, and record object F1 / AP / PQ beside the pixel IoU in
``benchmarks/results/instances.json`` (rows keyed by work key and prediction; a rerun
replaces them). Predicted objects: the 3D connected components of the prediction at 0.5
(no minimum size, no splitting); true objects: the connected components of the label
mask, as `emda evaluate` states in each row.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "instances.json"


def trained_with(log: Path) -> str:
    """The training command of a work directory, as its log recorded it."""
    for line in log.read_text().splitlines() if log.exists() else []:
        if line.startswith("$ emda adapt") or line.startswith("$ emda finetune"):
            return line[2:]
    return "unknown"


def evaluate(prob: Path, scored: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "e.json"
        start, stop = scored["z_range"]
        cmd = ["emda", "evaluate", str(prob), "--labels", scored["truth"], "--z-range",
               f"{start}:{stop}", "--threshold", str(scored["threshold"]), "--instances",
               "--json", str(out)]  # fmt: skip
        subprocess.run([sys.executable, "-m", *cmd], check=True, capture_output=True)
        (row,) = json.loads(out.read_text())
    return {"command": shlex.join(cmd), **row}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="cpu")
    args = parser.parse_args()
    rows = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for prob in sorted((HERE / "work" / args.profile).glob("*/*_prob.tif")):
        scores = prob.with_name(prob.name.replace("_prob.tif", "_scores.json"))
        if not scores.exists():
            continue
        (scored,) = json.loads(scores.read_text())
        key = f"{args.profile}/{prob.parent.name}/{prob.name}"
        row = evaluate(prob, scored)
        row["trained_with"] = trained_with(prob.parent / "log.txt")
        rows[key] = row
        found = row["instances"]
        print(f"{key}: IoU {row['iou']:.3f}, objects F1@0.5 {found['f1_50']:.3f}, "
              f"AP-75 {found['ap75']:.3f}, PQ {found['pq']:.3f}")  # fmt: skip
    RESULTS.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
