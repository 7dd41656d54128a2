"""Does an adapted model still segment its own source? (diagnostic, source labels only)

For each harness run key given, predicts held-out data of the row's *source* with the
model as trained (source batch-norm statistics) and scores it: for VNC -> EPFL rows the
VNC slices z 13-19, which no such row trains on; for EPFL -> VNC rows the EPFL test
volume (in that direction the source's own test data, not the target's). A model that
fails there failed to learn its source task; one that passes there and fails on the
target learned a cue the target does not have. Reads no target label.

    python benchmarks/source_holdout.py KEY... [--profile cpu]

Writes benchmarks/results/<profile>/source_holdout.json (one entry per key, merged with
the entries already there).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
VNC = "../shared/data/drosophila_vnc"
EPFL = "../shared/data/epfl_lucchi_pp"
HELD_OUT = {  # source raw: (held-out raw, its labels, slices scored, result name)
    f"{VNC}/raw.tif": (f"{VNC}/raw.tif", f"{VNC}/labels.tif", "13:20", "vnc_z13_19"),
    f"{EPFL}/train/raw.tif": (f"{EPFL}/test/raw.tif", f"{EPFL}/test/labels.tif", None,
                              "epfl_test"),
}  # fmt: skip


def check(key: str, profile: str) -> dict:
    result_file = HERE / "results" / profile / "runs" / f"{key}.json"
    if not result_file.exists():
        sys.exit(f"error: {result_file}: no such result")
    result = json.loads(result_file.read_text())
    config = result["config"]
    if config["direction"]["source"]["raw"] not in HELD_OUT:
        sys.exit(f"error: {key}: its source is neither the VNC stack nor EPFL train")
    raw, labels, z_range, name = HELD_OUT[config["direction"]["source"]["raw"]]
    run = HERE / "work" / profile / key / "run"
    if not (run / "checkpoint.pt").is_file():
        sys.exit(f"error: {run}: no trained model on disk (its work files were removed)")
    prob = run.parent / f"{name}_prob.tif"
    scores = run.parent / f"{name}_heldout_scores.json"
    emda = [sys.executable, "-m", "emda"]
    start = time.perf_counter()
    subprocess.run([*emda, "predict", str(run), raw, "--output", str(prob),
                    "--device", "cpu", "--quiet", "--overwrite"], check=True, cwd=REPO)  # fmt: skip
    seconds = time.perf_counter() - start
    where = ["--z-range", z_range] if z_range else []
    subprocess.run([*emda, "evaluate", str(prob), "--labels", labels, *where, "--json",
                    str(scores), "--overwrite"],
                   check=True, cwd=REPO, stdout=subprocess.DEVNULL)  # fmt: skip
    score = json.loads(scores.read_text())
    score = score[0] if isinstance(score, list) else score
    return {
        "method": config["method"],
        "seed": config["seed"],
        "augment": config.get("augment", {}),
        "match_sharpness": bool(config.get("match_sharpness")),
        "direction": config["direction"]["name"],
        name: {k: score[k] for k in ("iou", "precision", "recall")},
        "target_test_as_trained": result["scores_as_trained"]["iou"],
        "predict_seconds": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("keys", nargs="+")
    parser.add_argument("--profile", default="cpu")
    args = parser.parse_args()
    out = HERE / "results" / args.profile / "source_holdout.json"
    results = json.loads(out.read_text()) if out.exists() else {}
    for key in args.keys:
        results[key] = check(key, args.profile)
        print(key, json.dumps(results[key]))
        out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
