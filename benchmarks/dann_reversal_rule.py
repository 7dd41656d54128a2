"""Apply the rule fixed before the runs (benchmarks/README.md, stop 30) that decides
whether DANN's default lambdas become three times stronger, from training logs only,
and collect the candidate's target-test scores beside plain DANN's (read by no rule).

  lambdas=0,0,0.03,0.09,0.3 becomes the default iff on both seeds 0 and 1, over the last
  300 iterations,
  (a) level 2's domain accuracy averages <= 0.67 (plain seed 0: 0.72), and
  (b) the source segmentation term averages <= 1.1 x plain seed 0's (0.2666).

    python benchmarks/paper_table.py run --profile cpu --directions epfl2vnc \
        --methods dann --opt lambdas=0,0,0.03,0.09,0.3 --seeds 0,1 --no-report
    python benchmarks/dann_reversal_rule.py   # -> results/cpu/dann_reversal_rule.json
"""

from __future__ import annotations

import json
import sys

from dann_classifier_rule import HERE
from dann_condition import PAPER_DANN, PROFILE, SEEDS, log_means, row, row_key, summary

CANDIDATE = ["lambdas=0,0,0.03,0.09,0.3"]
RULE_SEEDS = (0, 1)
PLAIN_SEED0_LOG = HERE / "results" / PROFILE / "dann_classifier_rule.json"  # its means
MAX_ACCURACY2 = 0.67
MAX_SEG_RATIO = 1.1


def verdict(candidate_logs: dict[int, dict], plain_seg: float) -> dict:
    checks = {}
    for seed in RULE_SEEDS:
        means = candidate_logs[seed]
        checks[seed] = {
            "domain_accuracy2": means["domain_accuracy2"],
            "seg_ratio_to_plain_seed0": means["seg"] / plain_seg,
            "a_accuracy2_at_most_0.67": means["domain_accuracy2"] <= MAX_ACCURACY2,
            "b_seg_within_10_percent": means["seg"] / plain_seg <= MAX_SEG_RATIO,
        }
    passes = all(c["a_accuracy2_at_most_0.67"] and c["b_seg_within_10_percent"]
                 for c in checks.values())  # fmt: skip
    return {"checks": checks, "candidate_becomes_default": passes}


def scores(seeds: dict[int, dict]) -> dict | None:
    """Mean +- std over the seeds both rows have: reported, read by no rule."""
    paired = [v for v in seeds.values() if v["plain"]]
    if not paired:
        return None
    return {
        "seeds": [seed for seed, v in seeds.items() if v["plain"]],
        "candidate": summary([v["candidate"] for v in paired]),
        "plain_same_seeds": summary([v["plain"] for v in paired]),
    }


def main() -> None:
    plain_means = json.loads(PLAIN_SEED0_LOG.read_text())["means"]["conv"]
    logs = {seed: log_means(row_key(seed, CANDIDATE)) for seed in RULE_SEEDS}
    if missing := [seed for seed, means in logs.items() if means is None]:
        sys.exit(f"error: no training log for seed(s) {missing}; run the harness first "
                 "(see the docstring)")  # fmt: skip
    seeds = {}
    for seed in SEEDS:
        candidate, plain = row(row_key(seed, CANDIDATE)), row(row_key(seed, []))
        if candidate:
            seeds[seed] = {"candidate": candidate, "plain": plain}
    result = {
        "what": "DANN EPFL -> VNC with every lambda times three against plain DANN; rule "
        "pre-registered in benchmarks/README.md (stop 30), reading training logs only",
        "rerun": __doc__.split("\n\n")[-1].strip(),
        "candidate": CANDIDATE,
        "plain_seed0_last_iterations_means": plain_means,
        **verdict(logs, plain_means["seg"]),
        "paper_dann": PAPER_DANN,
        "scores_read_by_no_rule": scores(seeds),
        "seeds": seeds,
    }
    out = HERE / "results" / PROFILE / "dann_reversal_rule.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("checks", "candidate_becomes_default")}, indent=1))
    print(json.dumps(result["scores_read_by_no_rule"]))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
