"""The model step's cost per voice-frame, models side by side (issue 16 item 4):

    python tools/bench_model_step.py flute-life flute-gru flute-gru64 [--rounds 7]

Each model's fused step (``rtsynth.engine.offline._model_rows``: the kernel both engines call,
the CNN's, GRU's or attention's) on 16 voices x 43 frames a call (one offline stepper's share of
32 voices in an 8192-sample block) and on 32 voices x 1 frame (a live block), rounds interleaved
over the models, thread CPU time (robust to the VM's preemption), medians of the rounds.
"""
import os
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")    # as rtsynth sets it, before NumPy loads

import argparse  # noqa: E402
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--rounds", type=int, default=7)
    a = ap.parse_args(argv)
    from rtsynth.engine.offline import _model_rows
    from rtsynth.instruments import load_instrument
    from rtsynth.nn.fast import blas_pointers
    from rtsynth.nn.neural import _TAPER_COEF
    cases = [(16, 43), (32, 1)]
    blas = blas_pointers()
    rng = np.random.default_rng(0)
    runs = {}
    for m in a.models:
        inst = load_instrument(m)
        inst.allocate(32, max_rows=16 * 43)
        fa = inst._fast.fused_args(_TAPER_COEF) + (np.zeros(2, np.int64),)
        zb = np.zeros((1, inst._fast.z_dim), np.float32)
        for v, f in cases:
            x = np.full((v * f, inst.n_features), 0.5, np.float32)
            x[:, 0] = rng.uniform(0.3, 0.6, v * f)
            slots = np.tile(np.arange(v, dtype=np.int64), f)
            h = np.zeros((v * f, inst._fast.k), np.float32)
            g = np.zeros((v * f, len(inst._fast.b_head) - 1 - inst._fast.k), np.float32)
            runs[(m, (v, f))] = (x, zb, slots, fa, h, g)
            _model_rows(blas, x, zb, slots, len(slots), *fa[:6], h, g, fa[6])
    times = {k: [] for k in runs}
    for _ in range(a.rounds):
        for (m, c), (x, zb, slots, fa, h, g) in runs.items():
            n = 20 if c[1] > 1 else 400
            t0 = time.thread_time()
            for _ in range(n):
                _model_rows(blas, x, zb, slots, len(slots), *fa[:6], h, g, fa[6])
            times[(m, c)].append((time.thread_time() - t0) / n / len(slots) * 1e6)
    for m in a.models:
        print(f"{m:24s}", "   ".join(f"{v}x{f}: {np.median(times[(m, (v, f))]):.2f} us/voice-frame"
                                      for v, f in cases))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
