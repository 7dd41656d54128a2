"""Reduced precision (emda.precision): what auto picks, what is refused, and results that
stay within a stated tolerance of float32."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from emda import precision
from emda.cli import app
from emda.errors import EmdaError
from emda.inference.sliding_window import SlidingWindowPredictor
from emda.io.volume import open_volume
from emda.methods.alignment import coral, gaussian_mmd2
from emda.model.checkpoint import load_checkpoint
from emda.pretrained import resolve
from tests.conftest import CROPS

CPU = torch.device("cpu")
needs_bf16 = pytest.mark.skipif(
    not precision.cpu_has_bfloat16(), reason="this CPU has no bfloat16 instructions"
)


@pytest.fixture
def no_bf16(monkeypatch):
    """A CPU without bfloat16 or float16 instructions."""
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2"}))


@pytest.fixture
def with_bf16(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    monkeypatch.setattr(precision, "_mkldnn", lambda kind: kind == "bf16")


def test_auto_uses_bfloat16_only_where_the_cpu_has_it(no_bf16):
    assert precision.resolve_precision("auto", CPU, "predict") is None
    assert precision.resolve_precision("auto", CPU, "train") is None


def test_auto_on_a_cpu_with_bfloat16_trains_and_predicts_in_it(with_bf16):
    assert precision.resolve_precision("auto", CPU, "predict") is torch.bfloat16
    assert precision.resolve_precision("auto", CPU, "train") is torch.bfloat16
    assert precision.resolve_precision("bfloat16", CPU, "train") is torch.bfloat16
    assert precision.resolve_precision("float32", CPU, "predict") is None


def test_auto_on_cuda_predicts_in_float16_and_trains_in_float32():
    cuda = torch.device("cuda")
    assert precision.resolve_precision("auto", cuda, "predict") is torch.float16
    assert precision.resolve_precision("auto", cuda, "train") is None


def test_an_explicit_precision_the_cpu_lacks_is_refused(no_bf16):
    with pytest.raises(EmdaError, match=r"^--precision bfloat16: this CPU has no bfloat16"):
        precision.resolve_precision("bfloat16", CPU, "predict")
    with pytest.raises(EmdaError, match="--precision float16"):
        precision.resolve_precision("float16", CPU, "train")


def test_predict_refuses_an_unsupported_precision_and_writes_nothing(no_bf16, tmp_path):
    out = tmp_path / "p.tif"
    raw = str(CROPS / "vnc" / "raw.tif")
    result = CliRunner().invoke(
        app, ["predict", "emda:vnc", raw, "-o", str(out), "--precision", "bfloat16", "--quiet"]
    )
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "error: --precision bfloat16: this CPU has no bfloat16 arithmetic (use float32 or auto)"
    ]
    assert list(tmp_path.iterdir()) == []


def test_adapt_refuses_an_unsupported_precision_before_making_the_run(no_bf16, tmp_path, crops):
    args = ["adapt", "--source", str(crops / "epfl_train/raw.tif"), "--source-labels",
            str(crops / "epfl_train/labels.tif"), "--method", "ft", "--out", str(tmp_path / "run"),
            "--precision", "float16", "--iterations", "1", "--quiet"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "--precision float16: this CPU has no float16 arithmetic" in result.output
    assert not (tmp_path / "run").exists()


def test_alignment_statistics_stay_float32_under_autocast():
    """A covariance or kernel distance in bfloat16 would keep 3 significant digits; the
    discrepancies are computed in float32 whatever autocast the step runs under."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(256, 64, generator=g), torch.randn(256, 64, generator=g) + 0.05
    exact = coral(x, y), gaussian_mmd2(x, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cast = coral(x, y), gaussian_mmd2(x, y)
    for a, b in zip(exact, cast, strict=True):
        assert b.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-8)


@needs_bf16
def test_bfloat16_prediction_is_within_tolerance_of_float32():
    """Stated tolerance, on the bundled EPFL crop with the shipped EPFL model: every
    probability within 0.1 and on average within 0.002 (bfloat16 keeps 3 significant
    digits of each activation), masks (p >= 0.5) differing on under 0.5 % of the pixels."""
    model = load_checkpoint(resolve("emda:epfl"))
    raw = open_volume(CROPS / "epfl_test" / "raw.tif")
    image = model.normalization.fit(raw).apply(raw.read(raw.shape[0] // 2))
    full = SlidingWindowPredictor(model.build_model(), CPU).predict_slice(image)
    reduced = SlidingWindowPredictor(model.build_model(), CPU, precision=torch.bfloat16)
    half = reduced.predict_slice(image)
    assert half.dtype == np.float32
    assert np.abs(half - full).max() < 0.1
    assert np.abs(half - full).mean() < 0.002
    assert ((half >= 0.5) != (full >= 0.5)).mean() < 0.005


@needs_bf16
def test_a_run_records_the_precision_it_trained_in(tmp_path, crops, tiny_train):
    run = tmp_path / "run"
    args = ["adapt", "--source", str(crops / "epfl_train/raw.tif"), "--source-labels",
            str(crops / "epfl_train/labels.tif"), "--method", "ft", "--out", str(run),
            "--precision", "bfloat16", *tiny_train]  # fmt: skip
    assert CliRunner().invoke(app, args).exit_code == 0
    training = load_checkpoint(run).training
    assert training["precision"] == "bfloat16"
    assert training["precision_used"] == "bfloat16"
    shown = CliRunner().invoke(app, ["info", str(run), "--json"])
    assert "bfloat16" in json.dumps(json.loads(shown.output))


def test_predict_says_which_precision_it_computed_in(tmp_path):
    raw = str(CROPS / "vnc" / "raw.tif")
    result = CliRunner().invoke(
        app, ["predict", "emda:vnc", raw, "-o", str(tmp_path / "p.tif"), "--precision", "float32"]
    )
    assert result.exit_code == 0, result.output
    assert "(xy planes, float32," in " ".join(result.output.split())
