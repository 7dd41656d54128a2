"""Training patches, their augmentation, and target batch-norm statistics."""

import numpy as np
import pytest
import torch

from emda.data.normalization import IntensityRange
from emda.data.sampling import Augmentation, PatchSampler
from emda.data.style import amplitude_mix
from emda.errors import EmdaError
from emda.io.volume import Volume
from emda.model import UNet, UNetConfig
from emda.model.checkpoint import load_checkpoint
from emda.training.batchnorm import recalibrate_batchnorm
from emda.training.state import read_log

from .conftest import adapt_on_crops


def _volume(data: np.ndarray) -> Volume:
    return Volume(data, "test", None)


def test_without_augmentation_a_patch_is_the_normalised_crop():
    data = np.arange(4 * 32 * 32, dtype=np.uint8).reshape(4, 32, 32)
    sampler = PatchSampler(_volume(data), IntensityRange(0.0, 255.0), 16, None, [2])
    batch = sampler.sample(3, np.random.default_rng(0))
    assert batch.x.shape == (3, 1, 16, 16) and batch.y is None
    for patch in batch.x[:, 0].numpy():
        # some 16 x 16 window of slice 2, scaled by 1/255
        y0, x0 = np.argwhere(np.isclose(data[2] / 255.0, patch[0, 0]))[0]
        np.testing.assert_allclose(patch, data[2, y0 : y0 + 16, x0 : x0 + 16] / 255.0, atol=1e-6)


def test_noise_changes_the_patch_but_keeps_its_mean():
    rng = np.random.default_rng(1)
    x = rng.random((64, 64)).astype(np.float32)
    noisy = Augmentation(dihedral=False, noise=0.1).intensity(x, np.random.default_rng(3))
    assert not np.allclose(noisy, x)
    assert abs(float(noisy.mean() - x.mean())) < 0.02  # it does not shift the grey level
    assert Augmentation(dihedral=False).intensity(x, rng) is x


@pytest.mark.parametrize("field", ["intensity_jitter", "noise"])
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
    from emda.training.state import read_log

    (tmp_path / "log.jsonl").write_text('{"iteration": 1}\n{"iteration": 2}\n{"itera')
    assert [r["iteration"] for r in read_log(tmp_path)] == [1, 2]


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


@pytest.mark.parametrize("removed", ["--smooth-objects", "--sharpness"])
def test_removed_augmentations_are_refused_as_unknown_options(tmp_path, removed):
    result = adapt_on_crops(tmp_path / "run", removed, "1")
    assert result.exit_code != 0
    assert "No such option" in result.output and not (tmp_path / "run").exists()
