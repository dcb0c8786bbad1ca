"""Training of neural instruments (``rtsynth train``): see :mod:`rtsynth.train.core`."""
