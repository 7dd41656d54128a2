"""Recipes: definition, checks before anything is written, stages, resume, the safeguard."""

import json
import textwrap

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from emda.cli import app
from emda.errors import EmdaError
from emda.io.volume import Volume
from emda.training import recipe_run
from emda.training.recipe import DEFAULT_RECIPE, Recipe, Stage, check_recipe, load_recipe
from tests.conftest import CROPS, TINY_TRAIN

runner = CliRunner()
SOURCE = ["--source", str(CROPS / "epfl_train/raw.tif"),
          "--source-labels", str(CROPS / "epfl_train/labels.tif")]  # fmt: skip
TARGET = ["--target", str(CROPS / "vnc/raw.tif")]
TWO_STAGES = """
[recipe]
name = "two"

[[recipe.stage]]
name = "align"
method = "ynet"

[[recipe.stage]]
method = "selftrain"
opt = { balance = "class", views = 1 }
settings = { target_planes = "auto" }
"""


def _toml(tmp_path, text: str):
    path = tmp_path / "recipe.toml"
    path.write_text(textwrap.dedent(text))
    return path


def test_the_default_recipe_is_valid_and_twice_one_run():
    check_recipe(DEFAULT_RECIPE)
    total = sum(s.stage_iterations(1500) for s in DEFAULT_RECIPE.stages)
    assert total == 3000


def test_a_toml_recipe_loads(tmp_path):
    recipe = load_recipe(_toml(tmp_path, TWO_STAGES))
    assert recipe.name == "two"
    assert [s.method for s in recipe.stages] == ["ynet", "selftrain"]
    assert recipe.stages[1].options == {"balance": "class", "views": 1}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[recipe.stage]]\nmethod = "nope"', "stage 1 (nope): --method nope: unknown method"),
        ('[[recipe.stage]]\nmethod = "ynet"\nopt = { wings = 2 }', "--opt wings: unknown option"),
        ('[[recipe.stage]]\nmethod = "ft"\nsettings = { batch_size = 4 }', "'batch_size' is not"),
        ('[[recipe.stage]]\nmethod = "ft"\nsettings = { target_planes = "z" }', "xy, ortho or"),
        ('[[recipe.stage]]\nmethod = "ft"\nlr = 1', "unknown key 'lr'"),
        ('[[recipe.stage]]\nname = "x"', "needs method = NAME"),
        ('[[recipe.stage]]\nmethod = "ft"\niterations = 0', "positive integer"),
        ("[recipe\n", "not a readable TOML file"),
        ('[recipe]\nname = "empty"', "expected a [recipe] table"),
    ],
)
def test_bad_recipes_are_one_line_errors(tmp_path, text, message):
    with pytest.raises(EmdaError, match=None) as err:
        load_recipe(_toml(tmp_path, text if "[recipe" in text else "[recipe]\n" + text))
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--recipe", "RECIPE"], "stage 1 (nope): --method nope: unknown method"),
        (["--voxel-size", "0"], "--voxel-size 0: expected three positive numbers"),
        (["--target-voxel-size", "5,-4,4"], "--target-voxel-size 5,-4,4: expected three"),
        (["--opt", "views=1"], "--opt needs --method"),
        (["--method", "ft", "--recipe", "RECIPE"], "contradict each other"),
    ],
)
def test_cli_refuses_bad_recipes_and_voxel_sizes_writing_nothing(tmp_path, extra, message):
    bad = _toml(tmp_path, '[recipe]\n[[recipe.stage]]\nmethod = "nope"')
    extra = [str(bad) if e == "RECIPE" else e for e in extra]
    out = tmp_path / "run"
    result = runner.invoke(app, ["adapt", *SOURCE, *TARGET, "--out", str(out), *extra])
    assert result.exit_code != 0
    assert message in result.output, result.output
    assert not out.exists()


def test_the_recipe_needs_a_target(tmp_path):
    result = runner.invoke(app, ["adapt", *SOURCE, "--out", str(tmp_path / "r")])
    assert result.exit_code != 0 and "--target is required by the recipe" in result.output


def test_judge_keeps_a_stage_unless_it_shrinks_the_objects():
    teacher = {"foreground": 0.08}
    assert recipe_run.judge({"foreground": 0.10}, teacher) is None
    assert recipe_run.judge({"foreground": 0.06}, teacher) is None  # 75 %: kept
    assert "under 75% of its teacher's 8.00%" in recipe_run.judge({"foreground": 0.05}, teacher)


def test_judge_adds_up_the_shrinking_of_successive_rounds():
    untaught, teacher = {"foreground": 0.031}, {"foreground": 0.0237}  # round 1 kept: 77 %
    reason = recipe_run.judge({"foreground": 0.0206}, teacher, untaught)  # 87 % of its teacher
    assert "under 75% of the untaught stage's 3.10%" in reason  # but 66 % of where it began
    assert recipe_run.judge({"foreground": 0.024}, teacher, untaught) is None
    grown = {"foreground": 0.07}  # a teacher that marks more than the untaught stage
    assert "its teacher's" in recipe_run.judge({"foreground": 0.05}, grown, {"foreground": 0.05})


def test_target_planes_auto_reads_voxel_sizes_only():
    def vol(shape, voxel):
        return Volume(np.zeros(shape, np.uint8), "v", voxel)

    assert recipe_run.auto_target_planes(vol((165, 8, 8), (5, 5, 5)), 128) == "ortho"
    assert recipe_run.auto_target_planes(vol((20, 8, 8), (50, 4.6, 4.6)), 128) == "xy"
    assert recipe_run.auto_target_planes(vol((20, 8, 8), (5, 5, 5)), 128) == "xy"  # too thin
    assert recipe_run.auto_target_planes(vol((165, 8, 8), None), 128) == "xy"


def _run(tmp_path, out, *extra):
    recipe = _toml(tmp_path, TWO_STAGES)
    args = ["adapt", *SOURCE, *TARGET, "--out", str(out), "--recipe", str(recipe), *TINY_TRAIN]
    return runner.invoke(app, [*args, *extra])


def test_a_recipe_runs_its_stages_into_one_run(tmp_path):
    out = tmp_path / "run"
    result = _run(tmp_path, out)
    assert result.exit_code == 0, result.output
    record = json.loads((out / "recipe.json").read_text())
    assert [s["status"] for s in record["stages"]] == ["kept", "kept"]
    assert record["model"] == "stages/2-selftrain"
    student = record["stages"][1]
    assert student["options"]["teacher"] == str(out / "stages/1-align")
    assert student["settings"] == {"target_planes": "xy"}  # VNC: anisotropic sections
    assert 0 <= student["target"]["foreground"] <= 1
    final = torch.load(out / "checkpoint.pt", weights_only=True)
    stage = torch.load(out / "stages/2-selftrain/checkpoint.pt", weights_only=True)
    assert all(torch.equal(final["state_dict"][k], v) for k, v in stage["state_dict"].items())
    assert final["training"]["recipe"]["model"] == "stages/2-selftrain"
    assert "recipe = " in (out / "config.toml").read_text()  # the command's settings, once
    assert not (out / "stages/1-align/config.toml").exists()
    info = runner.invoke(app, ["info", str(out)], terminal_width=200)
    assert "stage 1-align" in info.output and "kept" in info.output
    again = _run(tmp_path, out, "--resume")
    assert again.exit_code != 0 and "nothing to resume" in again.output
    refused = _run(tmp_path, out)
    assert refused.exit_code != 0 and "already holds a run" in refused.output


def test_resume_continues_the_stage_that_was_interrupted(tmp_path):
    out = tmp_path / "run"
    assert _run(tmp_path, out).exit_code == 0
    # as if killed while the second stage trained: its record says running, no final model
    record = json.loads((out / "recipe.json").read_text())
    del record["model"], record["seconds"]
    record["stages"][1] = {k: record["stages"][1][k] for k in ("name", "method")}
    record["stages"][1]["status"] = "running"
    (out / "recipe.json").write_text(json.dumps(record))
    (out / "checkpoint.pt").unlink()
    first = (out / "stages/1-align/checkpoint.pt").stat().st_mtime_ns
    result = _run(tmp_path, out, "--resume")
    assert result.exit_code == 0, result.output
    assert (out / "stages/1-align/checkpoint.pt").stat().st_mtime_ns == first  # not retrained
    assert json.loads((out / "recipe.json").read_text())["stages"][1]["status"] == "kept"
    assert (out / "checkpoint.pt").is_file()


def _three_stages(tmp_path, monkeypatch, shares, resume=False):
    """A ynet + two selftrain recipe whose stages mark the given target ``shares``."""
    from emda.model import UNetConfig
    from emda.training.adapt import VolumeSpec
    from emda.training.config import TrainConfig

    marked = iter(shares)
    monkeypatch.setattr(
        recipe_run, "target_statistics",
        lambda *a: {"foreground": next(marked), "confidence": 0.9, "slices": 8},
    )  # fmt: skip
    three = Recipe("three", (Stage("ynet", "align"), Stage("selftrain", "st1"),
                             Stage("selftrain", "st2")))  # fmt: skip
    summary = recipe_run.adapt_with_recipe(
        [VolumeSpec(str(CROPS / "epfl_train/raw.tif"), str(CROPS / "epfl_train/labels.tif"))],
        VolumeSpec(str(CROPS / "vnc/raw.tif")), tmp_path / "run", three,
        config=TrainConfig(iterations=2, batch_size=2, patch_size=64), device="cpu",
        model_config=UNetConfig(base_channels=4), resume=resume,
    )  # fmt: skip
    return json.loads((summary.run_dir / "recipe.json").read_text())


def test_a_stage_that_shrinks_the_objects_is_not_kept(tmp_path, monkeypatch):
    # the student marks far fewer pixels than its teacher
    record = _three_stages(tmp_path, monkeypatch, [0.10, 0.04])
    assert [s["status"] for s in record["stages"]] == ["kept", "rejected", "stopped"]
    assert "under 75% of its teacher's 10.00%" in record["stages"][1]["reason"]
    assert record["model"] == "stages/1-align"


def test_rounds_that_each_shrink_a_little_are_stopped_where_they_add_up(tmp_path, monkeypatch):
    record = _three_stages(tmp_path, monkeypatch, [0.10, 0.08, 0.07])  # 80 %, then 70 %
    assert [s["status"] for s in record["stages"]] == ["kept", "kept", "rejected"]
    assert "under 75% of the untaught stage's 10.00%" in record["stages"][2]["reason"]
    assert record["model"] == "stages/2-st1"
    # killed while judging the last stage: a resumed run still measures it from stage 1
    del record["model"], record["seconds"]
    record["stages"][2] = {**record["stages"][2], "status": "running"}
    del record["stages"][2]["reason"], record["stages"][2]["target"]
    (tmp_path / "run/recipe.json").write_text(json.dumps(record))
    resumed = _three_stages(tmp_path, monkeypatch, [0.07], resume=True)
    assert [s["status"] for s in resumed["stages"]] == ["kept", "kept", "rejected"]
    assert resumed["model"] == "stages/2-st1"


def test_the_example_recipe_is_valid():
    recipe = load_recipe(CROPS.parents[1] / "examples/recipes/coral_then_selftrain.toml")
    assert [s.method for s in recipe.stages] == ["coral", "selftrain"]
