"""Prediction: the sliding window, blocks of large volumes, the predict pipeline, Dask
workers, and a finished model's predictions as pseudo-labels for training."""
