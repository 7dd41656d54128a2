"""Target patches from all three plane stacks (``emda adapt --target-planes ortho``) and
a guide volume read with them, e.g. a teacher's prediction of the whole target."""

import logging

import numpy as np
import pytest
import tifffile
import torch

from emda.data.normalization import IntensityRange
from emda.data.sampling import Augmentation, PatchSampler
from emda.errors import EmdaError
from emda.io.volume import Volume
from emda.io.writer import write_volume
from emda.model.checkpoint import load_checkpoint
from emda.training.config import TrainConfig
from tests.conftest import CROPS, adapt_on_crops

SHAPE = (20, 24, 28)  # z, y, x all different, so a patch's plane can be read off it


def coordinates() -> tuple[Volume, Volume]:
    """A raw volume and a guide whose voxels hold their own (z, y, x) coordinates."""
    z, y, x = np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")
    raw = Volume(np.random.default_rng(0).random(SHAPE, dtype=np.float32), "raw")
    return raw, Volume((z * 10000 + y * 100 + x).astype(np.float32), "coords")


def decode(patch: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    c = patch.numpy().astype(np.int64)
    return c // 10000, c // 100 % 100, c % 100


def test_patches_come_from_every_plane_with_rows_inside_the_allowed_slices():
    raw, coords = coordinates()
    sampler = PatchSampler(raw, IntensityRange(0, 1), 8, None, range(5, 15),
                           Augmentation.none(), ("xy", "xz", "yz"), coords)  # fmt: skip
    batch = sampler.sample(300, np.random.default_rng(1))
    planes = []
    for patch in batch.guide[:, 0]:
        z, y, x = decode(patch)
        constant = [len(np.unique(a)) == 1 for a in (z, y, x)]
        assert sum(constant) == 1  # a plane: exactly one coordinate is fixed
        planes.append("xy" if constant[0] else "xz" if constant[1] else "yz")
        assert z.min() >= 5 and z.max() < 15
        if not constant[0]:  # z runs along the rows, one per row, in order
            assert (np.diff(z[:, 0]) == 1).all()
    shares = {p: planes.count(p) / len(planes) for p in ("xy", "xz", "yz")}
    assert all(0.25 < s < 0.42 for s in shares.values()), shares


def test_the_guide_follows_each_patch_through_flips_and_rotations_not_intensity():
    raw, _ = coordinates()
    intensity = IntensityRange(0.0, 1.0)
    guide = Volume(intensity.apply(raw.read()), "guide")
    augmentation = Augmentation(intensity_jitter=0.0)  # flips/rotations only
    sampler = PatchSampler(raw, intensity, 8, None, None, augmentation, ("xy", "xz", "yz"), guide)
    batch = sampler.sample(40, np.random.default_rng(2))
    torch.testing.assert_close(batch.x, batch.guide, rtol=0, atol=0)
    jitter = Augmentation(intensity_jitter=0.5)
    jittered = PatchSampler(raw, intensity, 8, None, None, jitter, ("xy", "xz", "yz"), guide)
    jittered = jittered.sample(40, np.random.default_rng(2))
    assert not torch.equal(jittered.x, jittered.guide)


def test_a_single_off_axis_plane_is_honoured():
    raw, coords = coordinates()
    batch = PatchSampler(raw, IntensityRange(0, 1), 8, None, None, Augmentation.none(), ("xz",),
                         coords).sample(20, np.random.default_rng(4))  # fmt: skip
    for patch in batch.guide[:, 0]:
        _, y, _ = decode(patch)
        assert len(np.unique(y)) == 1  # (z, x) planes: y fixed


def test_slices_only_is_the_default():
    raw, coords = coordinates()
    args = (raw, IntensityRange(0, 1), 8, coords, [3, 4])
    a = PatchSampler(*args).sample(10, np.random.default_rng(3))
    b = PatchSampler(*args, planes=("xy",)).sample(10, np.random.default_rng(3))
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and a.guide is None
    z, _, _ = decode(a.y[:, 0])
    assert set(np.unique(z)) <= {3, 4}


def test_sampler_errors_name_what_is_wrong():
    raw, coords = coordinates()
    with pytest.raises(EmdaError, match="must be among xy, xz, yz"):
        PatchSampler(raw, IntensityRange(0, 1), 8, planes=("zx",))
    with pytest.raises(EmdaError, match="coords: shape"):
        PatchSampler(raw, IntensityRange(0, 1), 8, guide=Volume(coords.read()[:3], "coords"))
    flat = Volume(np.zeros((24, 28), np.float32), "flat.tif")
    with pytest.raises(EmdaError, match="flat.tif: a 2D image"):
        PatchSampler(flat, IntensityRange(0, 1), 8, planes=("xy", "xz"))
    with pytest.raises(EmdaError, match="--target-planes must be one of"):
        TrainConfig(target_planes="yz")


def test_adapt_records_target_planes_and_warns_about_short_stacks(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="emda"):
        result = adapt_on_crops(tmp_path / "r", "--target-planes", "ortho",
                                target=CROPS / "epfl_train/raw.tif", method="ynet")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert load_checkpoint(tmp_path / "r").training["target_planes"] == "ortho"
    # the crop has 16 slices, the tiny budget's patch 64 rows
    assert "16 target slices, fewer than the patch's 64 rows" in caplog.text


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--target-planes", "ortho"], "is a 2D image, it has only (y, x)"),
        (["--target-planes", "zx"], "--target-planes"),
    ],
)
def test_bad_target_planes_is_one_line_and_writes_nothing(tmp_path, extra, message):
    flat = tmp_path / "flat.tif"
    tifffile.imwrite(flat, tifffile.imread(CROPS / "vnc/raw.tif")[0])
    result = adapt_on_crops(tmp_path / "r", *extra, target=flat, method="mmd")
    assert result.exit_code != 0 and message in result.output
    assert not (tmp_path / "r").exists()


def test_target_planes_without_a_target_is_refused(tmp_path):
    result = adapt_on_crops(tmp_path / "r", "--target-planes", "ortho", target=None)
    assert result.exit_code != 0 and "--target-planes needs --target" in result.output
    assert not (tmp_path / "r").exists()


def test_ortho_prediction_does_not_warn_a_model_that_trained_on_the_target_planes(tmp_path, caplog):
    """The warning says a model trained on sections never saw a (z, x) plane; one
    adapted with --target-planes ortho on an isotropic target has."""
    from typer.testing import CliRunner

    from emda.cli import app

    source = [
        "--source",
        str(CROPS / "vnc/raw.tif"),
        "--source-labels",
        str(CROPS / "vnc/labels.tif"),
    ]
    cube = tmp_path / "cube.tif"  # a small isotropic volume: ortho predicts three stacks
    write_volume(cube, tifffile.imread(CROPS / "epfl_test/raw.tif")[:, :32, :32], (5.0, 5.0, 5.0))
    warned = {}
    for planes in ("xy", "ortho"):
        run = tmp_path / planes
        result = adapt_on_crops(run, *source, "--target-planes", planes, "--no-target-bn",
                                method="mmd", target=CROPS / "epfl_train/raw.tif")  # fmt: skip
        assert result.exit_code == 0, result.output
        caplog.clear()
        args = ["predict", str(run), str(cube), "--output",
                str(tmp_path / f"{planes}.tif"), "--planes", "ortho", "--quiet",
                "--tile-size", "32", "--device", "cpu"]  # fmt: skip
        with caplog.at_level(logging.WARNING, logger="emda"):
            predicted = CliRunner().invoke(app, args)
        assert predicted.exit_code == 0, predicted.output
        warned[planes] = "never saw a (z, x) or (z, y) plane" in caplog.text
    assert warned == {"xy": True, "ortho": False}
