"""Scoring predictions against ground truth (pixel metrics) and the figures runs draw."""
