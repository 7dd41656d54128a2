"""What ``emda predict`` is asked to do and what it reports: settings and result."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from emda.data.normalization import NormalizeMode
from emda.data.planes import Planes
from emda.errors import EmdaError
from emda.evaluation.evaluate import check_threshold
from emda.inference.sliding_window import BlendMode


@dataclass(frozen=True)
class PredictSettings:
    """How a volume is predicted: the options of ``emda predict`` that shape its output."""

    threshold: float = 0.5  # for the mask
    prob_dtype: str = "uint8"  # uint8 stores round(255 p)
    tile_size: int = 256
    overlap: float = 0.25
    batch_size: int = 8  # tiles per forward pass
    blend: str = BlendMode.gaussian.value
    normalize: str = NormalizeMode.volume.value
    tta: bool = False  # average the 8 flips/rotations of each tile
    planes: str = Planes.auto.value
    block_size: int = 2048
    halo: int | None = None  # context read around a block; None: half a tile
    pyramid: int = 0  # levels below an .ome.zarr output
    ngff: str | None = None  # NGFF version of .ome.zarr outputs (None: 0.5, or the image's)
    #: resample tiles to the model's pixel size when the volume's differs (> 10 %)
    resample: bool = True
    #: the network's arithmetic (emda.precision): auto, float32, bfloat16 or float16
    precision: str = "auto"

    @property
    def block_halo(self) -> int:
        return self.tile_size // 2 if self.halo is None else self.halo


@dataclass(frozen=True)
class PredictResult:
    input: str
    shape: tuple[int, int, int]
    planes: list[str]
    seconds: float
    voxels_per_second: float
    intensity_range: tuple[float, float]
    blocks: int
    precision: str = "float32"  # what the network computed in (emda.precision)


def check_prediction_outputs(
    output: str | None, mask: str | None, threshold: float, prob_dtype: str
) -> None:
    """The options of a command that writes probabilities and/or a mask (predict, ensemble)."""
    if output is None and mask is None:
        raise EmdaError("nothing to write: give --output (probabilities) and/or --mask")
    check_threshold(threshold)
    if prob_dtype not in ("uint8", "float32"):
        raise EmdaError(f"--prob-dtype {prob_dtype}: must be uint8 or float32")
    if output and mask and Path(output).resolve() == Path(mask).resolve():
        raise EmdaError("--output and --mask must be different paths")
