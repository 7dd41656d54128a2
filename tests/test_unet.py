import pytest
import torch

from emda.model import Decoder, UNet, UNetConfig


def test_logits_and_feature_taps_have_the_documented_shapes():
    model = UNet(UNetConfig(base_channels=4, depth=3))
    out = model.forward_features(torch.randn(2, 1, 64, 48))
    assert out.logits.shape == (2, 1, 64, 48)
    assert [f.shape[1] for f in out.features] == [4, 8, 16, 32] == model.encoder.channels
    assert [f.shape[-2:] for f in out.features] == [(64, 48), (32, 24), (16, 12), (8, 6)]


def test_default_is_the_papers_network():
    model = UNet()
    assert model.encoder.channels == [16, 32, 64, 128, 256]
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def test_encode_skips_the_decoder_and_forward_returns_logits():
    model = UNet(UNetConfig(base_channels=4, depth=2)).eval()
    x = torch.randn(1, 1, 32, 32)
    enc = model.encode(x)
    assert enc.logits is None and len(enc.features) == 3
    torch.testing.assert_close(model(x), model.forward_features(x).logits)


def test_sizes_that_do_not_divide_are_rejected_clearly():
    with pytest.raises(ValueError, match="multiples of 16"):
        UNet()(torch.randn(1, 1, 40, 64))


def test_a_head_can_hang_off_the_encoder_without_touching_the_unet():
    model = UNet(UNetConfig(base_channels=4, depth=2))
    recon = Decoder(model.encoder.channels, skip=False)
    features = model.encoder(torch.randn(2, 1, 32, 32))
    assert recon(features).shape == (2, 4, 32, 32)


def test_invalid_config_is_rejected():
    with pytest.raises(ValueError, match="depth"):
        UNetConfig(depth=0)
