"""Training patches, their augmentation, and target batch-norm statistics."""

import numpy as np
import pytest
import torch

from emda.batchnorm import recalibrate_batchnorm
from emda.checkpoint import load_checkpoint
from emda.errors import EmdaError
from emda.model import UNet, UNetConfig
from emda.normalization import IntensityRange
from emda.sampling import Augmentation, PatchSampler, _blur
from emda.style import amplitude_mix
from emda.train import read_log
from emda.volume import Volume

from .conftest import adapt_on_crops


def _volume(data: np.ndarray) -> Volume:
    return Volume(data, "test", None)


def test_blur_equals_a_direct_convolution_with_mirrored_borders():
    x = np.random.default_rng(0).random((40, 33)).astype(np.float32)
    r = 5
    taps = np.exp(-0.5 * (np.arange(-r, r + 1) / 1.5) ** 2)
    taps /= taps.sum()
    padded = np.pad(x, r, mode="symmetric").astype(np.float64)
    rows = np.apply_along_axis(lambda v: np.convolve(v, taps, "valid"), 0, padded)
    direct = np.apply_along_axis(lambda v: np.convolve(v, taps, "valid"), 1, rows)
    np.testing.assert_allclose(_blur(x, 1.5), direct, atol=1e-5)
    np.testing.assert_allclose(_blur(np.ones((20, 20), np.float32), 1.5), 1, atol=1e-6)


def test_without_augmentation_a_patch_is_the_normalised_crop():
    data = np.arange(4 * 32 * 32, dtype=np.uint8).reshape(4, 32, 32)
    sampler = PatchSampler(_volume(data), IntensityRange(0.0, 255.0), 16, None, [2])
    batch = sampler.sample(3, np.random.default_rng(0))
    assert batch.x.shape == (3, 1, 16, 16) and batch.y is None
    for patch in batch.x[:, 0].numpy():
        # some 16 x 16 window of slice 2, scaled by 1/255
        y0, x0 = np.argwhere(np.isclose(data[2] / 255.0, patch[0, 0]))[0]
        np.testing.assert_allclose(patch, data[2, y0 : y0 + 16, x0 : x0 + 16] / 255.0, atol=1e-6)


def test_sharpness_and_noise_change_the_patch_but_keep_its_mean():
    rng = np.random.default_rng(1)
    x = rng.random((64, 64)).astype(np.float32)
    sharp = Augmentation(dihedral=False, sharpness=2.0).intensity(x, np.random.default_rng(3))
    noisy = Augmentation(dihedral=False, noise=0.1).intensity(x, np.random.default_rng(3))
    for y in (sharp, noisy):
        assert not np.allclose(y, x)
        assert abs(float(y.mean() - x.mean())) < 0.02  # neither shifts the grey level
    assert Augmentation(dihedral=False).intensity(x, rng) is x


@pytest.mark.parametrize("field", ["intensity_jitter", "sharpness", "noise"])
def test_negative_augmentation_amplitudes_are_refused(field):
    with pytest.raises(EmdaError, match=field.replace("_", "-")):
        Augmentation(**{field: -0.1})


def test_recalibration_sets_running_statistics_to_the_target_batches():
    data = np.full((2, 32, 32), 200, dtype=np.uint8)  # constant: mean 200/255, variance 0
    sampler = PatchSampler(_volume(data), IntensityRange(0.0, 255.0), 16)
    model = torch.nn.Sequential(torch.nn.BatchNorm2d(1), torch.nn.Conv2d(1, 1, 1))
    conv = model[1].weight.detach().clone()
    assert recalibrate_batchnorm(model, sampler, torch.device("cpu"), batches=3) == 1
    torch.testing.assert_close(model[0].running_mean, torch.tensor([200 / 255]))
    torch.testing.assert_close(model[0].running_var, torch.tensor([0.0]))
    assert model[0].momentum == 0.1 and not model.training
    torch.testing.assert_close(model[1].weight, conv)


def test_recalibration_leaves_a_unet_s_weights_alone():
    model = UNet(UNetConfig(base_channels=4, depth=2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = np.random.default_rng(0).integers(0, 255, (3, 40, 40), dtype=np.uint8)
    sampler = PatchSampler(_volume(data), IntensityRange(0.0, 255.0), 32)
    recalibrate_batchnorm(model, sampler, torch.device("cpu"), batches=2, batch_size=2)
    after = model.state_dict()
    for name, value in before.items():
        changed = not torch.equal(value, after[name])
        assert changed == name.endswith(("running_mean", "running_var", "num_batches_tracked"))


def test_adapt_recalibrates_on_the_target_unless_told_not_to(tmp_path):
    def checkpoint(name, *extra):
        assert adapt_on_crops(tmp_path / name, *extra, method="mmd").exit_code == 0
        return torch.load(tmp_path / name / "checkpoint.pt", weights_only=True)

    on, off = checkpoint("on"), checkpoint("off", "--no-target-bn")
    assert on["training"]["target_bn"] and not off["training"]["target_bn"]
    for name, value in on["state_dict"].items():
        same = torch.equal(value, off["state_dict"][name])
        assert same != name.endswith(("running_mean", "running_var", "num_batches_tracked"))


def test_recalibrating_a_finished_run_equals_adapt_s_default(tmp_path, crops):
    from typer.testing import CliRunner

    from emda.cli import app

    assert adapt_on_crops(tmp_path / "default", method="mmd").exit_code == 0
    assert adapt_on_crops(tmp_path / "plain", "--no-target-bn", method="mmd").exit_code == 0
    result = CliRunner().invoke(
        app,
        ["recalibrate", str(tmp_path / "plain"), "--target", str(crops / "vnc/raw.tif"),
         "--out", str(tmp_path / "recal"), "--device", "cpu"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    a = torch.load(tmp_path / "default/checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "recal/checkpoint.pt", weights_only=True)
    assert b["training"]["command"] == "recalibrate" and b["training"]["target_bn"]
    for name, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][name], value, msg=name)


def test_recalibrate_refuses_bad_input_before_writing(tmp_path, crops):
    from typer.testing import CliRunner

    from emda.cli import app

    runner = CliRunner()
    args = ["recalibrate", str(tmp_path / "nope"), "--target", str(crops / "vnc/raw.tif")]
    missing = runner.invoke(app, [*args, "--out", str(tmp_path / "o")])
    assert missing.exit_code == 1 and "nope" in missing.output
    assert not (tmp_path / "o").exists()


def test_a_log_line_cut_short_by_a_kill_is_left_out(tmp_path):
    from emda.train import read_log

    (tmp_path / "log.jsonl").write_text('{"iteration": 1}\n{"iteration": 2}\n{"itera')
    assert [r["iteration"] for r in read_log(tmp_path)] == [1, 2]


def _textured_disc(size: int = 64, radius: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """A disc of stripes (period 6 px, like cristae) on a flat background, and its mask."""
    yy, xx = np.mgrid[:size, :size]
    mask = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < radius**2).astype(np.float32)
    stripes = 0.3 + 0.2 * np.sin(2 * np.pi * xx / 6)
    return np.where(mask > 0, stripes, 0.7).astype(np.float32), mask


def test_smooth_objects_blurs_inside_the_labels_and_leaves_outline_and_outside_alone():
    x, mask = _textured_disc()
    aug = Augmentation(smooth_objects=1.0)
    rng = np.random.default_rng(0)
    amount = np.random.default_rng(0).uniform(0, 1.0)
    out = aug.objects(x, mask, rng)
    far_outside = _blur(mask, 3.0) == 0  # no object within reach of either blur
    np.testing.assert_array_equal(out[far_outside], x[far_outside])
    deep = _blur(mask, 2.0) > 0.999
    texture = lambda a: float(np.abs(np.diff(a, axis=1))[deep[:, 1:]].mean())  # noqa: E731
    assert texture(out) < (1 - 0.9 * amount) * texture(x)  # the stripes fade with a
    assert abs(out[deep].mean() - x[deep].mean()) < 0.02  # smoothed, not darkened
    # the outline: the step from the disc to the background survives
    edge = (mask > 0) & (_blur(mask, 1.0) < 0.75)
    assert np.abs(out[edge] - x[edge]).max() < 0.35 * np.abs(x[edge] - 0.7).max()


def test_smooth_objects_changes_nothing_without_labels_and_when_off():
    x, mask = _textured_disc()
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    assert Augmentation(smooth_objects=1.0).objects(x, None, rng) is x  # a target patch
    assert Augmentation(smooth_objects=1.0).objects(x, np.zeros_like(mask), rng) is x
    assert Augmentation().objects(x, mask, rng) is x
    assert rng.bit_generator.state == state  # runs without it draw the same patches as before
    with pytest.raises(EmdaError, match="--smooth-objects must be >= 0"):
        Augmentation(smooth_objects=-1)


def test_amplitude_mix_keeps_the_source_phase_and_takes_the_target_amplitude():
    gen = torch.Generator().manual_seed(0)
    source, target = (
        torch.rand(3, 1, 32, 32, generator=gen),
        torch.rand(3, 1, 32, 32, generator=gen),
    )
    mixed = amplitude_mix(source, target, torch.tensor([0.0, 0.5, 1.0]))
    assert torch.allclose(mixed[0], source[0], atol=1e-5)  # weight 0: the source unchanged
    f_src, f_tgt, f_mix = (torch.fft.rfft2(a) for a in (source, target, mixed))
    want = 0.5 * f_src.abs() + 0.5 * f_tgt.abs()
    assert torch.allclose(f_mix[1].abs(), want[1], atol=1e-3)
    assert torch.allclose(f_mix[2].abs(), f_tgt[2].abs(), atol=1e-3)
    # the phase, where the amplitude is not negligible, is the source's
    big = f_mix[2].abs() > 1e-2
    turn = (f_mix[2] * f_src[2].conj())[big]
    assert torch.allclose(turn.angle(), torch.zeros_like(turn.real), atol=1e-3)
    assert mixed.shape == source.shape and mixed.dtype == source.dtype


def test_amplitude_mix_refuses_mismatched_patches():
    with pytest.raises(ValueError, match="differ"):
        amplitude_mix(torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 8, 16), torch.zeros(2))
    with pytest.raises(ValueError, match="one per patch"):
        amplitude_mix(torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 8, 8), torch.zeros(3))


def test_adapt_with_amplitude_mix_trains_ft_on_target_styled_source(tmp_path):
    plain = adapt_on_crops(tmp_path / "plain", "--no-target-bn")
    mixed = adapt_on_crops(tmp_path / "mixed", "--no-target-bn", "--amplitude-mix", "0.5")
    assert plain.exit_code == 0 and mixed.exit_code == 0, mixed.output
    training = load_checkpoint(tmp_path / "mixed").training
    assert training["amplitude_mix"] == 0.5
    assert load_checkpoint(tmp_path / "plain").training["amplitude_mix"] == 0.0
    first = [read_log(tmp_path / run)[0]["seg"] for run in ("plain", "mixed")]
    assert first[0] != first[1]  # same seed, same weights: only the styled patches differ


def test_adapt_with_smooth_objects_records_it_and_trains_on_smoothed_source(tmp_path):
    plain = adapt_on_crops(tmp_path / "plain", "--no-target-bn")
    smooth = adapt_on_crops(tmp_path / "smooth", "--no-target-bn", "--smooth-objects", "1")
    assert plain.exit_code == 0 and smooth.exit_code == 0, smooth.output
    assert load_checkpoint(tmp_path / "smooth").training["smooth_objects"] == 1.0
    assert load_checkpoint(tmp_path / "plain").training["smooth_objects"] == 0.0
    first = [read_log(tmp_path / run)[0]["seg"] for run in ("plain", "smooth")]
    assert first[0] != first[1]  # same seed, same weights: only the source patches differ
