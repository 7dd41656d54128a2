"""`emda adapt` with source and target in one forward pass (shared batch-norm statistics),
for the full-length diagnostic run of `joint_bn_probe.py`'s question: does DANN adapt
better when batch norm no longer hides the domain shift? Arguments are `emda adapt`'s.

    python benchmarks/joint_bn_adapt.py --source ... --target ... --method dann --out RUN
"""

import sys

import joint_bn_probe

import emda.training.loop
from emda.cli import app

if __name__ == "__main__":
    joint_bn_probe.STOP_AFTER = sys.maxsize  # the whole run, not the probe's first steps
    emda.training.loop.compute_terms = joint_bn_probe.joint_terms
    app(["adapt", *sys.argv[1:]])
