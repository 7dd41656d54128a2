"""Training: the one loop, its settings, resume state, run directories, target batch
norm, weight averaging, held-out source validation and the training commands."""
