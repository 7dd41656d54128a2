"""Instance metrics of the paper-table harness's scored predictions.

    python benchmarks/instance_metrics.py [--profile cpu]

For every prediction the harness kept in ``benchmarks/work/<profile>/<key>/`` (a
``*_prob.tif`` beside its ``*_scores.json``), run ``emda evaluate --instances`` on the
same test slices and threshold, and record object F1 / AP / PQ beside the pixel IoU in
``benchmarks/results/instances.json`` (rows keyed by work key and prediction; a rerun
replaces them). Predicted objects: the 3D connected components of the prediction at 0.5,
no splitting, scored twice: as they are, and with ``emda instances``' default minimum
size (a tenth of the median volume of the source labels' objects on the slices trained
on, :mod:`emda.analysis.source_objects`; label-free for the target). True objects: the
connected components of the label mask, as `emda evaluate` states in each row.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from emda.analysis.source_objects import MIN_SIZE_FRACTION

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "instances.json"


def trained_with(log: Path) -> str:
    """The training command of a work directory, as its log recorded it."""
    for line in log.read_text().splitlines() if log.exists() else []:
        if line.startswith("$ emda adapt") or line.startswith("$ emda finetune"):
            return line[2:]
    return "unknown"


def source_min_size(command: str) -> float | None:
    """The minimum size ``emda instances`` takes from the source of a training command."""
    args = shlex.split(command)
    if "--source-labels" not in args:
        return None
    from emda.analysis.source_objects import default_min_size, source_objects
    from emda.evaluation.evaluate import parse_z_range
    from emda.io.volume import open_volume, read_labels

    raw = open_volume(args[args.index("--source") + 1])
    labels = read_labels(args[args.index("--source-labels") + 1])
    z = args[args.index("--source-z") + 1] if "--source-z" in args else None
    start, stop = parse_z_range(z, raw.shape[0])
    return default_min_size(source_objects([(raw, labels, list(range(start, stop)))]))


def evaluate(prob: Path, scored: dict, *extra: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "e.json"
        start, stop = scored["z_range"]
        cmd = ["emda", "evaluate", str(prob), "--labels", scored["truth"], "--z-range",
               f"{start}:{stop}", "--threshold", str(scored["threshold"]), "--instances",
               "--json", str(out), *extra]  # fmt: skip
        subprocess.run([sys.executable, "-m", *cmd], check=True, capture_output=True)
        (row,) = json.loads(out.read_text())
    return {"command": shlex.join(cmd), **row}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument(
        "--fractions",
        type=float,
        nargs="*",
        default=[],
        help="also score at these fractions of the median source object",
    )
    args = parser.parse_args()
    rows = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for prob in sorted((HERE / "work" / args.profile).glob("*/*_prob.tif")):
        scores = prob.with_name(prob.name.replace("_prob.tif", "_scores.json"))
        if not scores.exists():
            continue
        (scored,) = json.loads(scores.read_text())
        key = f"{args.profile}/{prob.parent.name}/{prob.name}"
        command = trained_with(prob.parent / "log.txt")
        smallest = source_min_size(command)
        variants = {"": ()}
        if smallest is not None:
            variants[f" default min-size {smallest:.3g}"] = ("--min-size", f"{smallest:.6g}")
            median = smallest / MIN_SIZE_FRACTION
            for fraction in args.fractions:
                variants[f" fraction {fraction:g}"] = ("--min-size", f"{fraction * median:.6g}")
        for name, extra in variants.items():
            row = evaluate(prob, scored, *extra)
            row["trained_with"] = command
            rows[key + name] = row
            found = row["instances"]
            print(f"{key}{name}: IoU {row['iou']:.3f}, objects {found['predicted']} / "
                  f"{found['true']}, F1@0.5 {found['f1_50']:.3f}, AP-75 {found['ap75']:.3f}, "
                  f"PQ {found['pq']:.3f}")  # fmt: skip
    RESULTS.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
