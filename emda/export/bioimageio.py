"""A bioimage.io model package (spec 0.5) of a run's network, for the model zoo, ilastik,
deepImageJ and BiaPy.

The package holds TorchScript weights (and ONNX ones converted from them when the onnx
package is present), a test input from the bundled EM crop or ``sample`` with the output
these weights give for it, a cover, a README and the citation of the method. Its
preprocessing is ``scale_range`` at the run's percentiles, computed per sample over y
and x: emda computes them over the whole volume, which a tile-by-tile consumer cannot,
and the two agree when a slice's intensities spread like its volume's (docs/export.md).
The description is built and checked with bioimageio.spec; the command then runs
bioimageio.core's model test on the written package when bioimageio.core is installed.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from emda import __version__
from emda.errors import EmdaError
from emda.export.formats import ONNX_OPSET, export_onnx, export_torchscript
from emda.export.network import ProbabilityNetwork
from emda.model.checkpoint import Checkpoint

EPS = 1e-6  # scale_range's default, used for the test output too
CITATION = (
    "Roels, J., Hennies, J., Saeys, Y., Philips, W., Kreshuk, A. Domain adaptive "
    "segmentation in volume electron microscopy imaging. ISBI 2019."
)
CITATION_DOI = "10.1109/ISBI.2019.8759383"
TAGS = ["electron-microscopy", "mitochondria", "segmentation", "2d", "unet",
        "domain-adaptation", "emda"]  # fmt: skip
DEFAULT_SAMPLE = Path(__file__).resolve().parents[1] / "demo_data" / "vnc" / "raw.tif"


def test_tile(checkpoint: Checkpoint, sample: str | Path | None, size: int = 256) -> np.ndarray:
    """The central ``size`` x ``size`` crop of the middle slice of ``sample``, raw values
    as float32, shape (1, 1, size, size); smaller images give their largest multiple."""
    from emda.io.volume import open_volume

    volume = open_volume(sample or DEFAULT_SAMPLE)
    _, h, w = volume.shape
    multiple = checkpoint.model_config.divisor
    side = min(size, h - h % multiple, w - w % multiple)
    if side < multiple:
        raise EmdaError(f"--sample {sample}: smaller than {multiple} x {multiple} pixels")
    y, x = (h - side) // 2, (w - side) // 2
    tile = volume.read(volume.shape[0] // 2, slice(y, y + side), slice(x, x + side))
    return np.asarray(tile, np.float32)[None, None]


def scale_range(tile: np.ndarray, checkpoint: Checkpoint) -> np.ndarray:
    """bioimage.io's scale_range over y and x of each sample, as the package declares."""
    norm = checkpoint.normalization
    low, high = np.percentile(tile, [norm.lower_percentile, norm.upper_percentile],
                              axis=(2, 3), keepdims=True)  # fmt: skip
    return ((tile - low) / (high - low + EPS)).astype(np.float32)


def export_bioimageio(
    checkpoint: Checkpoint,
    network: ProbabilityNetwork,
    output: Path,
    *,
    name: str,
    authors: list[str],
    license_id: str,
    sample: str | Path | None = None,
) -> list[str]:
    """Write the package ``output`` (a .zip); returns the weight formats it holds."""
    from bioimageio.spec import save_bioimageio_package
    from bioimageio.spec.model import v0_5 as spec

    tile = test_tile(checkpoint, sample)
    with torch.no_grad():
        expected = network(torch.from_numpy(scale_range(tile, checkpoint))).numpy()
    with tempfile.TemporaryDirectory(prefix=".emda-export-", dir=output.parent) as tmp:
        work = Path(tmp)
        np.save(work / "test_input.npy", tile)
        np.save(work / "test_output.npy", expected)
        _cover(tile[0, 0], expected[0, 0], work / "cover.png")
        (work / "README.md").write_text(_readme(checkpoint, name))
        export_torchscript(checkpoint, network, work / "weights_torchscript.pt")
        weights = {"torchscript": spec.TorchscriptWeightsDescr(
            source=work / "weights_torchscript.pt",
            pytorch_version=spec.Version(torch.__version__.split("+")[0]))}  # fmt: skip
        try:
            export_onnx(checkpoint, network, work / "weights.onnx")
            weights["onnx"] = spec.OnnxWeightsDescr(
                source=work / "weights.onnx", opset_version=ONNX_OPSET, parent="torchscript"
            )
        except EmdaError:  # no onnx package: TorchScript alone is a complete package
            pass
        description = spec.ModelDescr(
            name=name,
            description="Mitochondria segmentation of volume EM, slice by slice (2D U-Net), "
            f"trained with emda ({checkpoint.method}).",
            authors=[spec.Author(name=a) for a in authors],
            cite=[spec.CiteEntry(text=CITATION, doi=spec.Doi(CITATION_DOI))],
            license=license_id,
            documentation=spec.FileDescr(source=work / "README.md"),
            covers=[spec.FileDescr(source=work / "cover.png")],
            tags=TAGS,
            inputs=[_input(spec, checkpoint, work)],
            outputs=[_output(spec, checkpoint, work)],
            weights=spec.WeightsDescr(**weights),
            config={"emda": _config(checkpoint)},
        )
        save_bioimageio_package(description, output_path=output)
    return list(weights)


def _config(checkpoint: Checkpoint) -> dict:
    return {"version": __version__, "method": checkpoint.method,
            "pixel_size_nm": checkpoint.pixel_size}  # fmt: skip


def _scale(checkpoint: Checkpoint) -> dict:
    """The pixel size the network works at, as the axes' scale (none when unrecorded)."""
    pixel = checkpoint.pixel_size
    return {"scale": pixel, "unit": "nanometer"} if pixel else {}


def _space_axes(spec, checkpoint: Checkpoint, size) -> list:
    return [spec.SpaceInputAxis(id=spec.AxisId(a), size=size(a), **_scale(checkpoint))
            for a in "yx"]  # fmt: skip


def _input(spec, checkpoint: Checkpoint, work: Path):
    multiple = checkpoint.model_config.divisor
    norm = checkpoint.normalization
    return spec.InputTensorDescr(
        id=spec.TensorId("raw"),
        description="EM image; emda normalises whole volumes by these percentiles",
        axes=[spec.BatchAxis(), spec.ChannelAxis(channel_names=[spec.Identifier("raw")]),
              *_space_axes(spec, checkpoint,
                           lambda _: spec.ParameterizedSize(min=multiple, step=multiple))],
        test_tensor=spec.FileDescr(source=work / "test_input.npy"),
        preprocessing=[spec.ScaleRangeDescr(kwargs=spec.ScaleRangeKwargs(
            axes=[spec.AxisId("y"), spec.AxisId("x")], min_percentile=norm.lower_percentile,
            max_percentile=norm.upper_percentile, eps=EPS))],
    )  # fmt: skip


def _output(spec, checkpoint: Checkpoint, work: Path):
    unit = _scale(checkpoint)
    return spec.OutputTensorDescr(
        id=spec.TensorId("probability"),
        description="mitochondria probability",
        axes=[spec.BatchAxis(),
              spec.ChannelAxis(channel_names=[spec.Identifier("mitochondria")]),
              *[spec.SpaceOutputAxis(id=spec.AxisId(a), size=spec.SizeReference(
                  tensor_id=spec.TensorId("raw"), axis_id=spec.AxisId(a)), **unit)
                for a in "yx"]],
        test_tensor=spec.FileDescr(source=work / "test_output.npy"),
    )  # fmt: skip


def _cover(image: np.ndarray, probability: np.ndarray, path: Path) -> None:
    """Input beside output, 2:1 as the model zoo asks."""
    from PIL import Image

    low, high = np.percentile(image, [1, 99])
    grey = np.clip((image - low) / max(high - low, 1e-6) * 255, 0, 255).astype(np.uint8)
    both = np.concatenate([grey, (probability * 255).astype(np.uint8)], axis=1)
    Image.fromarray(both).save(path)


def _readme(checkpoint: Checkpoint, name: str) -> str:
    pixel = f"{checkpoint.pixel_size:g} nm" if checkpoint.pixel_size else "not recorded"
    norm = checkpoint.normalization
    return f"""# {name}

Mitochondria segmentation for volume electron microscopy, exported by emda {__version__}
from a run trained with `{checkpoint.method}`.

- **Input**: one EM slice (or tile) per sample, height and width multiples of
  {checkpoint.model_config.divisor}. Pixel size the network was trained at: {pixel}; resample
  images at another pixel size to it first.
- **Preprocessing**: the {norm.lower_percentile:g}th and {norm.upper_percentile:g}th
  intensity percentiles are mapped to 0 and 1. emda computes them over the whole volume;
  this package computes them per sample, which agrees when a slice's intensities spread
  like its volume's. For whole volumes, `emda predict` is the reference.
- **Output**: mitochondria probability per pixel (sigmoid applied); threshold at 0.5.

Method: {CITATION} doi:{CITATION_DOI}
"""
