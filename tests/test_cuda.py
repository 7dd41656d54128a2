"""The CUDA path: reduced-precision training of every built-in method, target batch-norm
re-estimation, prediction that agrees with the CPU, checkpoints that move between devices,
and resuming a run on the GPU. Skipped (with the reason) where no CUDA GPU is present."""

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from emda.cli import app
from emda.io.volume import open_volume
from emda.training.state import read_log

from .conftest import CROPS, adapt_on_crops

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")

GPU = ["--device", "cuda"]


@pytest.mark.parametrize("precision", ["float16", "bfloat16"])
@pytest.mark.parametrize("method", ["ft", "mmd", "coral", "dann", "ynet", "meanteacher"])
def test_every_method_trains_with_reduced_precision(tmp_path, method, precision):
    # float16 autocast (with loss scaling) or bfloat16 when asked for: each distance and
    # head must stay finite under it, and the run ends with target batch-norm statistics
    if precision == "bfloat16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    out = tmp_path / method
    result = adapt_on_crops(out, *GPU, "--iterations", "20", "--batch-size", "4",
                            "--precision", precision, method=method)  # fmt: skip
    assert result.exit_code == 0, result.output
    log = read_log(out)
    assert len(log) == 20
    assert all(np.isfinite(r["loss"]) for r in log), log[-1]
    # a checkpoint written on the GPU loads on a machine without one
    state = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)
    tensors = [v for v in state["state_dict"].values() if isinstance(v, torch.Tensor)]
    assert tensors and all(t.device.type == "cpu" for t in tensors)


def test_selftrain_on_the_gpu_learns_from_a_teacher_trained_on_the_cpu(tmp_path):
    teacher = tmp_path / "teacher"  # the checkpoint holds CPU tensors; the head must move
    assert adapt_on_crops(teacher, "--device", "cpu", method="ft").exit_code == 0
    out = tmp_path / "student"
    result = adapt_on_crops(out, *GPU, "--iterations", "20", "--batch-size", "4",
                            "--opt", f"teacher={teacher}", method="selftrain")  # fmt: skip
    assert result.exit_code == 0, result.output
    log = read_log(out)
    assert len(log) == 20 and all(np.isfinite(r["pseudo_label"]) for r in log), log[-1]


def test_gpu_prediction_agrees_with_cpu(tmp_path):
    run = tmp_path / "run"
    assert adapt_on_crops(run, *GPU, "--iterations", "30", method="ynet").exit_code == 0
    runner = CliRunner()
    probs = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / f"{device}.tif"
        result = runner.invoke(app, ["predict", str(run), str(CROPS / "vnc/raw.tif"), "--output",
                                     str(out), "--device", device, "--tile-size", "128",
                                     "--quiet"])  # fmt: skip
        assert result.exit_code == 0, result.output
        probs[device] = open_volume(out).read().astype(np.int16)
    diff = np.abs(probs["cpu"] - probs["cuda"])
    # float16 on the GPU vs float32 on the CPU: a few grey levels of 255 at most
    assert diff.mean() < 0.5 and np.percentile(diff, 99.9) <= 4, (diff.mean(), diff.max())
    agree = ((probs["cpu"] >= 128) == (probs["cuda"] >= 128)).mean()
    assert agree > 0.999, agree


def test_resume_on_gpu_matches_an_uninterrupted_run(tmp_path):
    # a run stopped by Ctrl-C on the GPU resumes from state.pt (CUDA RNG and AMP scaler
    # included) and ends where an uninterrupted run ends
    common = [*GPU, "--iterations", "40", "--checkpoint-every", "10", "--no-target-bn"]
    full = tmp_path / "full"
    assert adapt_on_crops(full, *common, method="ynet").exit_code == 0

    import emda.training.loop
    from emda.interrupt import StopOnInterrupt

    class StopAfter25(StopOnInterrupt):  # the request a Ctrl-C makes, after iteration 25
        checks = 0

        @property
        def requested(self) -> bool:
            StopAfter25.checks += 1
            return StopAfter25.checks > 25

        @requested.setter
        def requested(self, value: bool) -> None:
            pass

    part = tmp_path / "part"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(emda.training.loop, "StopOnInterrupt", StopAfter25)
        stopped = adapt_on_crops(part, *common, method="ynet")
    assert stopped.exit_code == 130, stopped.output
    resumed = adapt_on_crops(part, *common, "--resume", method="ynet")
    assert resumed.exit_code == 0, resumed.output
    assert [r["iteration"] for r in read_log(part)] == list(range(1, 41))
    a = torch.load(full / "checkpoint.pt", map_location="cpu", weights_only=True)["state_dict"]
    b = torch.load(part / "checkpoint.pt", map_location="cpu", weights_only=True)["state_dict"]
    # cuDNN picks kernels per run, so equal up to float rounding rather than bit for bit
    for name in a:
        if a[name].is_floating_point():
            assert torch.allclose(a[name], b[name], atol=1e-3, rtol=1e-3), name


def test_recalibrate_on_gpu(tmp_path):
    run = tmp_path / "run"
    assert adapt_on_crops(run, *GPU, "--no-target-bn", method="mmd").exit_code == 0
    out = tmp_path / "bn"
    target = str(CROPS / "vnc/raw.tif")
    result = CliRunner().invoke(app, ["recalibrate", str(run), "--target", target, "--out",
                                      str(out), *GPU])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert Path(out / "checkpoint.pt").exists()
