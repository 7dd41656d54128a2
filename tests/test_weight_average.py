"""``--average-weights``: the saved model is the mean of the last iterations' weights."""

import json

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from emda.cli import app
from emda.cli.describe import averaged_text as _averaged_text
from emda.model.checkpoint import load_raw
from emda.training.averaging import WeightAverage, first_averaged

from .conftest import adapt_on_crops
from .test_resume import ARGS, kill_resume_matches_whole

# a constant rate, so that a shorter run is the start of a longer one
CONSTANT = ["--lr-schedule", "constant", "--no-target-bn", "--threads", "1", "--seed", "5"]


def test_running_mean_of_weights_and_buffers():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    average, states = WeightAverage(), []
    for step in range(3):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(float(step + 1))
            model[1].running_mean += 0.5
            model[1].num_batches_tracked += 1
        states.append({k: v.clone() for k, v in model.state_dict().items()})
        average.update(model.state_dict())
    weights = average.weights(model.state_dict())
    for name, value in weights.items():
        expected = states[-1][name]
        if value.is_floating_point():
            expected = torch.stack([s[name] for s in states]).mean(0)
        torch.testing.assert_close(value, expected, msg=name)
        assert value.dtype == states[-1][name].dtype
    assert weights["1.num_batches_tracked"].item() == 3  # a counter: the latest, not a mean


@pytest.mark.parametrize(
    ("iterations", "fraction", "first"),
    [(1500, 0.5, 751), (4, 0.5, 3), (10, 0.01, 10), (4, 1.0, 1)],
)
def test_first_averaged_iteration(iterations, fraction, first):
    assert first_averaged(iterations, fraction) == first


def test_adapt_saves_the_mean_of_the_last_iterations(tmp_path):
    """Constant rate, one seed: runs of 3 and 4 iterations are the first steps of one
    trajectory, so averaging the last half of 4 must give the mean of their weights."""
    runs = {"three": ["--iterations", "3"], "four": ["--iterations", "4"],
            "averaged": ["--iterations", "4", "--average-weights", "0.5"]}  # fmt: skip
    for name, extra in runs.items():
        result = adapt_on_crops(tmp_path / name, *CONSTANT, *extra)
        assert result.exit_code == 0, result.output
    three, four, averaged = (
        load_raw(tmp_path / name)["state_dict"] for name in ("three", "four", "averaged")
    )
    assert load_raw(tmp_path / "averaged")["training"]["average_weights"] == 0.5
    moved = 0
    for name, value in averaged.items():
        if value.is_floating_point():
            torch.testing.assert_close(value, (three[name] + four[name]) / 2, msg=name)
            moved += not torch.equal(three[name], four[name])
    assert moved > 0  # the two iterations differ, so the mean is a new point
    info = CliRunner().invoke(app, ["info", str(tmp_path / "averaged")], env={"COLUMNS": "200"})
    assert "mean of iterations 3-4 (--average-weights 0.5)" in info.output


def test_info_says_an_intermediate_checkpoint_is_not_yet_the_average():
    assert _averaged_text(500, 1500, 0.5) == (
        "iteration 500's (the mean of 751-1500 is saved at the end)"
    )


def test_resume_keeps_the_average(tmp_path):
    """Killed inside the averaged window (iterations 61-120, state saved every 10) and
    resumed: the same averaged weights as a run never stopped."""
    kill_resume_matches_whole(tmp_path, [*ARGS, "--average-weights", "0.5"], after_lines=95)


@pytest.mark.parametrize("value", ["1.5", "-0.1"])
def test_bad_fraction_is_refused_before_any_work(tmp_path, value):
    result = adapt_on_crops(tmp_path / "run", "--average-weights", value)
    assert result.exit_code == 1
    assert "--average-weights must be in [0, 1]" in result.output
    assert not (tmp_path / "run").exists()


def test_every_method_saves_the_last_weights_unless_asked_and_the_run_records_which(tmp_path):
    """Averaging is a training setting, not a method's: off unless --average-weights is
    given. The checkpoint and config.toml hold the fraction, so --config repeats it."""
    for name, extra in {"default": [], "half": ["--average-weights", "0.5"]}.items():
        result = adapt_on_crops(tmp_path / name, "--iterations", "4", "--no-target-bn",
                                "--threads", "1", *extra, method="dann")  # fmt: skip
        assert result.exit_code == 0, result.output
    assert load_raw(tmp_path / "default")["training"]["average_weights"] == 0.0
    assert "average_weights = 0.0" in (tmp_path / "default/config.toml").read_text()
    assert load_raw(tmp_path / "half")["training"]["average_weights"] == 0.5
    assert "average_weights = 0.5" in (tmp_path / "half/config.toml").read_text()
    info = CliRunner().invoke(app, ["info", str(tmp_path / "half")], env={"COLUMNS": "200"})
    assert "mean of iterations 3-4 (--average-weights 0.5)" in info.output
    listed = json.loads(CliRunner().invoke(app, ["methods", "--json"]).output)
    assert all("average_weights" not in m for m in listed["methods"])
