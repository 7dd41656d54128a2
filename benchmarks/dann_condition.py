"""DANN conditioned on its own prediction against plain DANN, EPFL -> VNC.

Collects the harness's rows (pre-registered in benchmarks/README.md, stop 29): for every
seed the conditioned row (`--opt condition=prediction`) has finished, its target-test
scores as trained and with target BN beside plain DANN's row of the same seed, and the
training-log means the pre-registration names (domain accuracies and the source
segmentation term over the last 300 iterations; logs of work directories that are gone
are reported as missing). Summaries are mean +- std (ddof 1, as the table) over the
seeds both rows have, and plain DANN's over all its seeds. Sets nothing: the option's
default was fixed before the runs.

    python benchmarks/paper_table.py run --profile cpu --directions epfl2vnc \
        --methods dann --opt condition=prediction --seeds 0,1,2 --no-report
    python benchmarks/dann_condition.py   # -> results/cpu/dann_condition.json
"""

from __future__ import annotations

import json
import statistics
import sys

from dann_classifier_rule import tail_means
from paper_table import HERE, config_key, directions, row_config, row_options

PROFILE = "cpu"
VARIANT = ["condition=prediction"]
SEEDS = range(10)  # whichever of these the harness has finished
PAPER_DANN = 49.90


def row_key(seed: int, assignments: list[str]) -> str:
    direction = directions("shared")["epfl2vnc"]
    options = row_options("dann", assignments)
    return config_key(row_config(PROFILE, direction, "dann", seed, None, "xy", options))


def log_means(key: str) -> dict[str, float] | None:
    """The source segmentation term and the logged metrics over the last 300 steps (the
    classifier rule's measure); None once the work directory is gone."""
    path = HERE / "work" / PROFILE / key / "run" / "log.jsonl"
    return tail_means(path) if path.exists() else None


def row(key: str) -> dict | None:
    path = HERE / "results" / PROFILE / "runs" / f"{key}.json"
    if not path.exists():
        return None
    result = json.loads(path.read_text())
    pick = ("iou", "precision", "recall")
    return {
        "key": key,
        "as_trained": {k: result["scores_as_trained"][k] for k in pick},
        "target_bn": {k: result["scores"][k] for k in pick},
        "seconds": result["seconds"],
        "trained_with": result.get("trained_with"),
        "last_iterations_means": log_means(key),
    }


def summary(rows: list[dict]) -> dict:
    out = {"seeds": len(rows)}
    for field in ("as_trained", "target_bn"):
        values = [100 * r[field]["iou"] for r in rows]
        out[field] = {
            "mean": round(statistics.fmean(values), 2),
            "std": round(statistics.stdev(values), 2) if len(values) > 1 else None,
        }
    return out


def main() -> None:
    seeds = {}
    for seed in SEEDS:
        conditioned = row(row_key(seed, VARIANT))
        plain = row(row_key(seed, []))
        if conditioned or plain:
            seeds[seed] = {"conditioned": conditioned, "plain": plain}
    paired = [s for s, v in seeds.items() if v["conditioned"] and v["plain"]]
    if not paired:
        sys.exit("error: no seed has both rows; run the harness first (see the docstring)")
    result = {
        "what": "DANN EPFL -> VNC with --opt condition=prediction (CDAN's conditioning) "
        "against plain DANN (classifier=conv), same seeds; pre-registered in "
        "benchmarks/README.md (stop 29)",
        "rerun": __doc__.split("\n\n")[-1].strip(),
        "paper_dann": PAPER_DANN,
        "paired_seeds": paired,
        "conditioned": summary([seeds[s]["conditioned"] for s in paired]),
        "plain_same_seeds": summary([seeds[s]["plain"] for s in paired]),
        "plain_all_seeds": summary([v["plain"] for v in seeds.values() if v["plain"]]),
        "seeds": seeds,
    }
    out = HERE / "results" / PROFILE / "dann_condition.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    for name in ("conditioned", "plain_same_seeds", "plain_all_seeds"):
        print(name, json.dumps(result[name]))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
