"""Does a VNC -> EPFL model still segment its own source? (diagnostic, source labels only)

For each harness run key given (rows of `paper_table.py` whose source is VNC z 0-12),
predicts the whole VNC stack with the model as trained (source batch-norm statistics)
and scores the held-out source slices z 13-19, which no VNC -> EPFL row trains on. A
model that fails there failed to learn its source task; one that passes there and fails
on EPFL learned a cue the target does not have. Reads no EPFL label.

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
HELD_OUT = "13:20"


def check(key: str, profile: str) -> dict:
    result_file = HERE / "results" / profile / "runs" / f"{key}.json"
    if not result_file.exists():
        sys.exit(f"error: {result_file}: no such result")
    config = json.loads(result_file.read_text())["config"]
    if config["direction"]["source"]["raw"] != f"{VNC}/raw.tif":
        sys.exit(f"error: {key}: its source is not the VNC stack")
    run = HERE / "work" / profile / key / "run"
    prob = run.parent / "vnc_prob.tif"
    scores = run.parent / "vnc_heldout_scores.json"
    emda = [sys.executable, "-m", "emda"]
    start = time.perf_counter()
    subprocess.run([*emda, "predict", str(run), f"{VNC}/raw.tif", "--output", str(prob),
                    "--device", "cpu", "--quiet", "--overwrite"], check=True, cwd=REPO)  # fmt: skip
    seconds = time.perf_counter() - start
    subprocess.run([*emda, "evaluate", str(prob), "--labels", f"{VNC}/labels.tif",
                    "--z-range", HELD_OUT, "--json", str(scores), "--overwrite"],
                   check=True, cwd=REPO, stdout=subprocess.DEVNULL)  # fmt: skip
    score = json.loads(scores.read_text())
    score = score[0] if isinstance(score, list) else score
    return {
        "method": config["method"],
        "seed": config["seed"],
        "augment": config.get("augment", {}),
        "vnc_z13_19": {k: score[k] for k in ("iou", "precision", "recall")},
        "epfl_test_as_trained": json.loads(result_file.read_text())["scores_as_trained"]["iou"],
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
