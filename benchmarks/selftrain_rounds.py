"""A finished recipe run's self-training rounds trained again with the current code.

    python benchmarks/selftrain_rounds.py --name NAME --run RUN --test RAW --labels LABELS \
        [--test-z 13:20] [--target PATH] [--precision bfloat16]

A change to self-training (its loss, its pseudo-labels) is measured without retraining
the alignment stage it starts from: stage 1 of ``RUN`` (a default-recipe run, e.g. a
paper-table row's ``benchmarks/work/cpu/KEY/run`` or a stress run) is copied into
``benchmarks/work/selftrain_rounds/NAME``, the later stages are marked not yet run, and
``emda adapt --config RUN/config.toml --resume`` trains them, so every setting is the
run's own. ``--target`` replaces a target path that has moved since. Each retrained
round is predicted (``--planes auto``, tiles of 256) and scored on ``--test`` /
``--labels`` (``--test-z`` slices); the run's recorded target statistics sit beside the
new ones. Appends to ``benchmarks/results/selftrain_rounds.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / "work" / "selftrain_rounds"
RESULTS = HERE / "results" / "selftrain_rounds.json"


def emda(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "emda", *args], check=True)


def copy_first_stage(run: Path, out: Path) -> dict:
    """``out``: ``run``'s config and stage 1; its record with the later stages to run.
    Returns ``run``'s own record."""
    record = json.loads((run / "recipe.json").read_text())
    first = record["stages"][0]["name"]
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(run / "stages" / first, out / "stages" / first)
    shutil.copy(run / "config.toml", out / "config.toml")
    fresh = {k: v for k, v in record.items() if k not in ("model", "seconds")}
    fresh["stages"] = [record["stages"][0]] + [
        {"name": s["name"], "method": s["method"], "status": "pending"}
        for s in record["stages"][1:]
    ]
    (out / "recipe.json").write_text(json.dumps(fresh, indent=1))
    return record


def score(model: Path, args: argparse.Namespace) -> dict:
    prob = model.parent.parent / f"{model.name}_prob.tif"
    emda("predict", str(model), args.test, "--output", str(prob), "--planes", "auto",
         "--tile-size", "256", "--precision", args.precision, "--quiet", "--overwrite")  # fmt: skip
    scores = prob.with_name(f"{model.name}_scores.json")
    emda("evaluate", str(prob), "--labels", args.labels, "--json", str(scores), "--overwrite",
         *(["--z-range", args.test_z] if args.test_z else []))  # fmt: skip
    (result,) = json.loads(scores.read_text())
    return {k: result[k] for k in ("iou", "precision", "recall")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="the entry in the results file")
    parser.add_argument("--run", type=Path, required=True, help="a finished recipe run")
    parser.add_argument("--test", required=True, help="the volume scored")
    parser.add_argument("--labels", required=True, help="its labels")
    parser.add_argument("--test-z", help="the slices scored (default: all)")
    parser.add_argument("--target", help="the run's target, where it is now")
    parser.add_argument("--precision", default="bfloat16", help="of the scored predictions")
    args = parser.parse_args()
    for path in (args.run / "recipe.json", args.run / "config.toml", Path(args.test)):
        if not path.is_file():
            sys.exit(f"error: {path}: no such file (--run must be a finished recipe run)")
    out = WORK / args.name
    before = copy_first_stage(args.run, out)
    emda("adapt", "--config", str(out / "config.toml"), "--out", str(out), "--resume",
         "--quiet", *(["--target", args.target] if args.target else []))  # fmt: skip
    after = json.loads((out / "recipe.json").read_text())
    stages = {}
    for old, new in zip(before["stages"][1:], after["stages"][1:]):
        if (out / "stages" / new["name"] / "checkpoint.pt").exists():
            stages[new["name"]] = {
                **score(out / "stages" / new["name"], args),
                "status": new["status"],
                "share": new["target"]["foreground"],
                "share_before": old.get("target", {}).get("foreground"),
            }
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[args.name] = {"run": str(args.run), "stages": stages, "model": after["model"],
                          "command": " ".join(["python", *sys.argv])}  # fmt: skip
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(stages, indent=1))


if __name__ == "__main__":
    main()
