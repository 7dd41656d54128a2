"""Apply the rule fixed before the run (commit "DANN: classifier=conv option ...") that
decides DANN's default domain classifier, from the two harness runs' training logs only
(no target label is read):

  conv becomes the default iff, in the EPFL -> VNC run (seed 0),
  (a) some regularised level's domain accuracy averages >= 0.6 over the last 300
      iterations (the reversed gradient has a signal), and
  (b) the source segmentation term averages within 10 % of the position-classifier
      run's over the same iterations.

    python benchmarks/dann_classifier_rule.py   # -> results/cpu/dann_classifier_rule.json
"""

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNS = {  # the harness's keys of the two adapted models (paper_table.py, profile cpu)
    "position": HERE / "work/cpu/358b0b0bb130/run/log.jsonl",
    "conv": HERE / "work/cpu/4165d195b969/run/log.jsonl",
}
LAST = 300


def tail_means(path: Path) -> dict[str, float]:
    if not path.exists():
        sys.exit(f"{path}: missing; run paper_table.py run --profile cpu --directions epfl2vnc "
                 "--methods dann [--opt classifier=conv] first")  # fmt: skip
    records = [json.loads(line) for line in path.read_text().splitlines()][-LAST:]
    means = {"seg": sum(r["seg"] for r in records) / len(records)}
    for name in records[-1].get("metrics", {}):
        means[name] = sum(r["metrics"][name] for r in records) / len(records)
    return means


def main() -> None:
    means = {name: tail_means(path) for name, path in RUNS.items()}
    accuracy = max(v for k, v in means["conv"].items() if k.startswith("domain_accuracy"))
    seg_ratio = means["conv"]["seg"] / means["position"]["seg"]
    verdict = {
        "a_accuracy_at_least_0.6": accuracy >= 0.6,
        "b_source_seg_within_10_percent": seg_ratio <= 1.1,
    }
    result = {
        "last_iterations": LAST,
        "means": means,
        "best_conv_accuracy": accuracy,
        "seg_ratio_conv_to_position": seg_ratio,
        **verdict,
        "conv_becomes_default": all(verdict.values()),
    }
    out = HERE / "results/cpu/dann_classifier_rule.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
