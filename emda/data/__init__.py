"""Training data: patches sampled from volumes, augmentation, intensity normalisation,
plane stacks of isotropic volumes, flips and rotations, amplitude mixing."""
