"""Benchmark scripts that replay or rerun recipe stages: safeguard_replay, stress, rounds."""

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "safeguard_replay.py"


def _replay():
    spec = importlib.util.spec_from_file_location("safeguard_replay", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _stages(*shares):
    methods = ["ynet"] + ["selftrain"] * (len(shares) - 1)
    return [{"name": f"{i}-{m}", "method": m, "target": {"foreground": s}}
            for i, (m, s) in enumerate(zip(methods, shares), 1)]  # fmt: skip


def test_the_replay_keeps_what_each_rule_would_have_kept():
    replay = _replay().replay(_stages(0.031, 0.0237, 0.0206))  # 77 %, then 87 % of its teacher
    assert replay["teacher_only"] == "3-selftrain"
    assert replay["emda"] == "2-selftrain"  # 66 % of the untaught stage's share
    grown = _replay().replay(_stages(0.05, 0.06, 0.07))
    assert grown["teacher_only"] == grown["emda"] == "3-selftrain"
    assert _replay().replay(_stages(0.05, 0.03, 0.05))["emda"] == "1-ynet"  # stops at the first


def test_the_stress_report_rows_and_where_they_are_written(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPT.parent))  # stress.py imports the scripts beside it
    spec = importlib.util.spec_from_file_location("stress", SCRIPT.parent / "stress.py")
    stress = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stress)

    def stage(iou, share):
        return {"iou": iou, "status": "kept", "target_statistics": {"foreground": share}}

    scores = {"ft_target_bn": {"iou": 0.289}, "1-align": stage(0.363, 0.031),
              "2-selftrain-1": stage(0.333, 0.0237), "3-selftrain-2": stage(0.312, 0.0206),
              "recipe": {"iou": 0.312}}  # fmt: skip
    results = {"epfl_x": scores}
    table = stress.report(results)
    assert table.splitlines()[-1] == (
        "| `epfl_x` | 28.9 | 36.3 (3.10 %) | 33.3 (2.37 %) | 31.2 (2.06 %) | 2-selftrain-1: 33.3 |"
    )
    doc = tmp_path / "results.md"
    doc.write_text("a\n<!-- stress-report:start -->\nold\n<!-- stress-report:end -->\nb\n")
    stress.write_report(table, doc)
    assert doc.read_text() == (
        f"a\n<!-- stress-report:start -->\n{table}\n<!-- stress-report:end -->\nb\n"
    )


def test_selftrain_rounds_keeps_stage_one_and_reruns_the_rest(tmp_path):
    spec = importlib.util.spec_from_file_location("rounds", SCRIPT.parent / "selftrain_rounds.py")
    rounds = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rounds)
    run = tmp_path / "run"
    (run / "stages/1-ynet").mkdir(parents=True)
    (run / "stages/1-ynet/checkpoint.pt").write_bytes(b"model")
    (run / "config.toml").write_text("[adapt]\n")
    stages = _stages(0.05, 0.04)
    record = {"recipe": {"name": "default"}, "iterations": 9, "model": "stages/2-selftrain",
              "seconds": 1.0, "stages": [{**s, "status": "kept"} for s in stages]}  # fmt: skip
    (run / "recipe.json").write_text(json.dumps(record))
    assert rounds.copy_first_stage(run, tmp_path / "again") == record
    fresh = json.loads((tmp_path / "again/recipe.json").read_text())
    pending = {"name": "2-selftrain", "method": "selftrain", "status": "pending"}
    assert fresh["stages"] == [record["stages"][0], pending]
    assert "model" not in fresh and fresh["iterations"] == 9
    assert (tmp_path / "again/stages/1-ynet/checkpoint.pt").read_bytes() == b"model"
    assert (tmp_path / "again/config.toml").exists()
