"""The perturbed targets of benchmarks/perturbations.py: geometry, labels, repeatability."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "perturbations.py"


@pytest.fixture(scope="module")
def perturbations():
    spec = importlib.util.spec_from_file_location("perturbations", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(SCRIPT.parent))  # it imports the paper-table harness beside it
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return module


def _volume():
    rng = np.random.default_rng(0)
    raw = rng.integers(20, 230, (3, 16, 18), dtype=np.uint8)
    labels = np.zeros_like(raw)
    labels[:, 4:12, 2:10] = 1
    return raw, labels


def test_binning_halves_the_plane_keeps_z_and_doubles_the_pixel_size(perturbations):
    raw, labels = _volume()
    x, y, voxel = perturbations.perturb(raw, labels, (50.0, 4.6, 4.6), (("bin", 2),))
    assert x.shape == y.shape == (3, 8, 9) and x.dtype == y.dtype == np.uint8
    assert voxel == (50.0, 9.2, 9.2)
    expected = raw[:, :16, :18].astype(np.float32).reshape(3, 8, 2, 9, 2).mean(axis=(2, 4))
    np.testing.assert_array_equal(x, np.round(expected))
    assert y[:, 2:6, 1:5].all() and y.sum() == 3 * 4 * 4  # the block-aligned square


def test_appearance_perturbations_leave_labels_and_shape_alone(perturbations):
    raw, labels = _volume()
    for name in ("gamma_1.5", "gamma_0.67", "contrast_0.6", "noise_15", "blur_1.5"):
        x, y, voxel = perturbations.perturb(raw, labels, (5.0, 5.0, 5.0),
                                            perturbations.PERTURBATIONS[name])  # fmt: skip
        assert x.shape == raw.shape and x.dtype == np.uint8 and voxel == (5.0, 5.0, 5.0)
        np.testing.assert_array_equal(y, labels)
        assert not np.array_equal(x, raw), name


def test_gamma_above_one_darkens_and_contrast_narrows_the_grey_levels(perturbations):
    raw, labels = _volume()
    dark, _, _ = perturbations.perturb(raw, labels, (1, 1, 1), (("gamma", 1.5),))
    flat, _, _ = perturbations.perturb(raw, labels, (1, 1, 1), (("contrast", 0.6),))
    assert dark.mean() < raw.mean() and (dark <= raw).all()
    assert flat.std() == pytest.approx(0.6 * raw.std(), rel=0.02)


def test_noise_is_seeded_so_a_target_is_always_the_same(perturbations):
    raw, labels = _volume()
    ops = perturbations.PERTURBATIONS["2x_dark_noisy"]
    a = perturbations.perturb(raw, labels, (1, 1, 1), ops)[0]
    b = perturbations.perturb(raw, labels, (1, 1, 1), ops)[0]
    np.testing.assert_array_equal(a, b)


def test_an_unknown_operation_is_refused(perturbations):
    raw, labels = _volume()
    with pytest.raises(ValueError, match="sharpen"):
        perturbations.perturb(raw, labels, (1, 1, 1), (("sharpen", 1.0),))


def test_keeping_every_nth_slice_spaces_the_slices_and_names_the_copy(
    perturbations, tmp_path, monkeypatch
):
    from emda.io.volume import open_volume
    from emda.io.writer import write_volume

    raw, labels = _volume()
    raw = np.concatenate([raw] * 3)  # 9 slices
    labels = np.concatenate([labels] * 3)
    write_volume(str(tmp_path / "raw.tif"), raw, (5.0, 5.0, 5.0))
    write_volume(str(tmp_path / "labels.tif"), labels, (5.0, 5.0, 5.0))
    monkeypatch.setattr(perturbations, "WORK", tmp_path)
    ops = perturbations.PERTURBATIONS["2x"]
    whole = perturbations._write("t", tmp_path / "raw.tif", tmp_path / "labels.tif", ops, 1)
    thinned = perturbations._write("t", tmp_path / "raw.tif", tmp_path / "labels.tif", ops, 4)
    assert whole[0] != thinned[0] and "every4" in thinned[0]
    assert open_volume(whole[0]).shape == (9, 8, 9)
    assert open_volume(whole[0]).voxel_size == pytest.approx((5.0, 10.0, 10.0))
    kept = open_volume(thinned[0])
    assert kept.shape == (3, 8, 9)  # slices 0, 4 and 8
    assert kept.voxel_size == pytest.approx((20.0, 10.0, 10.0))
    np.testing.assert_array_equal(open_volume(thinned[1]).read(), open_volume(whole[1]).read()[::4])
