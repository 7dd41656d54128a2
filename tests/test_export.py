"""`emda export`: TorchScript loads without emda, ONNX agrees with PyTorch under
onnxruntime, a bioimage.io package passes bioimageio.core's model test."""

import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from emda.cli import app
from emda.export.network import load_network

from .conftest import CROPS, adapt_on_crops

runner = CliRunner()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "run"
    assert adapt_on_crops(out, target=None).exit_code == 0
    return out


def _export(run, output, *extra):
    return runner.invoke(app, ["export", str(run), "-o", str(output), *extra])


def _tile() -> np.ndarray:
    """A normalised (1, 1, 64, 96) crop of the bundled EM: not square, not the traced size."""
    import tifffile

    raw = tifffile.imread(CROPS / "vnc/raw.tif")[5, 100:164, 50:146].astype(np.float32)
    low, high = np.percentile(raw, [1, 99])
    return ((raw - low) / (high - low)).astype(np.float32)[None, None]


def _pytorch(run, tile: np.ndarray) -> np.ndarray:
    _, network = load_network(run)
    with torch.no_grad():
        return network(torch.from_numpy(tile)).numpy()


def test_torchscript_loads_and_predicts_without_emda(run, tmp_path):
    out = tmp_path / "model.pt"
    result = _export(run, out)
    assert result.exit_code == 0, result.output
    assert "torchscript" in result.output and "max difference from PyTorch" in result.output
    tile = tmp_path / "tile.npy"
    np.save(tile, _tile())
    script = (
        "import sys, json, numpy, torch\n"
        "sys.modules['emda'] = None  # any import of emda now fails\n"
        "extra = {'emda.json': ''}\n"
        f"model = torch.jit.load({str(out)!r}, _extra_files=extra)\n"
        f"x = torch.from_numpy(numpy.load({str(tile)!r}))\n"
        f"numpy.save({str(tmp_path / 'out.npy')!r}, model(x).detach().numpy())\n"
        "print(json.loads(extra['emda.json'])['normalization']['lower_percentile'])\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1.0"
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), _pytorch(run, _tile()), atol=1e-5)


def test_onnx_agrees_with_pytorch_under_onnxruntime(run, tmp_path):
    pytest.importorskip("onnx", reason="onnx absent (pip install 'emda[export]')")
    onnxruntime = pytest.importorskip("onnxruntime", reason="onnxruntime absent")
    out = tmp_path / "model.onnx"
    result = _export(run, out)
    assert result.exit_code == 0, result.output
    tile = np.concatenate([_tile(), _tile()[:, :, ::-1]])  # a batch of two
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (found,) = session.run(None, {"x": tile})
    np.testing.assert_allclose(found, _pytorch(run, tile.copy()), atol=1e-4)


def test_a_bioimageio_package_passes_the_model_test(run, tmp_path):
    pytest.importorskip("bioimageio.core", reason="bioimageio.core absent (a dev dependency)")
    out = tmp_path / "model.zip"
    result = _export(run, out, "--name", "emda test model", "--author", "A. Tester")
    assert result.exit_code == 0, result.output
    assert "bioimage.io model test passed" in " ".join(result.output.split())
    names = zipfile.ZipFile(out).namelist()
    assert "rdf.yaml" in names or "bioimageio.yaml" in names
    assert {"test_input.npy", "test_output.npy", "weights_torchscript.pt"} <= set(names)
    assert not list(tmp_path.glob(".*"))  # no partial package or work directory left


@pytest.mark.parametrize("output, extra, message", [
    ("model.h5", [], "give --format"),
    ("model.pt", ["--format", "keras"], "--format keras: not one of"),
    ("missing/model.pt", [], "does not exist"),
])  # fmt: skip
def test_bad_requests_are_one_line_errors_and_write_nothing(run, tmp_path, output, extra, message):
    result = _export(run, tmp_path / output, *extra)
    assert result.exit_code == 1 and message in result.output, result.output
    assert not (tmp_path / output).exists()


def test_an_existing_output_is_not_replaced_without_overwrite(run, tmp_path):
    out = tmp_path / "model.pt"
    out.write_text("keep me")
    result = _export(run, out)
    assert result.exit_code == 1 and "already exists" in result.output
    assert out.read_text() == "keep me"
