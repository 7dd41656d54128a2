"""average_pair_probe.py scores an averaged row against the last weights of its own run."""

import importlib
import json
import sys
from pathlib import Path

import pytest
import torch

from emda.checkpoint import load_raw

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def modules(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    for name in ("average_pair_probe", "paper_table"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    probe = importlib.import_module("average_pair_probe")
    harness = sys.modules["paper_table"]
    monkeypatch.setattr(harness, "HERE", tmp_path / "benchmarks")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the harness's emda subprocesses
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the probe's adapt, in this process
    yield probe, harness
    torch.set_num_threads(threads)
    for name in ("average_pair_probe", "paper_table"):
        sys.modules.pop(name, None)


def test_the_last_weights_are_those_of_a_plain_run_and_score_as_it_does(modules):
    probe, harness = modules
    out = probe.main(["--method", "dann", "--profile", "smoke", "--seed", "0"])
    result = json.loads(out.read_text())
    direction = harness.directions("crops")["epfl2vnc"]
    # the harness's plain row (--average-weights 0) trains the same trajectory separately
    plain = harness.run_one("smoke", direction, "dann", 0, None)
    averaged_dir = harness.HERE / "work/smoke" / result["row"]
    last = load_raw(averaged_dir / "last")
    assert last["training"]["average_weights"] == 0.0
    plain_weights = load_raw(harness._adapted_dir(plain["config"]) / "run")["state_dict"]
    averaged = load_raw(averaged_dir / "run")["state_dict"]
    for name, value in last["state_dict"].items():
        torch.testing.assert_close(value, plain_weights[name], rtol=0, atol=0, msg=name)
    assert any(not torch.equal(averaged[n], v) for n, v in last["state_dict"].items())
    assert result["last"]["target_bn"]["iou"] == plain["scores"]["iou"]
    assert result["last"]["as_trained"]["iou"] == plain["scores_as_trained"]["iou"]
    gain = result["averaged"]["target_bn"]["iou"] - result["last"]["target_bn"]["iou"]
    assert result["gain_iou_points"]["target_bn"] == round(100 * gain, 2)


def test_a_row_trained_without_the_probe_is_refused(modules):
    probe, harness = modules
    direction = harness.directions("crops")["epfl2vnc"]
    options = harness.row_options("dann", [])
    config = harness.row_config("smoke", direction, "dann", 0, None, "xy", options,
                                average_weights=0.5)  # fmt: skip
    run = harness._adapted_dir(config) / "run"
    run.mkdir(parents=True)
    (run / "checkpoint.pt").touch()
    with pytest.raises(SystemExit, match="trained without this probe; no last weights"):
        probe.main(["--method", "dann", "--profile", "smoke"])
