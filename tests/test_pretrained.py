"""Pretrained models: ``emda:NAME`` works wherever a run directory does, ``emda models``
lists them, and the models that ship load and carry a model card."""

import json
import shutil

import numpy as np
import pytest
import tifffile
import torch
from typer.testing import CliRunner

import emda.pretrained as pretrained
from emda.cli import app
from emda.model.checkpoint import load_checkpoint, load_raw

from .conftest import CROPS, adapt_on_crops

runner = CliRunner()


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """A tiny run stored as a shipped model would be (float16 weights, a card)."""
    assert adapt_on_crops(tmp_path / "run", target=None).exit_code == 0
    data = load_raw(tmp_path / "run")
    data["state_dict"] = {k: v.half() if v.is_floating_point() else v
                          for k, v in data["state_dict"].items()}  # fmt: skip
    models = tmp_path / "models"
    models.mkdir()
    torch.save(data, models / "tiny.pt")
    card = {"name": "tiny", "training_data": "the EPFL crop", "licence": "test",
            "scores": {"in_domain": {"iou": 0.5, "on": "crop"}}}  # fmt: skip
    (models / "tiny.json").write_text(json.dumps(card))
    monkeypatch.setattr(pretrained, "HERE", models)
    return tmp_path


def test_a_shipped_model_predicts_recalibrates_and_finetunes_by_name(shipped):
    raw, labels = CROPS / "vnc/raw.tif", CROPS / "vnc/labels.tif"
    out = shipped / "p.tif"
    result = runner.invoke(app, ["predict", "emda:tiny", str(raw), "-o", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert tifffile.imread(out).shape == tifffile.imread(raw).shape
    result = runner.invoke(app, ["recalibrate", "emda:tiny", "--target", str(raw), "--out",
                                 str(shipped / "bn"), "--batches", "2"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert load_checkpoint(shipped / "bn").state_dict["head.weight"].dtype == torch.float32
    result = runner.invoke(app, ["finetune", "emda:tiny", "--target", str(raw), "--target-labels",
                                 str(labels), "--out", str(shipped / "ft"), "--iterations", "2",
                                 "--batch-size", "2", "--patch-size", "64", "--quiet"])  # fmt: skip
    assert result.exit_code == 0, result.output
    info = runner.invoke(app, ["info", "emda:tiny"], env={"COLUMNS": "200"})
    assert info.exit_code == 0 and "ft" in info.output


def test_float16_weights_predict_as_their_float32_originals(shipped):
    """What shipping in float16 costs: the probabilities differ by little (a test tile)."""
    full = load_checkpoint(shipped / "run").build_model().eval()
    half = load_checkpoint("emda:tiny").build_model().eval()
    x = torch.from_numpy(np.random.default_rng(0).random((1, 1, 64, 64), np.float32))
    with torch.no_grad():
        gap = (torch.sigmoid(full(x)) - torch.sigmoid(half(x))).abs().max()
    assert gap < 1e-2


def test_models_lists_the_cards_and_unknown_names_are_one_line(shipped):
    listed = runner.invoke(app, ["models", "--json"])
    assert listed.exit_code == 0
    (card,) = json.loads(listed.output)["models"]
    assert card["name"] == "tiny" and card["bytes"] > 0
    table = runner.invoke(app, ["models"], env={"COLUMNS": "200"})
    assert "emda:tiny" in table.output and "50.0" in table.output
    missing = runner.invoke(app, ["predict", "emda:nope", str(CROPS / "vnc/raw.tif"), "-o",
                                  str(shipped / "x.tif")])  # fmt: skip
    assert missing.exit_code == 1
    assert "emda:nope: no such pretrained model" in missing.output and "emda:tiny" in missing.output


def test_the_models_that_ship_load_and_have_cards():
    names = pretrained.names()
    if not names:
        pytest.skip("no pretrained models in this checkout")
    for name in names:
        checkpoint = load_checkpoint(f"emda:{name}")
        assert checkpoint.method == "ft"
        card = pretrained.card(name)
        assert card["training_data"] and card["licence"]
        assert 0 < card["scores"]["in_domain"]["iou"] <= 1


def test_a_shipped_model_is_never_an_output(shipped):
    copy = shipped / "copy"
    shutil.copytree(pretrained.HERE, copy)
    result = runner.invoke(app, ["export", "emda:tiny", "-o", str(pretrained.HERE / "tiny.pt"),
                                 "--overwrite"])  # fmt: skip
    assert result.exit_code == 1 and "would overwrite the input" in result.output
    assert (pretrained.HERE / "tiny.pt").read_bytes() == (copy / "tiny.pt").read_bytes()


def test_a_shipped_model_teaches_self_training_on_a_new_target(shipped):
    """The starting point for adapt: the student starts from the shipped model's weights."""
    result = adapt_on_crops(shipped / "st", "--opt", "teacher=emda:tiny", method="selftrain")
    assert result.exit_code == 0, result.output
    assert load_checkpoint(shipped / "st").method_options["teacher"] == "emda:tiny"


def test_info_json_describes_runs_and_volumes(shipped):
    run = json.loads(runner.invoke(app, ["info", "emda:tiny", "--json"]).output)
    assert run["schema"] == "emda-info/1" and run["kind"] == "run" and run["method"] == "ft"
    assert run["network"]["base_channels"] == 4
    volume = json.loads(runner.invoke(app, ["info", str(CROPS / "vnc/raw.tif"), "--json"]).output)
    assert volume["shape"] == [12, 320, 320] and volume["voxel_size_nm"] == [50.0, 4.6, 4.6]
