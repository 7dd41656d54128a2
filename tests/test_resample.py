"""Working at one pixel size: zoom factors, resampling geometry, patches, tiles, predict."""

import logging

import numpy as np
import pytest
import tifffile
import torch
from torch import nn

from emda.data.normalization import IntensityRange
from emda.data.resample import (
    Resampled,
    native_tile,
    pixel_zoom,
    resize,
    window_size,
    working_pixel_size,
)
from emda.data.sampling import Augmentation, MixedSampler, PatchSampler
from emda.errors import EmdaError
from emda.inference.sliding_window import SlidingWindowPredictor
from emda.io.volume import Volume
from emda.model import UNetConfig


def test_zoom_is_one_within_ten_percent_and_when_unknown():
    assert pixel_zoom(4.6, 5.0) == 1.0  # VNC and EPFL: the same grid for the network
    assert pixel_zoom(9.2, 4.6) == 2.0
    assert pixel_zoom(2.5, 5.0) == 0.5
    assert pixel_zoom(None, 5.0) == 1.0 and pixel_zoom(5.0, None) == 1.0
    with pytest.raises(EmdaError, match="must be positive"):
        pixel_zoom(0.0, 5.0)


def test_a_volume_without_voxel_size_is_assumed_to_share_the_other(caplog):
    with caplog.at_level(logging.WARNING, logger="emda"):
        assert working_pixel_size((5, 5, 5), None, "s.tif", "t.tif") == (5.0, 1.0)
    assert "t.tif has no voxel size: assumed the source's 5 nm" in caplog.text
    assert working_pixel_size((5, 5, 5), (50, 10, 10), "s", "t") == (5.0, 2.0)
    assert working_pixel_size(None, (50, 10, 10), "s", "t") == (10.0, 1.0)


def _blob(h: int, w: int, cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (((yy - cy) ** 2 + (xx - cx) ** 2) <= r**2).astype(np.float32)


def _centre(a: np.ndarray) -> np.ndarray:
    yy, xx = np.mgrid[: a.shape[0], : a.shape[1]]
    return np.array([(yy * a).sum(), (xx * a).sum()]) / a.sum()


@pytest.mark.parametrize("shape", [(64, 64), (37, 53)])
def test_resize_round_trip_keeps_shape_and_objects_in_place(shape):
    img = _blob(*shape, cy=shape[0] * 0.4, cx=shape[1] * 0.6, r=8)
    t = torch.from_numpy(img)[None, None]
    up = resize(t, (shape[0] * 2, shape[1] * 2))
    back = resize(up, shape)[0, 0].numpy()
    assert back.shape == shape
    # pixel centres map onto pixel centres: the object's centre moves by < 0.05 px
    assert np.abs(_centre(back) - _centre(img)).max() < 0.05
    up_centre = _centre(up[0, 0].numpy())
    assert np.allclose(up_centre, (_centre(img) + 0.5) * 2 - 0.5, atol=0.05)


class _Identity(nn.Module):
    config = UNetConfig(base_channels=4, depth=4)  # divisor 16, as a U-Net's

    def forward(self, x):
        assert x.shape[-2] % 16 == 0 and x.shape[-1] % 16 == 0, x.shape
        return x


def test_resampled_network_answers_on_the_input_grid():
    x = torch.from_numpy(_blob(50, 70, 20, 30, 9))[None, None]
    out = Resampled(_Identity(), zoom=1.84)(x)  # resized to 96 x 128, then back
    assert out.shape == x.shape
    assert np.abs(_centre(out[0, 0].numpy()) - _centre(x[0, 0].numpy())).max() < 0.3


def test_tiles_cover_the_working_pixels_of_a_tile():
    assert native_tile(256, 2.0, 16) == 128
    assert native_tile(256, 0.5, 16) == 512
    assert native_tile(256, 20.0, 16) == 16  # never below the network's divisor


def test_predictor_with_zoom_keeps_the_slice_grid():
    img = _blob(200, 300, 80, 150, 25) * 8 - 4  # logits: the identity net's sigmoid
    predictor = SlidingWindowPredictor(_Identity(), torch.device("cpu"), 128, zoom=2.0)
    assert predictor.tile_size == 64  # 128 working pixels
    prob = predictor.predict_slice(img)
    assert prob.shape == img.shape
    assert ((prob >= 0.5) == (img > 0)).mean() > 0.995


def _volume(shape=(3, 96, 96), voxel=(10.0, 10.0, 10.0)) -> tuple[Volume, Volume]:
    raw = np.zeros(shape, dtype=np.uint8)
    labels = np.zeros(shape, dtype=np.uint8)
    for z in range(shape[0]):
        labels[z] = _blob(shape[1], shape[2], 30 + 10 * z, 50, 12)
        raw[z] = 40 + 160 * labels[z]
    return Volume(raw, "raw", voxel), Volume(labels, "labels", voxel)


def test_patch_sampler_resamples_windows_to_the_patch_size():
    raw, labels = _volume()
    sampler = PatchSampler(raw, IntensityRange(0, 255), 64, labels, augmentation=Augmentation(),
                           zoom=2.0)  # fmt: skip
    assert sampler.window == window_size(64, 2.0) == 32
    batch = sampler.sample(4, np.random.default_rng(0))
    assert batch.x.shape == (4, 1, 64, 64) and batch.y.shape == (4, 1, 64, 64)
    assert set(np.unique(batch.y.numpy())) <= {0.0, 1.0}  # labels stay a mask
    # raw and labels were cut and resampled alike: bright pixels are the labelled ones
    agree = ((batch.x.numpy() > 0.4) == (batch.y.numpy() > 0.5)).mean()
    assert agree > 0.97


def test_one_source_mixed_sampler_draws_what_its_sampler_draws():
    raw, labels = _volume()
    make = lambda: PatchSampler(raw, IntensityRange(0, 255), 32, labels)  # noqa: E731
    a = make().sample(3, np.random.default_rng(7))
    b = MixedSampler([make()]).sample(3, np.random.default_rng(7))
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)


def test_mixed_sampler_draws_from_every_source():
    raw, labels = _volume()
    dark = Volume(np.zeros_like(raw.array), "dark", raw.voxel_size)
    samplers = [PatchSampler(v, IntensityRange(0, 255), 32, labels) for v in (raw, dark)]
    batch = MixedSampler(samplers).sample(32, np.random.default_rng(0))
    from_dark = (batch.x.flatten(1).max(dim=1).values == 0).sum().item()
    assert 4 <= from_dark <= 28


def test_checkpoint_pixel_size_recorded_none_or_from_voxel_size():
    from emda.data.normalization import Normalization
    from emda.model.checkpoint import Checkpoint

    ckpt = Checkpoint(UNetConfig(), {}, Normalization(), IntensityRange(0, 1), (50, 4, 6), "ft", {})
    assert ckpt.pixel_size == 5.0  # older checkpoints: their voxel size's (y, x)
    ckpt.training = {"pixel_size": 7.5}
    assert ckpt.pixel_size == 7.5
    ckpt.training = {"pixel_size": None}  # trained with --no-resample
    assert ckpt.pixel_size is None


@pytest.fixture(scope="module")
def model_at_5nm(tmp_path_factory):
    from emda.data.normalization import Normalization
    from emda.model import UNet
    from emda.model.checkpoint import Checkpoint, save_checkpoint

    torch.manual_seed(0)
    config = UNetConfig(base_channels=4, depth=2)
    net = UNet(config)
    with torch.no_grad():  # a random network answers ~0.5 everywhere: make it decisive
        for p in net.head.parameters():
            p.mul_(300)
    path = tmp_path_factory.mktemp("model") / "checkpoint.pt"
    save_checkpoint(Checkpoint(config, net.state_dict(), Normalization(), IntensityRange(0, 255),
                               (5.0, 5.0, 5.0), "ft", {}, training={"pixel_size": 5.0}),
                    path)  # fmt: skip
    return path


def _write(path, array, voxel=None):
    kwargs = {}
    if voxel is not None:
        kwargs = {"resolution": (1 / voxel[2], 1 / voxel[1]),
                  "metadata": {"spacing": voxel[0], "unit": "nm", "axes": "ZYX"}}  # fmt: skip
    tifffile.imwrite(path, array, imagej=voxel is not None, **kwargs)
    return str(path)


def test_predict_resamples_to_the_models_pixel_size_and_blocks_agree(model_at_5nm, tmp_path):
    from emda.inference.predict import PredictSettings, predict

    rng = np.random.default_rng(0)
    raw = (rng.random((2, 300, 260)) * 255).astype(np.uint8)
    src = _write(tmp_path / "in.tif", raw, (10.0, 10.0, 10.0))
    whole = PredictSettings(prob_dtype="float32", tile_size=64, planes="xy")
    blocked = PredictSettings(prob_dtype="float32", tile_size=64, planes="xy", block_size=256,
                              halo=64)  # fmt: skip
    plain = PredictSettings(prob_dtype="float32", tile_size=64, planes="xy", resample=False)
    outs = {}
    for name, s in (("whole", whole), ("blocked", blocked), ("plain", plain)):
        predict(model_at_5nm, src, str(tmp_path / f"{name}.tif"), settings=s, device="cpu")
        outs[name] = tifffile.imread(tmp_path / f"{name}.tif")
    assert outs["whole"].shape == raw.shape  # written back on the input's own grid
    blocks = np.abs(outs["whole"] - outs["blocked"]).mean()
    resampling = np.abs(outs["whole"] - outs["plain"]).mean()
    assert resampling > 0.005  # resampling changed the answer...
    assert blocks < resampling / 10  # ...and block borders, with their halo, did not


def test_predict_without_voxel_size_assumes_the_models(model_at_5nm, tmp_path, caplog):
    from emda.inference.predict import PredictSettings, predict

    src = _write(tmp_path / "bare.tif", np.zeros((1, 64, 64), np.uint8))
    with caplog.at_level(logging.WARNING, logger="emda"):
        predict(model_at_5nm, src, str(tmp_path / "p.tif"), settings=PredictSettings(planes="xy"),
                device="cpu")  # fmt: skip
    assert "has no voxel size: assumed the model's 5 nm pixels" in caplog.text


def test_adapt_records_the_working_pixel_size_and_the_targets_zoom(tmp_path):
    from tests.conftest import adapt_on_crops

    out = tmp_path / "run"
    result = adapt_on_crops(out, "--target-voxel-size", "50,9.2,9.2", method="ynet")
    assert result.exit_code == 0, result.output
    training = torch.load(out / "checkpoint.pt", weights_only=True)["training"]
    assert training["pixel_size"] == 5.0  # the EPFL source's
    assert training["target_zoom"] == pytest.approx(9.2 / 5.0)
    plain = adapt_on_crops(tmp_path / "plain", "--no-resample", method="ynet")
    assert plain.exit_code == 0, plain.output
    training = torch.load(tmp_path / "plain/checkpoint.pt", weights_only=True)["training"]
    assert training["pixel_size"] is None and training["target_zoom"] == 1.0


def test_several_sources_train_one_model(tmp_path):
    from tests.conftest import CROPS, adapt_on_crops

    sources = ["--source", str(CROPS / "epfl_train/raw.tif"), "--source-labels",
               str(CROPS / "epfl_train/labels.tif"), "--source", str(CROPS / "vnc/raw.tif"),
               "--source-labels", str(CROPS / "vnc/labels.tif")]  # fmt: skip
    result = adapt_on_crops(tmp_path / "two", *sources, "--source-z", "0:8", "--source-z", "0:8")
    assert result.exit_code == 0, result.output
    training = torch.load(tmp_path / "two/checkpoint.pt", weights_only=True)["training"]
    assert training["sources"] == [str(CROPS / "epfl_train/raw.tif"), str(CROPS / "vnc/raw.tif")]
    bad = adapt_on_crops(tmp_path / "bad", *sources, "--source-z", "0:8", "--source-z", "0:8",
                         "--source-z", "0:8")  # fmt: skip
    assert bad.exit_code != 0 and "--source-z: give it once, or once per --source" in bad.output
