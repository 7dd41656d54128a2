"""Property-based tests (hypothesis): the sliding-window predictor and evaluation hold for
any shape, tile, overlap, batch and threshold, not just the examples we thought of."""

import numpy as np
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from emda.evaluation.evaluate import score_volume
from emda.inference.sliding_window import SlidingWindowPredictor, sliding_window_inference
from emda.io.volume import Volume
from emda.model import UNet, UNetConfig

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
window = {
    "height": st.integers(1, 150),
    "width": st.integers(1, 150),
    "tile": st.sampled_from([8, 16, 32, 48, 64]),
    "overlap": st.floats(0.0, 0.9),
    "batch": st.integers(1, 9),
}
# At overlap 0.9 a 16-pixel tile moves 2 pixels, so a pixel is the float32 weighted sum
# of up to 64 windows: its rounding reaches a few 1e-6, above assert_close's float32
# default (1.3e-6). Seams would be off by far more.
SUMMED = {"rtol": 1e-5, "atol": 1e-5}


@FAST
@given(**window, value=st.floats(-5, 5))
@example(height=23, width=30, tile=16, overlap=0.890625, batch=1, value=4.0)  # 2.3e-6 off
def test_constant_images_come_out_constant_whatever_the_tiling(
    height, width, tile, overlap, batch, value
):
    image = torch.full((1, 1, height, width), value)
    out = sliding_window_inference(image, lambda t: 3 * t, tile, overlap=overlap, batch_size=batch)
    assert out.shape == image.shape
    torch.testing.assert_close(out, torch.full_like(image, 3 * value), **SUMMED)  # no seams


@FAST
@given(**window, seed=st.integers(0, 2**16))
def test_a_pointwise_model_is_reproduced_exactly(height, width, tile, overlap, batch, seed):
    image = torch.rand(1, 1, height, width, generator=torch.Generator().manual_seed(seed))
    out = sliding_window_inference(image, torch.tanh, tile, overlap=overlap, batch_size=batch)
    torch.testing.assert_close(out, torch.tanh(image), **SUMMED)


_model = UNet(UNetConfig(base_channels=4, depth=2)).eval()


@settings(max_examples=15, deadline=None)
@given(
    height=st.integers(1, 90),
    width=st.integers(1, 90),
    tile=st.sampled_from([16, 32, 48]),
    overlap=st.floats(0.0, 0.75),
    batches=st.tuples(st.integers(1, 6), st.integers(1, 6)),
)
def test_a_unet_s_output_has_the_input_shape_and_ignores_tile_batching(
    height, width, tile, overlap, batches
):
    image = np.random.default_rng(height * 1000 + width).random((height, width)).astype("f4")
    a, b = (SlidingWindowPredictor(_model, torch.device("cpu"), tile, overlap, n).predict_slice(
        image) for n in batches)  # fmt: skip
    assert a.shape == image.shape
    assert np.all((a >= 0) & (a <= 1))
    np.testing.assert_allclose(a, b, atol=1e-5)


@FAST
@given(
    shape=st.tuples(st.integers(1, 6), st.integers(1, 30), st.integers(1, 30)),
    threshold=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
    as_float=st.booleans(),
)
def test_evaluation_equals_the_numpy_formula(shape, threshold, seed, as_float):
    rng = np.random.default_rng(seed)
    prob = rng.integers(0, 256, shape).astype(np.uint8)
    truth = (rng.random(shape) < rng.random()).astype(np.uint8)
    pred_volume = Volume(prob.astype(np.float32) / 255 if as_float else prob, "pred")
    result = score_volume(pred_volume, Volume(truth, "truth"), threshold).total
    pred = prob.astype(np.float32) / 255 >= threshold
    gt = truth.astype(bool)
    tp, fp = int(np.sum(pred & gt)), int(np.sum(pred & ~gt))
    fn, tn = int(np.sum(~pred & gt)), int(np.sum(~pred & ~gt))
    assert (result.tp, result.fp, result.fn, result.tn) == (tp, fp, fn, tn)
    union = tp + fp + fn
    assert result.iou == (tp / union if union else 1.0)
