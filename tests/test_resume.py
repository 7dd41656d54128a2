"""Interrupted training: SIGKILL and Ctrl-C at several points, then --resume."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from emda.cli import app
from emda.training.state import read_log

from .conftest import CROPS

ITERATIONS = 120
ARGS = ["adapt", "--source", str(CROPS / "epfl_train/raw.tif"),
        "--source-labels", str(CROPS / "epfl_train/labels.tif"),
        "--target", str(CROPS / "vnc/raw.tif"), "--method", "dann",
        "--iterations", str(ITERATIONS), "--checkpoint-every", "10", "--batch-size", "2",
        "--patch-size", "32", "--base-channels", "4", "--device", "cpu",
        "--threads", "1", "--quiet", "--seed", "3"]  # fmt: skip


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _log(run):
    return read_log(run)  # complete lines only: the run may be writing one right now


def _start_and_stop(run, sig: int, after_lines: int, args=ARGS) -> subprocess.Popen:
    """Start a run in a subprocess and send ``sig`` once ``after_lines`` iterations are logged."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "emda", *args, "--out", str(run)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while len(_log(run)) < after_lines:
        assert proc.poll() is None, f"finished before the signal: {proc.communicate()}"
        assert time.monotonic() < deadline, "run did not progress"
        time.sleep(0.005)
    proc.send_signal(sig)
    proc.wait(timeout=120)
    return proc


def _weights(run):
    return torch.load(run / "checkpoint.pt", weights_only=True)


def kill_resume_matches_whole(tmp_path: Path, args: list[str], after_lines: int = 47) -> Path:
    """Train ``args`` whole, then again killed (SIGKILL) after ``after_lines`` iterations
    and resumed; assert both give the same weights. Returns the whole run's directory."""
    whole = tmp_path / "whole"
    result = CliRunner().invoke(app, [*args, "--out", str(whole)])
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    proc = _start_and_stop(run, signal.SIGKILL, after_lines, args)
    assert proc.returncode == -signal.SIGKILL
    result = CliRunner().invoke(app, [*args, "--out", str(run), "--resume"])
    assert result.exit_code == 0, result.output
    for name, value in _weights(whole)["state_dict"].items():
        torch.testing.assert_close(_weights(run)["state_dict"][name], value, msg=name)
    return whole


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run = tmp_path_factory.mktemp("uninterrupted") / "run"
    result = CliRunner().invoke(app, [*ARGS, "--out", str(run)])
    assert result.exit_code == 0, result.output
    return _weights(run)


@pytest.mark.parametrize("after_lines", [13, 47, 101])
def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path, uninterrupted, after_lines):
    run = tmp_path / "run"
    proc = _start_and_stop(run, signal.SIGKILL, after_lines)
    assert proc.returncode == -signal.SIGKILL
    # whatever was on disk at the kill is complete: both files load
    saved = torch.load(run / "state.pt", weights_only=True)
    assert saved["iteration"] % 10 == 0 and saved["iteration"] <= len(_log(run))
    assert _weights(run)["iteration"] == saved["iteration"]

    (run / ".checkpoint.pt.0badf00d.tmp").write_bytes(b"half")  # as a kill mid-save leaves
    result = CliRunner().invoke(app, [*ARGS, "--out", str(run), "--resume"])
    assert result.exit_code == 0, result.output
    final = _weights(run)
    assert final["iteration"] == ITERATIONS
    assert [r["iteration"] for r in _log(run)] == list(range(1, ITERATIONS + 1))
    assert not list(run.glob(".*tmp")) and not (run / "state.pt").exists()
    for name, value in uninterrupted["state_dict"].items():
        torch.testing.assert_close(final["state_dict"][name], value, msg=name)


def test_ctrl_c_saves_the_state_and_says_how_to_resume(tmp_path, uninterrupted):
    run = tmp_path / "run"
    proc = _start_and_stop(run, signal.SIGINT, 25)
    _, err = proc.communicate()
    assert proc.returncode == 130, err
    assert "--resume" in err and "Traceback" not in err
    stopped_at = torch.load(run / "state.pt", weights_only=True)["iteration"]
    assert stopped_at == len(_log(run))  # stopped cleanly at the end of an iteration
    result = CliRunner().invoke(app, [*ARGS, "--out", str(run), "--resume"])
    assert result.exit_code == 0, result.output
    for name, value in uninterrupted["state_dict"].items():
        torch.testing.assert_close(_weights(run)["state_dict"][name], value, msg=name)


def test_resume_refuses_what_it_cannot_continue(tmp_path):
    run = tmp_path / "run"
    runner = CliRunner()
    fresh = runner.invoke(app, [*ARGS, "--out", str(run), "--resume"])
    assert fresh.exit_code == 1 and "has no saved state" in fresh.output
    _start_and_stop(run, signal.SIGKILL, 25)
    changed = runner.invoke(app, [*ARGS, "--out", str(run), "--resume", "--lr", "0.01"])
    assert changed.exit_code == 1 and "different settings (lr: 0.001 then, 0.01 now)" in (
        changed.output
    )
    both = runner.invoke(app, [*ARGS, "--out", str(run), "--resume", "--overwrite"])
    assert both.exit_code == 1 and "contradict" in both.output
    assert runner.invoke(app, [*ARGS, "--out", str(run), "--resume"]).exit_code == 0
    done = runner.invoke(app, [*ARGS, "--out", str(run), "--resume"])
    assert done.exit_code == 1 and "finished run" in done.output


def test_finetune_resumes_too(tmp_path, uninterrupted):
    base = tmp_path / "base"
    assert CliRunner().invoke(app, [*ARGS, "--out", str(base), "--iterations", "2"]).exit_code == 0
    args = [sys.executable, "-m", "emda", "finetune", str(base), "--target",
            str(CROPS / "vnc/raw.tif"), "--target-labels", str(CROPS / "vnc/labels.tif"),
            "--iterations", "80", "--checkpoint-every", "5", "--batch-size", "2",
            "--patch-size", "32", "--device", "cpu", "--threads", "1", "--quiet",
            "--out", str(tmp_path / "ft")]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    while len(_log(tmp_path / "ft")) < 20:
        assert proc.poll() is None
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = subprocess.run([*args, "--resume"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert [r["iteration"] for r in _log(tmp_path / "ft")] == list(range(1, 81))


def _stopped_as_before(run: Path, setting: str) -> None:
    """A killed run whose saved state lacks ``setting``, as emda before it existed saved it."""
    import json

    _start_and_stop(run, signal.SIGKILL, 25)
    state = torch.load(run / "state.pt", weights_only=True)
    signature = json.loads(state["signature"])
    del signature["training"][setting]
    state["signature"] = json.dumps(signature, sort_keys=True)
    torch.save(state, run / "state.pt")


def test_a_state_saved_before_a_training_setting_existed_resumes_with_its_default(tmp_path):
    run = tmp_path / "run"
    _stopped_as_before(run, "amplitude_mix")
    mixed = CliRunner().invoke(app, [*ARGS, "--out", str(run), "--resume", "--amplitude-mix", "1"])
    assert mixed.exit_code == 1 and "amplitude_mix: 0.0 then, 1.0 now" in mixed.output
    assert CliRunner().invoke(app, [*ARGS, "--out", str(run), "--resume"]).exit_code == 0


def test_a_state_saved_with_a_removed_setting_off_still_resumes(tmp_path):
    """--sharpness, --smooth-objects, --gamma and --blur are gone; a run saved with them at 0 (what
    every run without them did) resumes as before. So does one saved with --amp, which
    --precision replaced."""
    import json

    run = tmp_path / "run"
    _start_and_stop(run, signal.SIGKILL, 25)
    state = torch.load(run / "state.pt", weights_only=True)
    signature = json.loads(state["signature"])
    signature["training"].update(sharpness=0.0, smooth_objects=0.0, gamma=0.0, blur=0.0, amp=True)
    del signature["training"]["precision"]
    state["signature"] = json.dumps(signature, sort_keys=True)
    torch.save(state, run / "state.pt")
    resumed = CliRunner().invoke(app, [*ARGS, "--out", str(run), "--resume"])
    assert resumed.exit_code == 0, resumed.output


def test_a_run_resumed_where_auto_precision_differs_says_so_and_records_both(tmp_path, caplog):
    """A cluster job requeued onto a node with(out) bfloat16 instructions: --precision
    auto resolves otherwise there. The run goes on in this machine's precision, says so
    once, and its checkpoint records both."""
    import logging

    from emda.model.checkpoint import load_checkpoint
    from emda.precision import name, resolve_precision

    here = name(resolve_precision("auto", torch.device("cpu"), "train"))
    there = "bfloat16" if here == "float32" else "float32"
    run = tmp_path / "run"
    _start_and_stop(run, signal.SIGKILL, 25)
    state = torch.load(run / "state.pt", weights_only=True)
    state["precision_used"] = there  # as the node that started it saved it
    torch.save(state, run / "state.pt")
    with caplog.at_level(logging.WARNING, logger="emda"):
        resumed = CliRunner().invoke(app, [*ARGS, "--out", str(run), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    stopped = state["iteration"]
    assert f"trained in {there} up to iteration {stopped}" in caplog.text
    used = load_checkpoint(run).training["precision_used"]
    assert used == f"{there} to iteration {stopped}, then {here}"
