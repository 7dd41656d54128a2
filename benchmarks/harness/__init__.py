"""The paper-table harness behind ``benchmarks/paper_table.py``.

- :mod:`harness.config`: what decides a row (profile, direction, method options,
  augmentation, precision) and the key hashed from it;
- :mod:`harness.running`: training, recalibrating, predicting and scoring a row with
  emda's CLI, resumable;
- :mod:`harness.adopt`: a run made elsewhere taken in as a row's model;
- :mod:`harness.labels`: a row's place and name in the table;
- :mod:`harness.report`: the table, the figures and the results page.
"""
