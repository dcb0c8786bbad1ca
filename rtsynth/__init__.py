"""rtsynth: a real-time neural synthesizer and instrument host."""

import os as _os

# The batches here are small (one row per voice): a BLAS thread pool only adds wake-up latency
# and contends with the audio threads (measured: 16 ms instead of 0.6 ms per NumPy GRU step with
# the default OpenBLAS threads). Must be set before NumPy loads its BLAS; a user's explicit
# setting wins.
for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
    _os.environ.setdefault(_var, "1")

__version__ = "0.1.0"
