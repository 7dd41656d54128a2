import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from emda.cli import app
from emda.io.volume import open_volume
from tests.conftest import adapt_on_crops

runner = CliRunner()
COMMANDS = ["adapt", "finetune", "predict", "evaluate", "methods", "demo", "info"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_readable_help(command):
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One tiny adapt run on the bundled EPFL crop, shared by the tests below."""
    run = tmp_path_factory.mktemp("cli") / "run"
    result = adapt_on_crops(run, "--iterations", "4", "--checkpoint-every", "2")
    assert result.exit_code == 0, result.output
    return run


def test_adapt_writes_a_complete_run_directory(trained_run):
    names = {p.name for p in trained_run.iterdir()}
    assert {"checkpoint.pt", "log.jsonl", "config.toml", "training_curve.png"} <= names
    assert "state.pt" not in names  # intermediate state is removed when the run finishes
    log = [json.loads(line) for line in (trained_run / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in log] == [1, 2, 3, 4] and all("seg" in r for r in log)


def test_predict_then_evaluate_end_to_end(trained_run, crops, tmp_path):
    prob, mask = tmp_path / "prob.tif", tmp_path / "mask.zarr"
    result = runner.invoke(
        app,
        [
            "predict",
            str(trained_run),
            str(crops / "vnc/raw.tif"),
            "--output",
            str(prob),
            "--mask",
            str(mask),
            "--tile-size",
            "128",
            "--device",
            "cpu",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    p, m = open_volume(prob), open_volume(mask)
    assert p.shape == m.shape == (12, 320, 320) and p.dtype == np.uint8
    assert p.voxel_size == pytest.approx((50.0, 4.6, 4.6))
    np.testing.assert_array_equal(m.read(), (p.read() >= 128).astype(np.uint8))

    out_json, out_csv = tmp_path / "scores.json", tmp_path / "scores.csv"
    result = runner.invoke(
        app,
        [
            "evaluate",
            str(prob),
            str(mask),
            "--labels",
            str(crops / "vnc/labels.tif"),
            "--z-range",
            "4:12",
            "--json",
            str(out_json),
            "--csv",
            str(out_csv),
            "--per-slice",
        ],
    )
    assert result.exit_code == 0, result.output
    scores = json.loads(out_json.read_text())
    assert len(scores) == 2 and scores[0]["z_range"] == [4, 12]
    assert scores[0]["iou"] == pytest.approx(scores[1]["iou"])  # same masks, two encodings
    assert len(scores[0]["per_slice"]) == 8 and scores[0]["schema"] == "emda-evaluate/1"
    assert {"z", "iou", "tp", "fp", "fn", "tn"} <= set(scores[0]["per_slice"][0])
    assert out_csv.read_text().count("\n") == 1 + 2 * 9


def test_finetune_uses_the_chosen_fraction_of_slices(trained_run, crops, tmp_path):
    result = runner.invoke(
        app,
        [
            "finetune",
            str(trained_run),
            "--target",
            str(crops / "vnc/raw.tif"),
            "--target-labels",
            str(crops / "vnc/labels.tif"),
            "--fraction",
            "0.25",
            "--out",
            str(tmp_path / "ft"),
            "--iterations",
            "2",
            "--batch-size",
            "2",
            "--patch-size",
            "64",
            "--device",
            "cpu",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    from emda.model.checkpoint import load_checkpoint

    ckpt = load_checkpoint(tmp_path / "ft")
    assert ckpt.training["fraction"] == 0.25 and len(ckpt.training["labelled_slices"]) == 3
    assert ckpt.model_config.base_channels == 4  # the base run's network


def test_config_file_supplies_options_and_command_line_wins(crops, tmp_path, tiny_train):
    cfg = tmp_path / "run.toml"
    cfg.write_text(
        f'[adapt]\nsource = "{crops / "epfl_train/raw.tif"}"\n'
        f'source-labels = "{crops / "epfl_train/labels.tif"}"\n'
        f"iterations = 50\nseed = 3\n"
    )
    result = runner.invoke(
        app, ["adapt", "--config", str(cfg), "--out", str(tmp_path / "r"), "--method", "ft",
              *tiny_train]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    saved = (tmp_path / "r/config.toml").read_text()
    assert "iterations = 3" in saved and "seed = 3" in saved


def test_config_file_with_unknown_setting_is_a_usage_error(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[adapt]\niteratoins = 5\n")
    result = runner.invoke(app, ["adapt", "--config", str(cfg)])
    assert result.exit_code == 2 and "iteratoins" in result.output


def test_user_errors_are_one_line_and_create_nothing(tmp_path):
    result = adapt_on_crops(tmp_path / "r", source=tmp_path / "nope.tif")
    assert result.exit_code == 1
    assert result.output.strip().count("\n") == 0 and "nope.tif: no such file" in result.output
    assert not (tmp_path / "r").exists()


def test_unknown_option_of_a_method_is_an_error(tmp_path):
    result = adapt_on_crops(tmp_path / "r", "--opt", "lambda=1")
    assert result.exit_code == 1
    assert "--opt lambda: unknown option for method 'ft'" in result.output


def test_existing_outputs_are_not_overwritten_without_flag(trained_run, crops, tmp_path):
    existing = tmp_path / "prob.tif"
    existing.write_bytes(b"precious")
    result = runner.invoke(
        app,
        [
            "predict",
            str(trained_run),
            str(crops / "vnc/raw.tif"),
            "--output",
            str(existing),
            "--device",
            "cpu",
            "--quiet",
        ],
    )
    assert result.exit_code == 1 and "--overwrite" in result.output
    assert existing.read_bytes() == b"precious"


def test_methods_json_is_scriptable():
    result = runner.invoke(app, ["methods", "--json"])
    data = json.loads(result.output)
    assert any(m["name"] == "ft" and m["plugin"] == "ft" for m in data["methods"])


def test_evaluate_refuses_mismatched_shapes(crops):
    result = runner.invoke(
        app,
        [
            "evaluate",
            str(crops / "vnc/labels.tif"),
            "--labels",
            str(crops / "epfl_test/labels.tif"),
        ],
    )
    assert result.exit_code == 1 and "differs from ground truth" in result.output


def test_info_describes_volumes_and_runs(trained_run, crops):
    vol = runner.invoke(app, ["info", str(crops / "vnc/raw.tif")])
    assert vol.exit_code == 0 and "(12, 320, 320)" in vol.output and "4.6" in vol.output
    run = runner.invoke(app, ["info", str(trained_run)])
    assert run.exit_code == 0 and "4 of 4" in run.output and "ft" in run.output
    assert "last 4 iterations (mean)" in run.output and "seg " in run.output
    # what a bit-for-bit rerun on the CPU needs besides the settings
    assert f"torch {torch.__version__}" in run.output and "CPU threads" in run.output
    assert torch.backends.cpu.get_cpu_capability() in run.output
    missing = runner.invoke(app, ["info", "no_such_run"])
    assert missing.exit_code == 1 and "no_such_run: no such file or directory" in missing.output


def test_a_recalibrated_model_reports_the_torch_and_threads_of_its_training_run():
    from emda.cli.describe import computed_with as _computed_with

    trained = {"command": "adapt", "torch_version": "2.13.0", "cpu_threads": 2,
               "cpu_capability": "AVX512"}  # fmt: skip
    said = "torch 2.13.0, 2 CPU threads (AVX512)"
    assert _computed_with(trained) == said
    assert _computed_with({"command": "recalibrate", "base_training": trained}) == said
    capped = {**trained, "onednn_max_cpu_isa": "AVX2"}  # an AVX-512 CPU repeating AVX2 runs
    assert _computed_with(capped) == "torch 2.13.0, 2 CPU threads (AVX512, oneDNN at most AVX2)"
    del trained["cpu_capability"]  # recorded since a later version than the threads
    assert _computed_with(trained) == "torch 2.13.0, 2 CPU threads"
    assert _computed_with({"command": "adapt"}) is None  # runs older than the record


def test_log_summary_averages_terms_and_metrics_over_the_last_iterations():
    from emda.training.state import log_summary

    records = [{"iteration": i, "loss": float(i), "seg": 2.0 * i, "lr": 1e-3, "seconds": i,
                "metrics": {"domain_accuracy4": i / 10}} for i in range(1, 11)]  # fmt: skip
    assert log_summary(records, last=2) == pytest.approx(
        {"loss": 9.5, "seg": 19.0, "domain_accuracy4": 0.95}
    )


def test_a_missing_target_is_reported_even_when_the_method_ignores_it(tmp_path):
    result = adapt_on_crops(tmp_path / "r", target=tmp_path / "typo.tif")
    assert result.exit_code == 1 and "--target" in result.output and "typo.tif" in result.output
    assert not (tmp_path / "r").exists()


def test_the_seed_fixes_the_whole_run(tmp_path):
    import torch

    def weights(name, seed):
        assert adapt_on_crops(tmp_path / name, "--seed", seed, method="dann").exit_code == 0
        return torch.load(tmp_path / name / "checkpoint.pt", weights_only=True)["state_dict"]

    a, b, c = weights("a", "1"), weights("b", "1"), weights("c", "2")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_help_paragraphs_wrap_at_the_terminal_not_at_the_source_lines():
    """A docstring wrapped at 100 columns must not break mid-sentence at 80 columns."""
    result = CliRunner().invoke(app, ["ensemble", "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0
    lines = [line.strip() for line in result.output.splitlines()]
    # the source breaks the line after "average the"; wrapped at 80 columns it stood alone
    assert "probability maps voxel by voxel; masks given as inputs count as 0/1 votes." in lines
    for info in app.registered_commands:
        paragraphs = (info.help or "").split("\n\n")[1:]
        assert all("\n" not in p for p in paragraphs), info.callback.__name__


def test_a_run_records_a_onednn_instruction_cap_only_when_one_is_set(monkeypatch):
    from emda.training.run_dir import onednn_isa_cap

    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    assert onednn_isa_cap() is None  # uncapped runs keep the record they had
    monkeypatch.setenv("DNNL_MAX_CPU_ISA", "avx2")  # the old name counts too
    assert onednn_isa_cap() == "AVX2"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE")  # the new name wins
    assert onednn_isa_cap() == "AVX512_CORE"
