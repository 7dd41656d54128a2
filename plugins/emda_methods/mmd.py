"""MMD: align encoder features of source and target by maximum mean discrepancy (Eq. 1).

loss = seg(source) + sum_l lambda_l * MMD^2(F_s^l, F_t^l), with a multi-bandwidth
Gaussian kernel whose bandwidths are scaled by the median pairwise distance.
"""

from dataclasses import dataclass, field

from emda import Method, hookimpl
from emda.alignment import DEFAULT_SAMPLES, aligned_features, gaussian_mmd2, level_weights


@dataclass
class MMDOptions:
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


class MMD(Method):
    name = "mmd"
    description = "Minimise the maximum mean discrepancy of encoder features (Eq. 1)."
    Options = MMDOptions

    def build_heads(self, model):
        level_weights(self.options.lambdas, len(model.encoder.channels))  # fail before training
        return {}

    def loss_terms(self, step):
        terms = super().loss_terms(step)
        for level, weight, xs, xt in aligned_features(
            step, self.options.lambdas, self.options.samples
        ):
            terms[f"mmd{level}"] = weight * gaussian_mmd2(xs, xt)
        return terms


@hookimpl
def emda_register_methods(register):
    register.add(MMD)
