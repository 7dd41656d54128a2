"""Volumes in and out: TIFF, zarr and OME-Zarr reading, writers that never leave a
half-written output, and the public EM datasets."""
