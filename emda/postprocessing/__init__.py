"""Work on predictions already written: ensembles of several runs, mask cleaning."""
