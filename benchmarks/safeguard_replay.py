"""The recipe's safeguard replayed on every recorded recipe run: which stage it keeps.

    python benchmarks/safeguard_replay.py

A recipe run records each stage's label-free target statistics (the share of target
pixels it marks as mitochondria), so a change to the rule that keeps or rejects stages
can be replayed on the runs already made without training anything. This compares the
rule before (a taught stage against its teacher only) with emda's rule
(``emda.training.recipe_run.judge``: against its teacher and the untaught stage its
rounds started from), on the paper table's recipe rows (``results/cpu/runs``, scored
once, with the model the run kept) and the stress targets (``results/stress.json``,
every stage scored, so the score of whichever stage a rule keeps is known). Writes
``results/safeguard_replay.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from emda.training.recipe import DEFAULT_RECIPE, has_teacher  # noqa: E402
from emda.training.recipe_run import judge  # noqa: E402


def kept_stage(stages: list[dict], cumulative: bool) -> str:
    """The stage a recipe run ends with when its stages mark these shares."""
    kept = untaught = None
    for stage in stages:
        taught = kept is not None and has_teacher(stage["method"])
        if taught and judge(stage["target"], kept["target"], untaught if cumulative else None):
            break
        kept, untaught = stage, untaught if taught else stage["target"]
    assert kept is not None
    return kept["name"]


def replay(stages: list[dict]) -> dict:
    measured = [s for s in stages if "target" in s]
    return {
        "shares": {s["name"]: round(s["target"]["foreground"], 5) for s in measured},
        "teacher_only": kept_stage(measured, cumulative=False),
        "emda": kept_stage(measured, cumulative=True),
    }


def table_runs() -> list[dict]:
    rows = []
    for path in sorted((HERE / "results" / "cpu" / "runs").glob("*.json")):
        run = json.loads(path.read_text())
        config = run["config"]
        if config.get("method") != "recipe" or "recipe" not in run:
            continue
        rows.append({
            "run": f"{config['direction']['name']} seed {config['seed']} "
                   f"({config.get('precision') or 'float32'}, key {run['key']})",
            **replay(run["recipe"]),
            "iou_of_the_recorded_model": round(run["scores"]["iou"], 4),
        })  # fmt: skip
    return rows


def stress_stages(scores: dict) -> list[dict]:
    """A stress.json target's stages with their statistics, as a recipe run records them
    (stress runs train the default recipe: its stages, in order)."""
    measured = [(k, v) for k, v in scores.items() if isinstance(v, dict) and "status" in v]
    return [{"name": k, "method": stage.method, "target": v["target_statistics"]}
            for (k, v), stage in zip(measured, DEFAULT_RECIPE.stages)]  # fmt: skip


def stress_runs() -> list[dict]:
    rows = []
    results = json.loads((HERE / "results" / "stress.json").read_text())
    for name, scores in results.items():
        row = {"run": f"stress {name}", **replay(stress_stages(scores))}
        row["iou"] = {rule: round(scores[row[rule]]["iou"], 4) for rule in ("teacher_only", "emda")}
        row["iou"]["ft_target_bn"] = round(scores["ft_target_bn"]["iou"], 4)
        rows.append(row)
    return rows


def main() -> None:
    rows = table_runs() + stress_runs()
    out = HERE / "results" / "safeguard_replay.json"
    out.write_text(json.dumps({"command": "python benchmarks/safeguard_replay.py", "runs": rows},
                              indent=2) + "\n")  # fmt: skip
    for row in rows:
        shares = " -> ".join(f"{100 * v:.2f}" for v in row["shares"].values())
        changed = "" if row["teacher_only"] == row["emda"] else "  (changed)"
        iou = row.get("iou", {})
        scores = f"  IoU {100 * iou['teacher_only']:.1f} -> {100 * iou['emda']:.1f}" if iou else ""
        print(f"{row['run']}: {shares} %  kept {row['teacher_only']} -> {row['emda']}"
              f"{changed}{scores}")  # fmt: skip


if __name__ == "__main__":
    main()
