"""Y-Net: a reconstruction decoder on the shared encoder (Eq. 2).

A second decoder, without skip connections (it must go through the bottleneck,
or it could copy the input), reconstructs the normalised input of both domains:
loss = seg(source) + lambda_s * MSE(recon_s, x_s) + lambda_t * MSE(recon_t, x_t).
The decoder only shapes the encoder during training; the exported model and
``emda predict`` keep the segmentation path alone.
"""

from dataclasses import dataclass, field

import torch.nn.functional as F
from torch import nn

from emda.methods import Decoder, Method, hookimpl


@dataclass
class YNetOptions:
    lambda_source: float = field(default=1.0, metadata={"help": "weight of source recon. MSE"})
    lambda_target: float = field(default=1.0, metadata={"help": "weight of target recon. MSE"})

    def __post_init__(self) -> None:
        if self.lambda_source < 0 or self.lambda_target < 0:
            raise ValueError("lambda_source and lambda_target must be >= 0")


class ReconstructionDecoder(nn.Module):
    def __init__(self, encoder_channels: list[int], batch_norm: bool = True) -> None:
        super().__init__()
        self.decoder = Decoder(encoder_channels, skip=False, batch_norm=batch_norm)
        self.out = nn.Conv2d(self.decoder.out_channels, 1, kernel_size=1)

    def forward(self, features):
        return self.out(self.decoder(features))


class YNet(Method):
    name = "ynet"
    description = "Reconstruct both domains' inputs from the shared encoder (Y-Net, Eq. 2)."
    Options = YNetOptions

    def build_heads(self, model):
        return {
            "reconstruction": ReconstructionDecoder(model.encoder.channels, model.config.batch_norm)
        }

    def loss_terms(self, step):
        terms = super().loss_terms(step)
        decoder = step.heads["reconstruction"]
        if self.options.lambda_source > 0:
            recon = decoder(step.source_out.features).float()
            terms["recon_source"] = self.options.lambda_source * F.mse_loss(recon, step.source.x)
        if self.options.lambda_target > 0:
            recon = decoder(step.target_out.features).float()
            terms["recon_target"] = self.options.lambda_target * F.mse_loss(recon, step.target.x)
        return terms


@hookimpl
def emda_register_methods(register):
    register.add(YNet)
