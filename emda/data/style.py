"""Target-style source patches: Fourier amplitude mixing.

A patch's Fourier *phase* carries its structure (edges, membranes, the outline of a
mitochondrion); its *amplitude* spectrum carries much of its appearance: contrast,
smoothness, texture, noise. Replacing part of a source patch's amplitude with a target
patch's keeps the source labels valid and shows the network source structures with the
target's look (FDA, Yang & Soatto, CVPR 2020, swap a low-frequency band; FACT, Xu et
al., CVPR 2021, mix the whole spectrum with a random weight, which is what this does).

Why the whole spectrum: between EM microscopes and protocols much of the gap is texture
and sharpness (cristae, focus, noise), i.e. high frequencies, which a low-frequency
swap would leave alone.
"""

from __future__ import annotations

import torch


def amplitude_mix(
    source: torch.Tensor, target: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Source patches with amplitude spectra ``(1 - w) |F(source)| + w |F(target)|``.

    ``source`` and ``target``: ``(B, C, H, W)`` patches of the same shape; ``weights``:
    ``(B,)`` mixing weights in ``[0, 1]``, one per pair (0 returns the source patch,
    1 gives it the target's whole amplitude spectrum). The source's phase is kept.
    """
    if source.shape != target.shape:
        raise ValueError(f"source {tuple(source.shape)} and target {tuple(target.shape)} differ")
    if weights.shape != source.shape[:1]:
        raise ValueError(f"weights {tuple(weights.shape)}: expected one per patch")
    size = source.shape[-2:]
    spectrum = torch.fft.rfft2(source.float())
    w = weights.to(spectrum.real).reshape(-1, *([1] * (source.dim() - 1)))
    amplitude = (1 - w) * spectrum.abs() + w * torch.fft.rfft2(target.float()).abs()
    mixed = torch.polar(amplitude, spectrum.angle())
    return torch.fft.irfft2(mixed, s=size).to(source.dtype).contiguous()
