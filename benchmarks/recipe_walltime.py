"""The recipe's wall time in float32 and in bfloat16, one run after the other.

    python benchmarks/recipe_walltime.py [--direction epfl2vnc] [--seed 0] [--threads 2]

What a user waits for: ``emda adapt`` with no method (the recipe, every stage and the
teachers' guide predictions, ending with target batch norm), with the paper table's CPU
profile (1500 iterations, batch 8 of 128^2 patches, base 16), once with ``--precision
float32`` (the default before bfloat16 training) and once with ``--precision bfloat16``
(what ``auto`` picks on a CPU with bfloat16 instructions). Beside each, one 1500-iteration
stage, ``emda adapt --method ft`` and ``--method ynet``, the yardstick of the recipe's time
goal (at most twice one such stage).

Runs go one after the other, so nothing else should run on the machine meanwhile: the
figures are only comparable when each run has the cores to itself. Every run starts
afresh (``--overwrite``); nothing is scored. Writes benchmarks/results/recipe_walltime.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from harness.config import PROFILES, directions  # noqa: E402
from harness.running import emda  # noqa: E402
from roofline import cpu_name  # noqa: E402

WORK = HERE / "work" / "recipe_walltime"
RESULTS = HERE / "results" / "recipe_walltime.json"
PRECISIONS = ("float32", "bfloat16")


def adapt(direction: str, seed: int, threads: int, precision: str, method: str | None) -> dict:
    """One ``emda adapt`` run from scratch: its wall seconds, and the recipe's stages."""
    d, p = directions("shared")[direction], PROFILES["cpu"]
    out = WORK / f"{direction}_{method or 'recipe'}_{precision}"
    args = ["adapt", "--source", d.source.raw, "--source-labels", d.source.labels,
            "--target", d.target_train.raw, "--out", str(out), "--overwrite", "--quiet",
            "--base-channels", str(p["base_channels"]), "--iterations", str(p["iterations"]),
            "--batch-size", str(p["batch_size"]), "--patch-size", str(p["patch_size"]),
            "--seed", str(seed), "--precision", precision, "--threads", str(threads)]  # fmt: skip
    args += ["--source-z", d.source.z] if d.source.z else []
    args += ["--target-z", d.target_train.z] if d.target_train.z else []
    args += ["--method", method] if method else []
    seconds = emda(*args, log=WORK / "log.txt")
    row = {"seconds": round(seconds, 1)}
    if method is None:
        stages = json.loads((out / "recipe.json").read_text())["stages"]
        row["stages"] = [
            {k: s.get(k) for k in ("name", "status", "iterations")}
            | {"seconds": round(s["seconds"], 1) if s.get("seconds") else None}
            for s in stages
        ]  # fmt: skip
        row["iterations"] = sum(s.get("iterations") or 0 for s in stages if s.get("trained"))
    else:
        row["iterations"] = p["iterations"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--direction", default="epfl2vnc", choices=["epfl2vnc", "vnc2epfl"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    if not (HERE.parent.parent / "shared" / "data").is_dir():
        sys.exit("needs the benchmark volumes in ../shared/data")
    WORK.mkdir(parents=True, exist_ok=True)
    runs = {}
    for precision in PRECISIONS:
        for method in (None, "ft", "ynet"):
            name = f"{method or 'recipe'}_{precision}"
            runs[name] = adapt(args.direction, args.seed, args.threads, precision, method)
            print(name, runs[name]["seconds"], "s", flush=True)
    for precision in PRECISIONS:
        recipe = runs[f"recipe_{precision}"]["seconds"]
        for method in ("ft", "ynet"):
            runs[f"recipe_{precision}"][f"vs_{method}_stage"] = round(
                recipe / runs[f"{method}_{precision}"]["seconds"], 2
            )
    runs["speedup_bfloat16"] = {
        name: round(runs[f"{name}_float32"]["seconds"] / runs[f"{name}_bfloat16"]["seconds"], 2)
        for name in ("recipe", "ft", "ynet")
    }
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[f"{args.direction}_seed{args.seed}"] = {
        "machine": cpu_name(),
        "threads": args.threads,
        "runs": runs,
        "command": " ".join(["python", *sys.argv]),
    }
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(runs["speedup_bfloat16"]))


if __name__ == "__main__":
    main()
