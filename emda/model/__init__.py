from emda.model.unet import Decoder, Encoder, SegmentationOutput, UNet, UNetConfig

__all__ = ["Decoder", "Encoder", "SegmentationOutput", "UNet", "UNetConfig"]
