"""What keeps a user's data safe, in one place that every command uses.

- :mod:`~emda.safety.paths`: an output is never one of the command's inputs, however
  the two are spelled (symlinks, ``..``, a zarr store holding the input array);
- :mod:`~emda.safety.locks`: one writer per output or run directory at a time;
- :mod:`~emda.safety.validate`: a volume or checkpoint that would make results silently
  wrong (NaN, complex numbers, an unfinished output, absurd metadata) is refused;
- :mod:`~emda.safety.boundary`: operating-system errors become one-line messages.
"""
