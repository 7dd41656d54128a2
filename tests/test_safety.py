"""Nothing lost, nothing silently wrong: one writer per output, half-made runs cleared,
operating-system failures and broken plugins reported in one line, resumed predictions
tied to the data they started on. Single bad inputs are in tests/test_error_matrix.py."""

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from emda.cli import app
from emda.io.writer import write_volume
from emda.safety.locks import lock_path, output_lock

from .conftest import CROPS, adapt_on_crops
from .test_registry import GOOD_PLUGIN

runner = CliRunner()


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("safety")
    assert adapt_on_crops(root / "run", "--iterations", "1").exit_code == 0
    raw = tifffile.imread(CROPS / "vnc/raw.tif")
    write_volume(root / "big.tif", np.concatenate([raw] * 3))  # 36 slices
    return root


def _predict(root: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "emda", "predict", str(root / "run"), str(root / "big.tif"),
            "--output", str(out), "--device", "cpu", "--threads", "1", "--quiet",
            "--tile-size", "128", "--batch-size", "1", *extra]  # fmt: skip


def _files(path: Path) -> dict[str, bytes]:
    if path.is_file():
        return {"": path.read_bytes()}
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize("suffix, second", [(".tif", "--overwrite"), (".zarr", "--resume")])
def test_a_second_writer_is_refused_and_the_first_finishes_as_if_alone(
    run, tmp_path, suffix, second
):
    whole, out = tmp_path / f"whole{suffix}", tmp_path / f"out{suffix}"
    assert subprocess.run(_predict(run, whole)).returncode == 0
    first = subprocess.Popen(_predict(run, out), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not lock_path(out).exists():  # the first holds the output
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.01)
    refused = runner.invoke(app, _predict(run, out, second)[3:])
    assert first.poll() is None, "the first finished before the second tried: use a larger volume"
    assert refused.exit_code == 1, refused.output
    (line,) = refused.output.strip().splitlines()
    assert line.startswith("error: ") and f"pid {first.pid}" in line and "emda predict" in line
    assert first.wait(timeout=300) == 0, first.communicate()
    assert _files(out) == _files(whole)  # byte for byte
    assert not lock_path(out).exists()


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path):
    out = tmp_path / "p.tif"
    code = f"from emda.safety.locks import output_lock\nwith output_lock({str(out)!r}):\n" \
           "    print('held', flush=True)\n    import time; time.sleep(600)\n"  # fmt: skip
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(Exception, match=f"pid {holder.pid}"), output_lock(out, "--output"):
        pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert lock_path(out).exists()  # a SIGKILL leaves the file, not the lock
    with output_lock(out, "--output"):
        assert json.loads(lock_path(out).read_text())["pid"] == os.getpid()
    assert not lock_path(out).exists()


def test_a_run_killed_before_it_saved_anything_does_not_block_a_plain_rerun(tmp_path):
    out = tmp_path / "run"
    out.mkdir()  # what SIGKILL before the first save leaves
    (out / "config.toml").write_text("[adapt]\n")
    (out / "log.jsonl").write_text('{"iteration": 1}\n')
    result = adapt_on_crops(out)
    assert result.exit_code == 0, result.output
    assert (out / "checkpoint.pt").exists()


def test_a_run_with_something_to_resume_still_needs_resume_or_overwrite(tmp_path):
    out = tmp_path / "run"
    assert adapt_on_crops(out).exit_code == 0
    again = adapt_on_crops(out)
    assert again.exit_code == 1 and "already holds a run" in again.output


def test_a_method_failing_in_its_loss_leaves_one_line_and_no_run(install_plugin, tmp_path):
    boom = GOOD_PLUGIN.replace('name = "meanfeat"', 'name = "boom"').replace(
        "terms = super().loss_terms(step)", "raise ZeroDivisionError('kaboom')"
    )
    install_plugin("emda_test_boom", boom)
    result = adapt_on_crops(tmp_path / "run", method="boom")
    assert result.exit_code == 1, result.output
    (line,) = result.output.strip().splitlines()
    assert "--method boom: failed at iteration 1 (ZeroDivisionError: kaboom)" in line
    assert not (tmp_path / "run").exists()
    assert list(tmp_path.iterdir()) == [tmp_path / "site-emda_test_boom"]  # no lock left


def test_a_plugin_calling_sys_exit_at_import_is_reported_not_fatal(install_plugin, tmp_path):
    install_plugin("emda_test_exits", "import sys\nsys.exit(3)\n")
    listed = runner.invoke(app, ["methods"])
    assert listed.exit_code == 0 and "emda_test_exits" in listed.output and "ft" in listed.output
    assert adapt_on_crops(tmp_path / "run").exit_code == 0


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/data/out")


def test_a_full_disk_during_predict_is_one_line_and_leaves_no_output(run, tmp_path, monkeypatch):
    monkeypatch.setattr("emda.inference.predict.run_block", _disk_full)  # writes each block
    out = tmp_path / "p.tif"
    result = runner.invoke(app, _predict(run, out)[3:])
    assert result.exit_code == 1
    assert result.output.strip() == "error: /data/out: no space left on the device"
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_during_adapt_is_one_line_and_leaves_no_run(tmp_path, monkeypatch):
    monkeypatch.setattr("emda.training.loop.save_state", _disk_full)
    result = adapt_on_crops(tmp_path / "run", "--iterations", "4", "--checkpoint-every", "2")
    assert result.exit_code == 1, result.output
    assert result.output.strip() == "error: /data/out: no space left on the device"
    assert list(tmp_path.iterdir()) == []


def test_an_unforeseen_failure_is_one_line_with_how_to_report_it(run, tmp_path, monkeypatch):
    def bug(*args, **kwargs):
        raise AttributeError("'NoneType' object has no attribute 'shape'")

    monkeypatch.setattr("emda.inference.predict._execute", bug)
    result = runner.invoke(app, _predict(run, tmp_path / "p.tif")[3:])
    assert result.exit_code == 70
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error: internal error (AttributeError:") and "EMDA_DEBUG=1" in line


def test_resume_refuses_an_input_whose_content_changed(run, tmp_path):
    raw = tifffile.imread(run / "big.tif")
    changed = tmp_path / "vol.tif"
    tifffile.imwrite(changed, raw)
    out = tmp_path / "p.zarr"
    cmd = _predict(run, out)
    cmd[cmd.index(str(run / "big.tif"))] = str(changed)
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    done = tmp_path / "p.emda-partial.zarr" / "emda_done.txt"
    deadline = time.monotonic() + 120
    while not done.exists() or done.read_text().count("\n") < 2:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    tifffile.imwrite(changed, raw[:, ::-1].copy())  # another volume, same path and shape
    result = runner.invoke(app, [*cmd[3:], "--resume"])
    assert result.exit_code == 1
    assert "made with other settings or inputs (the input's content)" in result.output


def test_a_users_own_files_in_the_run_directory_are_never_removed(install_plugin, tmp_path):
    out = tmp_path / "project"
    out.mkdir()
    (out / "config.toml").write_text("[tool.mine]\nkeep = true\n")  # not emda's
    (out / "notes.txt").write_text("mine")
    boom = GOOD_PLUGIN.replace('name = "meanfeat"', 'name = "boom2"').replace(
        "terms = super().loss_terms(step)", "raise ZeroDivisionError('kaboom')"
    )
    install_plugin("emda_test_boom2", boom)
    failed = adapt_on_crops(out, method="boom2")  # fails before anything is saved
    assert failed.exit_code == 1
    assert (out / "config.toml").read_text() == "[tool.mine]\nkeep = true\n"
    plain = adapt_on_crops(out)  # a user's config.toml is not a half-made run
    assert plain.exit_code == 1 and "already holds a run" in plain.output
    assert sorted(p.name for p in out.iterdir()) == ["config.toml", "notes.txt"]
