"""`emda adapt --source-val-z`: held-out source slices scored after training."""

import json

from typer.testing import CliRunner

from emda.cli import app
from emda.model.checkpoint import load_checkpoint

from .conftest import CROPS, adapt_on_crops

SOURCE = CROPS / "epfl_train"


def test_held_out_source_slices_are_scored_as_trained_and_recorded(tmp_path):
    out = tmp_path / "run"
    result = adapt_on_crops(out, "--source-z", "0:12", "--source-val-z", "12:16",
                            "--no-target-bn")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "held-out source slices: z 12:16, as trained: IoU" in result.output
    scores = load_checkpoint(out).training["source_validation"]
    assert scores["z_range"] == [12, 16] and scores["threshold"] == 0.5

    # the same number from the commands a user would run by hand
    runner = CliRunner()
    prob, report = tmp_path / "prob.tif", tmp_path / "scores.json"
    predicted = runner.invoke(app, ["predict", str(out), str(SOURCE / "raw.tif"), "--output",
                                    str(prob), "--prob-dtype", "float32", "--quiet"])  # fmt: skip
    assert predicted.exit_code == 0, predicted.output
    evaluated = runner.invoke(app, ["evaluate", str(prob), "--labels", str(SOURCE / "labels.tif"),
                                    "--z-range", "12:16", "--json", str(report)])  # fmt: skip
    assert evaluated.exit_code == 0, evaluated.output
    by_hand = json.loads(report.read_text())
    by_hand = by_hand[0] if isinstance(by_hand, list) else by_hand
    for name in ("iou", "precision", "recall"):
        assert abs(scores[name] - by_hand[name]) < 1e-3, name

    info = runner.invoke(app, ["info", str(out)])
    assert "held-out source slices" in info.output and "z 12:16" in info.output


def test_the_scores_are_the_source_models_even_when_target_statistics_follow(tmp_path):
    plain, adapted = tmp_path / "plain", tmp_path / "adapted"
    args = ("--source-z", "0:12", "--source-val-z", "12:16")
    assert adapt_on_crops(plain, *args, "--no-target-bn").exit_code == 0
    result = adapt_on_crops(adapted, *args)  # ends with target batch-norm statistics
    assert result.exit_code == 0, result.output
    before = load_checkpoint(plain).training["source_validation"]
    after = load_checkpoint(adapted).training["source_validation"]
    assert before == after  # same seed, same training: scored before the statistics change
    assert load_checkpoint(adapted).training["target_bn"] is True


def test_without_the_option_nothing_is_scored(tmp_path):
    assert adapt_on_crops(tmp_path / "run").exit_code == 0
    assert "source_validation" not in load_checkpoint(tmp_path / "run").training
