"""The network: a 2D U-Net whose encoder features methods can tap, and checkpoints."""

from emda.model.unet import Decoder, Encoder, SegmentationOutput, UNet, UNetConfig

__all__ = ["Decoder", "Encoder", "SegmentationOutput", "UNet", "UNetConfig"]
