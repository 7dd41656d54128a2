"""An interrupted `emda predict` resumes, skipping finished slices, with the same result."""

import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from emda.cli import app
from emda.io.writer import write_volume

from .conftest import CROPS, adapt_on_crops


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict_resume")
    assert adapt_on_crops(root / "run", "--iterations", "1").exit_code == 0
    raw = tifffile.imread(CROPS / "vnc/raw.tif")
    write_volume(root / "big.zarr", np.concatenate([raw] * 3))  # 36 slices
    for suffix in (".zarr", ".tif"):  # the uninterrupted results to compare with
        assert subprocess.run(_predict(root, root / f"whole{suffix}")).returncode == 0
    return root


def _predict(setup, out, *extra):
    return [sys.executable, "-m", "emda", "predict", str(setup / "run"), str(setup / "big.zarr"),
            "--output", str(out), "--mask", str(out.with_name(out.stem + "_mask" + out.suffix)),
            "--device", "cpu", "--threads", "1", "--quiet", "--tile-size", "128",
            "--batch-size", "1", *extra]  # fmt: skip


def _stop_after(cmd, done_file, slices: int, sig) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not done_file.exists() or done_file.read_text().count("\n") < slices:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(sig)
    proc.wait(timeout=60)
    return proc


@pytest.mark.parametrize("suffix", [".zarr", ".tif"])
@pytest.mark.parametrize("slices", [3, 29])
def test_killed_prediction_resumes_to_the_uninterrupted_result(setup, tmp_path, suffix, slices):
    whole = setup / f"whole{suffix}"
    out = tmp_path / f"out{suffix}"
    partial = tmp_path / ("out.tif.emda-partial.zarr" if suffix == ".tif" else
                          "out.emda-partial.zarr")  # fmt: skip
    proc = _stop_after(_predict(setup, out), partial / "emda_done.txt", slices, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()  # nothing under the final name until every slice is written
    evaluate = CliRunner().invoke(
        app, ["evaluate", str(partial), "--labels", str(setup / "big.zarr")]
    )
    assert evaluate.exit_code == 1 and "unfinished output" in evaluate.output

    refused = subprocess.run(_predict(setup, out), capture_output=True, text=True)
    assert refused.returncode == 1 and "--resume" in refused.stderr
    resumed = subprocess.run(_predict(setup, out, "--resume"), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert not partial.exists()
    from emda.io.volume import open_volume

    for a, b in ((whole, out), (whole.with_name(f"whole_mask{suffix}"),
                                out.with_name(f"out_mask{suffix}"))):  # fmt: skip
        np.testing.assert_array_equal(open_volume(a).read(), open_volume(b).read())


def test_resume_with_other_settings_is_refused_and_ctrl_c_says_how(setup, tmp_path):
    out = tmp_path / "out.zarr"
    proc = _stop_after(_predict(setup, out), tmp_path / "out.emda-partial.zarr/emda_done.txt", 2,
                       signal.SIGINT)  # fmt: skip
    _, err = proc.communicate()
    assert proc.returncode == 130 and "--resume" in err and "Traceback" not in err
    other = subprocess.run(_predict(setup, out, "--resume", "--overlap", "0.5"),
                           capture_output=True, text=True)  # fmt: skip
    assert other.returncode == 1 and "other settings" in other.stderr
    again = subprocess.run(_predict(setup, out, "--overwrite"), capture_output=True, text=True)
    assert again.returncode == 0 and out.exists()


def test_an_output_begun_in_float32_is_not_resumed_in_bfloat16(setup, tmp_path):
    from emda.precision import cpu_has_bfloat16

    if not cpu_has_bfloat16():
        pytest.skip("this CPU has no bfloat16 instructions")
    out = tmp_path / "out.zarr"
    done = tmp_path / "out.emda-partial.zarr/emda_done.txt"
    proc = _stop_after(_predict(setup, out, "--precision", "float32"), done, 2, signal.SIGINT)
    assert proc.returncode == 130
    mixed = subprocess.run(_predict(setup, out, "--resume", "--precision", "bfloat16"),
                           capture_output=True, text=True)  # fmt: skip
    assert mixed.returncode == 1 and "other settings" in mixed.stderr
    assert "precision" in mixed.stderr
    same = subprocess.run(_predict(setup, out, "--resume", "--precision", "float32"),
                          capture_output=True, text=True)  # fmt: skip
    assert same.returncode == 0, same.stderr
