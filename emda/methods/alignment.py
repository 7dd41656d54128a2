"""Building blocks for feature-alignment methods (Roels et al. 2019, Eq. 1).

loss = seg(source) + sum_l lambda_l * D(F_s^l, F_t^l) over the encoder levels l
(and the bottleneck). Feature maps are (B, C, H, W); every spatial position is
one C-dimensional sample, and a bounded random subset of positions per level
keeps D's cost independent of the patch size. Plugins (MMD, CORAL, DANN and
third-party methods) use these functions; nothing here knows about a method.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from emda.errors import EmdaError
from emda.methods.base import Method
from emda.precision import full_precision

# Default level weights (lambda_l) of the built-in methods are 0 for the two
# shallowest levels (edges, texture, contrast: legitimately domain-specific) and
# grow x3 per level to the bottleneck, where features should be domain-invariant.
# Their scale matches each discrepancy's size on the encoder features of a
# source-trained network (MMD^2 ~0.1-0.3 per level, CORAL ~1e-3, DANN's BCE
# ln 2), so that each term starts at roughly 5-25 % of the segmentation loss.

#: positions sampled per level and domain for a discrepancy. 256 C-dimensional
#: samples give a kernel matrix of 512 x 512 (cheap) and a stable covariance
#: for C <= 256; raise with the method's ``samples`` option.
DEFAULT_SAMPLES = 256


def level_weights(lambdas: Sequence[float], n_levels: int, option: str = "lambdas") -> list[float]:
    """Check one weight per encoder level plus the bottleneck (shallow to deep)."""
    weights = [float(v) for v in lambdas]
    if len(weights) != n_levels:
        raise EmdaError(
            f"--opt {option}: give {n_levels} comma-separated weights (one per encoder level "
            f"and the bottleneck, shallow to deep), got {len(weights)}"
        )
    if any(w < 0 or not math.isfinite(w) for w in weights):
        raise EmdaError(f"--opt {option}: weights must be finite and >= 0")
    return weights


def aligned_features(step, lambdas: Sequence[float], samples: int, option: str = "lambdas"):
    """Yield (level, weight, source samples, target samples) for every level with weight > 0.

    ``step`` is an :class:`emda.TrainStep` whose target was run through the encoder.
    """
    source, target = step.source_out.features, step.target_out.features
    weights = level_weights(lambdas, len(source), option)
    for level, (weight, fs, ft) in enumerate(zip(weights, source, target)):
        if weight > 0:
            yield level, weight, sample_positions(fs, samples), sample_positions(ft, samples)


def sample_positions(features: torch.Tensor, n: int, generator: torch.Generator | None = None):
    """(B, C, H, W) -> (min(n, B*H*W), C): random spatial positions as samples."""
    b, c, h, w = features.shape
    flat = features.permute(0, 2, 3, 1).reshape(b * h * w, c)
    if flat.shape[0] <= n:
        return flat
    index = torch.randperm(flat.shape[0], generator=generator, device="cpu")[:n]
    return flat[index.to(flat.device)]


def gaussian_mmd2(
    x: torch.Tensor, y: torch.Tensor, scales: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 4.0)
) -> torch.Tensor:
    """Squared maximum mean discrepancy (biased V-statistic, always >= 0).

    The kernel is a sum of Gaussians exp(-d^2 / (2 s sigma^2)) over ``scales``,
    where sigma^2 is the median pairwise squared distance of the pooled samples
    (the median heuristic, treated as a constant in the gradient).
    """
    with full_precision(x):  # distances of nearby samples cancel: float32 throughout
        x, y = x.float(), y.float()
        z = torch.cat([x, y])
        d2 = torch.cdist(z, z).pow(2)
        n = x.shape[0]
        off_diagonal = d2[~torch.eye(len(z), dtype=torch.bool, device=z.device)]
        sigma2 = torch.quantile(off_diagonal.detach(), 0.5).clamp_min(1e-12)
        k = sum(torch.exp(-d2 / (2 * s * sigma2)) for s in scales)
        return k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()


def covariance(x: torch.Tensor) -> torch.Tensor:
    """(n, d) samples -> (d, d) unbiased covariance: centre, then X^T X / (n - 1)."""
    with full_precision(x):  # a covariance in bfloat16 keeps 3 significant digits
        x = x.float()
        centred = x - x.mean(dim=0, keepdim=True)
        return centred.T @ centred / max(x.shape[0] - 1, 1)


def coral(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """CORAL distance ||C_s - C_t||_F^2 / (4 d^2) (Sun & Saenko 2016)."""
    d = x.shape[1]
    return (covariance(x) - covariance(y)).pow(2).sum() / (4 * d * d)


class _GradientReversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, coefficient: float) -> torch.Tensor:
        ctx.coefficient = coefficient
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.coefficient * grad, None


def grad_reverse(x: torch.Tensor, coefficient: float = 1.0) -> torch.Tensor:
    """Identity forward; multiplies the gradient by ``-coefficient`` backward (Ganin 2015)."""
    return _GradientReversal.apply(x, float(coefficient))


def ganin_schedule(progress: float, gamma: float = 10.0) -> float:
    """2 / (1 + exp(-gamma p)) - 1: 0 at the start of training, -> 1 at the end."""
    return 2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0


@dataclass
class AlignmentOptions:
    """Options every Eq. 1 method shares; subclasses override the default weights."""

    lambdas: tuple[float, ...] = field(
        default=(0.0, 0.0, 0.1, 0.3, 1.0),
        metadata={"help": "weight per encoder level and the bottleneck, shallow to deep"},
    )
    samples: int = field(
        default=DEFAULT_SAMPLES, metadata={"help": "feature positions sampled per level/domain"}
    )

    def __post_init__(self) -> None:
        if self.samples < 2:
            raise ValueError("samples must be >= 2")


class FeatureAlignment(Method, abc.ABC):
    """Eq. 1 with a discrepancy D: seg(source) + sum_l lambda_l * D(F_s^l, F_t^l).

    Subclasses set ``name``, ``description``, ``Options`` (an
    :class:`AlignmentOptions`) and implement :meth:`discrepancy`; each level's
    term is logged as ``<name><level>``.
    """

    Options = AlignmentOptions

    @abc.abstractmethod
    def discrepancy(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """D between (n, C) source and target feature samples."""

    def build_heads(self, model):
        level_weights(self.options.lambdas, len(model.encoder.channels))  # fail before training
        return {}

    def loss_terms(self, step):
        terms = super().loss_terms(step)
        for level, weight, xs, xt in aligned_features(
            step, self.options.lambdas, self.options.samples
        ):
            terms[f"{self.name}{level}"] = weight * self.discrepancy(xs, xt)
        return terms
