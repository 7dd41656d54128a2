"""benchmarks/safeguard_replay.py: the recipe's safeguard replayed on recorded stage shares."""

import importlib.util
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
