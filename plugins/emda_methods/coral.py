"""CORAL: align the covariance of encoder features of source and target (Eq. 1).

loss = seg(source) + sum_l lambda_l * ||C_s^l - C_t^l||_F^2 / (4 d_l^2)
(Sun & Saenko, Deep CORAL, 2016).
"""

from dataclasses import dataclass, field

from emda.methods import AlignmentOptions, FeatureAlignment, coral, hookimpl


@dataclass
class CoralOptions(AlignmentOptions):
    # CORAL distances are ~100x smaller than MMD^2 on encoder features (emda.methods.alignment)
    lambdas: tuple[float, ...] = field(
        default=(0.0, 0.0, 10.0, 30.0, 100.0),
        metadata={"help": "weight per encoder level and the bottleneck, shallow to deep"},
    )


class Coral(FeatureAlignment):
    name = "coral"
    description = "Match second-order statistics (covariances) of encoder features (Eq. 1)."
    Options = CoralOptions

    def discrepancy(self, source, target):
        return coral(source, target)


@hookimpl
def emda_register_methods(register):
    register.add(Coral)
