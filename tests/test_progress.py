"""Without a terminal (a batch job's log), progress is written as lines while the work
runs, not as a bar that appears at the end."""

import io

from typer.testing import CliRunner

from emda.cli import app
from emda.progress import LineProgress

from .conftest import CROPS, adapt_on_crops

runner = CliRunner()


def test_lines_at_the_start_the_end_and_every_interval():
    stream = io.StringIO()
    progress = LineProgress(interval=3600, stream=stream)
    task = progress.add_task("training", total=4, terms="")
    for _ in range(4):
        progress.update(task, advance=1, terms="loss 0.5")
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("training: 0/4 (0 %)")
    assert len(lines) == 2 and lines[1].startswith("training: 4/4 (100 %)")
    assert lines[1].endswith("loss 0.5")
    stream = io.StringIO()
    progress = LineProgress(interval=0, stream=stream)
    task = progress.add_task("blocks")
    for done in range(1, 4):
        progress.update(task, completed=done, total=3)
    assert [line.split(",")[0] for line in stream.getvalue().splitlines()] == [
        "blocks: 0", "blocks: 1/3 (33 %)", "blocks: 2/3 (67 %)", "blocks: 3/3 (100 %)"
    ]  # fmt: skip
    assert "left" in stream.getvalue().splitlines()[1]


def test_training_and_prediction_report_progress_in_a_log(tmp_path):
    env = {"EMDA_PROGRESS_SECONDS": "0"}
    result = runner.invoke(app, ["adapt", "--out", str(tmp_path / "run"), "--source",
                                 str(CROPS / "epfl_train/raw.tif"), "--source-labels",
                                 str(CROPS / "epfl_train/labels.tif"), "--iterations", "3",
                                 "--batch-size", "2", "--patch-size", "64", "--base-channels",
                                 "4", "--device", "cpu", "--method", "ft"], env=env)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "training: 1/3 (33 %)" in result.output and "training: 3/3 (100 %)" in result.output
    predicted = runner.invoke(app, ["predict", str(tmp_path / "run"), str(CROPS / "vnc/raw.tif"),
                                    "-o", str(tmp_path / "p.tif")], env=env)  # fmt: skip
    assert predicted.exit_code == 0 and "predicting blocks: 12/12 (100 %)" in predicted.output
    quiet = adapt_on_crops(tmp_path / "quiet", target=None)  # --quiet: nothing
    assert "training:" not in quiet.output
