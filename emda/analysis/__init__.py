"""Measurements of segmented objects."""
