"""Label-free sharpness, and `emda smooth`, which blurs one volume to another's level."""

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from emda.cli import app
from emda.sampling import _blur
from emda.sharpness import blur, gaussian_taps, gradient_level, matching_sigma
from emda.volume import open_volume

from .conftest import CROPS

VNC = CROPS / "vnc" / "raw.tif"
EPFL = CROPS / "epfl_train" / "raw.tif"


def test_blur_is_the_training_augmentations_blur_at_any_size():
    rng = np.random.default_rng(0)
    for shape, sigma in [((64, 48), 1.5), ((5, 7), 2.0), ((128, 128), 0.6)]:
        image = rng.random(shape, dtype=np.float32)
        np.testing.assert_allclose(blur(image, sigma), _blur(image, sigma), atol=1e-5)


def test_blur_keeps_the_mean_and_sigma_zero_changes_nothing():
    rng = np.random.default_rng(1)
    image = rng.random((40, 30)).astype(np.float32)
    assert np.array_equal(blur(image, 0.0), image)
    assert blur(image, 2.0).mean() == pytest.approx(image.mean(), rel=1e-3)
    assert gaussian_taps(1.0).sum() == pytest.approx(1.0)
    assert len(gaussian_taps(1.0)) == 7  # radius ceil(3 sigma)


def test_blurring_lowers_the_gradient_level_monotonically():
    volume = open_volume(VNC)
    levels = [gradient_level(volume, range(8), s) for s in (0, 0.5, 1, 2)]
    assert levels == sorted(levels, reverse=True) and levels[-1] < 0.6 * levels[0]


def test_matching_sigma_finds_the_blur_that_made_the_reference(tmp_path):
    raw = tifffile.imread(VNC)
    reference = np.stack([blur(z, 1.2) for z in raw])
    tifffile.imwrite(tmp_path / "ref.tif", reference)
    level = gradient_level(open_volume(tmp_path / "ref.tif"), range(8))
    assert matching_sigma(open_volume(VNC), range(8), level) == pytest.approx(1.2, abs=0.01)
    # a volume already as smooth as the reference is left alone
    assert matching_sigma(open_volume(tmp_path / "ref.tif"), range(8), level * 1.01) == 0.0


def test_emda_smooth_like_writes_the_sharper_volume_at_the_references_level(tmp_path):
    out = tmp_path / "vnc_like_epfl.tif"
    result = CliRunner().invoke(
        app, ["smooth", str(VNC), "-o", str(out), "--like", str(EPFL), "--z-range", "0:8"]
    )
    assert result.exit_code == 0, result.output
    assert "sigma" in result.output
    source, smoothed = open_volume(VNC), open_volume(out)
    assert smoothed.shape == source.shape and smoothed.dtype == source.dtype
    assert smoothed.voxel_size == source.voxel_size
    reference = gradient_level(open_volume(EPFL), range(open_volume(EPFL).shape[0]))
    before = gradient_level(source, range(8))
    after = gradient_level(smoothed, range(8))
    assert before > 1.1 * reference  # the crops differ the way the full volumes do
    assert after == pytest.approx(reference, rel=0.03)  # uint8 rounding costs a little
    assert not list(tmp_path.glob("*partial*"))


def test_emda_smooth_to_zarr_records_its_sigma_and_sigma_zero_copies(tmp_path):
    out = tmp_path / "s.zarr"
    result = CliRunner().invoke(app, ["smooth", str(VNC), "-o", str(out), "--sigma", "0"])
    assert result.exit_code == 0, result.output
    smoothed = open_volume(out)
    assert float(smoothed.array.attrs["emda_smooth_sigma"]) == 0.0
    assert np.array_equal(smoothed.read(), open_volume(VNC).read())
    shown = CliRunner().invoke(app, ["info", str(out)])
    assert "blurred by emda smooth" in shown.output and "sigma 0 px" in shown.output


def test_smooth_blurs_large_slices_in_row_blocks_without_seams(tmp_path, monkeypatch):
    import emda.sharpness as sharpness

    raw = tifffile.imread(VNC)[:2]
    tifffile.imwrite(tmp_path / "in.tif", raw)
    whole = CliRunner().invoke(
        app, ["smooth", str(tmp_path / "in.tif"), "-o", str(tmp_path / "a.tif"), "--sigma", "1.5"]
    )
    monkeypatch.setattr(sharpness, "ROW_BLOCK", 37)  # blocks that split the slices unevenly
    blocks = CliRunner().invoke(
        app, ["smooth", str(tmp_path / "in.tif"), "-o", str(tmp_path / "b.tif"), "--sigma", "1.5"]
    )
    assert whole.exit_code == blocks.exit_code == 0
    a, b = tifffile.imread(tmp_path / "a.tif"), tifffile.imread(tmp_path / "b.tif")
    assert np.array_equal(a, b)
    expected = np.rint(blur(raw[1], 1.5)).clip(0, 255).astype(np.uint8)
    assert np.array_equal(a[1], expected)


def test_an_interrupted_smooth_leaves_nothing_and_can_simply_be_rerun(tmp_path, monkeypatch):
    import emda.sharpness as sharpness

    real, calls = sharpness.blur, []

    def blur_then_fail(image, sigma):
        calls.append(1)
        if len(calls) == 3:  # after two finished slices
            raise KeyboardInterrupt
        return real(image, sigma)

    monkeypatch.setattr(sharpness, "blur", blur_then_fail)
    args = ["smooth", str(VNC), "-o", str(tmp_path / "s.zarr"), "--sigma", "1"]
    failed = CliRunner().invoke(app, args)
    assert failed.exit_code != 0 and len(calls) == 3
    assert list(tmp_path.iterdir()) == []  # neither the output nor a partial one
    monkeypatch.setattr(sharpness, "blur", real)
    assert CliRunner().invoke(app, args).exit_code == 0  # no --overwrite or --resume needed
