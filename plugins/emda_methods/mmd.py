"""MMD: align encoder features of source and target by maximum mean discrepancy (Eq. 1).

loss = seg(source) + sum_l lambda_l * MMD^2(F_s^l, F_t^l), with a multi-bandwidth
Gaussian kernel whose bandwidths are scaled by the median pairwise distance.
"""

from dataclasses import dataclass

from emda.methods import AlignmentOptions, FeatureAlignment, gaussian_mmd2, hookimpl


@dataclass
class MMDOptions(AlignmentOptions):
    """The shared Eq. 1 defaults: lambdas 0, 0, 0.1, 0.3, 1 (see emda.methods.alignment)."""


class MMD(FeatureAlignment):
    name = "mmd"
    description = "Minimise the maximum mean discrepancy of encoder features (Eq. 1)."
    Options = MMDOptions

    def discrepancy(self, source, target):
        return gaussian_mmd2(source, target)


@hookimpl
def emda_register_methods(register):
    register.add(MMD)
