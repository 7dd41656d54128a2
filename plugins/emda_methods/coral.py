"""CORAL: align the covariance of encoder features of source and target (Eq. 1).

loss = seg(source) + sum_l lambda_l * ||C_s^l - C_t^l||_F^2 / (4 d_l^2)
(Sun & Saenko, Deep CORAL, 2016).
"""

from dataclasses import dataclass, field

from emda import Method, hookimpl
from emda.alignment import DEFAULT_SAMPLES, aligned_features, coral, level_weights


@dataclass
class CoralOptions:
    lambdas: tuple[float, ...] = field(
        default=(0.0, 0.0, 10.0, 30.0, 100.0),
        metadata={"help": "weight per encoder level and the bottleneck, shallow to deep"},
    )
    samples: int = field(
        default=DEFAULT_SAMPLES, metadata={"help": "feature positions sampled per level/domain"}
    )

    def __post_init__(self) -> None:
        if self.samples < 2:
            raise ValueError("samples must be >= 2")


class Coral(Method):
    name = "coral"
    description = "Match second-order statistics (covariances) of encoder features (Eq. 1)."
    Options = CoralOptions

    def build_heads(self, model):
        level_weights(self.options.lambdas, len(model.encoder.channels))
        return {}

    def loss_terms(self, step):
        terms = super().loss_terms(step)
        for level, weight, xs, xt in aligned_features(
            step, self.options.lambdas, self.options.samples
        ):
            terms[f"coral{level}"] = weight * coral(xs, xt)
        return terms


@hookimpl
def emda_register_methods(register):
    register.add(Coral)
