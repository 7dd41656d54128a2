import itertools

import numpy as np
import pytest
import torch

from emda import EmdaError
from emda.inference.sliding_window import (
    SlidingWindowPredictor,
    fitted_tile,
    sliding_window_inference,
    tile_starts,
)
from emda.model import UNet, UNetConfig


@pytest.mark.parametrize(("size", "tile", "overlap"), [(100, 32, 0.25), (64, 64, 0.5), (33, 32, 0)])
def test_tiles_cover_the_axis_and_end_at_the_border(size, tile, overlap):
    starts = tile_starts(size, tile, overlap)
    assert starts[0] == 0 and starts[-1] == size - tile
    assert all(b - a <= tile for a, b in itertools.pairwise(starts))


@pytest.mark.parametrize("shape", [(70, 90), (32, 32), (10, 50), (1, 1)])
def test_constant_image_gives_constant_output_no_seams(shape):
    image = torch.full((1, 1, *shape), 0.7)
    out = sliding_window_inference(image, lambda t: t * 2, 32, overlap=0.3, batch_size=3)
    assert out.shape == image.shape
    torch.testing.assert_close(out, torch.full_like(image, 1.4))


def test_pointwise_model_is_reproduced_exactly_across_tile_borders():
    image = torch.rand(2, 1, 75, 101)
    out = sliding_window_inference(image, torch.sigmoid, 32, overlap=0.25, batch_size=5)
    torch.testing.assert_close(out, torch.sigmoid(image))


def test_tile_sized_image_equals_the_direct_forward_pass():
    torch.manual_seed(0)
    model = UNet(UNetConfig(base_channels=4, depth=2)).eval()
    predictor = SlidingWindowPredictor(model, torch.device("cpu"), tile_size=64, batch_size=2)
    image = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    with torch.no_grad():
        direct = torch.sigmoid(model(torch.from_numpy(image)[None, None]))[0, 0].numpy()
    np.testing.assert_allclose(predictor.predict_slice(image), direct, atol=1e-5)


@pytest.mark.parametrize(
    ("shape", "expected"),
    [((165, 1024), (176, 256)), ((768, 1024), (256, 256)), ((3, 165, 768), (176, 256)),
     ((256, 100), (256, 112)), ((1, 1), (16, 16))],
)  # fmt: skip
def test_a_side_shorter_than_the_tile_gets_its_own_length_rounded_to_the_divisor(shape, expected):
    assert fitted_tile(shape, 256, 16) == expected


def test_an_image_shorter_than_the_tile_is_one_forward_pass_without_padding():
    torch.manual_seed(0)
    model = UNet(UNetConfig(base_channels=4, depth=2)).eval()  # divisor 4
    predictor = SlidingWindowPredictor(model, torch.device("cpu"), tile_size=64, batch_size=2)
    image = np.random.default_rng(0).random((40, 64)).astype(np.float32)  # a (z, x) plane
    with torch.no_grad():
        direct = torch.sigmoid(model(torch.from_numpy(image)[None, None]))[0, 0].numpy()
    # a 64-row tile would reflect 24 rows in: the bottom rows would differ
    np.testing.assert_allclose(predictor.predict_slice(image), direct, atol=1e-5)


def test_result_does_not_depend_on_tile_batch_size():
    model = UNet(UNetConfig(base_channels=4, depth=2)).eval()
    image = np.random.default_rng(1).random((90, 70)).astype(np.float32)
    a = SlidingWindowPredictor(model, torch.device("cpu"), 32, 0.25, 1).predict_slice(image)
    b = SlidingWindowPredictor(model, torch.device("cpu"), 32, 0.25, 7).predict_slice(image)
    np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize(
    ("tile", "overlap", "batch", "msg"),
    [
        (30, 0.2, 1, "multiple of 4"),
        (32, 1.0, 1, "--overlap"),
        (32, 0.2, 0, "--batch-size"),
        (0, 0.2, 1, "--tile-size"),
    ],
)
def test_bad_window_settings_are_errors(tile, overlap, batch, msg):
    model = UNet(UNetConfig(base_channels=4, depth=2))
    with pytest.raises(EmdaError, match=msg):
        SlidingWindowPredictor(model, torch.device("cpu"), tile, overlap, batch)


def test_tta_output_is_invariant_to_flipping_and_rotating_the_input():
    torch.manual_seed(0)
    model = UNet(UNetConfig(base_channels=4, depth=2)).eval()
    tta = SlidingWindowPredictor(model, torch.device("cpu"), 32, 0.25, 4, tta=True)
    plain = SlidingWindowPredictor(model, torch.device("cpu"), 32, 0.25, 4)
    image = np.random.default_rng(2).random((48, 48)).astype(np.float32)
    out = tta.predict_slice(image)
    np.testing.assert_allclose(tta.predict_slice(image[:, ::-1])[:, ::-1], out, atol=1e-5)
    np.testing.assert_allclose(np.rot90(tta.predict_slice(np.rot90(image).copy()), -1), out,
                               atol=1e-5)  # fmt: skip
    assert not np.allclose(plain.predict_slice(image), out, atol=1e-3)  # it does something


def test_tta_with_rectangular_tiles_is_invariant_to_rotating_the_input():
    torch.manual_seed(0)
    model = UNet(UNetConfig(base_channels=4, depth=2)).eval()
    tta = SlidingWindowPredictor(model, torch.device("cpu"), 32, 0.25, 4, tta=True)
    image = np.random.default_rng(3).random((24, 48)).astype(np.float32)  # 24 x 32 tiles
    out = tta.predict_slice(image)
    np.testing.assert_allclose(np.rot90(tta.predict_slice(np.rot90(image).copy()), -1), out,
                               atol=1e-5)  # fmt: skip
    np.testing.assert_allclose(tta.predict_slice(image[::-1])[::-1], out, atol=1e-5)


def test_tta_of_a_pointwise_model_changes_nothing():
    from emda.inference.sliding_window import dihedral_average

    image = torch.rand(1, 1, 40, 56)
    out = sliding_window_inference(image, dihedral_average(torch.sigmoid), 32, 0.25, 3)
    torch.testing.assert_close(out, torch.sigmoid(image))


def test_dihedral_average_of_fewer_views_is_the_mean_of_the_first_ones():
    from emda.data.dihedral import dihedral, undo_dihedral
    from emda.inference.sliding_window import dihedral_average

    conv = torch.nn.Conv2d(1, 1, 3, padding=1)  # not rotation-invariant: views differ
    tiles = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        views = [undo_dihedral(conv(dihedral(tiles, k)), k) for k in range(8)]
        torch.testing.assert_close(dihedral_average(conv, 2)(tiles), (views[0] + views[1]) / 2)
        torch.testing.assert_close(dihedral_average(conv)(tiles), sum(views) / 8)
        assert not torch.allclose(dihedral_average(conv, 2)(tiles), dihedral_average(conv)(tiles))
    with pytest.raises(ValueError, match="views must be in 1..8"):
        dihedral_average(conv, 0)
