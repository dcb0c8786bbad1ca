"""Time one model step for N voices on one core: ``python -m rtsynth.nn.benchmark [-n 32]``.

Runs ``--rounds`` rounds of ``--steps`` steps and reports the quietest round (the machine is
shared). Uses :class:`NeuralInstrument.step` (the engine's path: the NumPy step of
:mod:`rtsynth.nn.fast` for every backbone, NaN guard included), with the model folders given
with ``-m`` (loaded without torch) or, without ``-m``, freshly initialised decoders of the
default sizes (these need torch to initialise).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from .. import spec
from .arch import BACKBONES
from .neural import NeuralInstrument
from .io import load_neural_instrument


def bench(inst, n: int, steps: int = 2000, rounds: int = 1) -> dict:
    inst.allocate(max(64, n))
    inst.warmup()
    rng = np.random.default_rng(0)
    f = rng.random((n, spec.N_FEATURES)).astype(np.float32)
    slots = np.arange(n, dtype=np.int64)[::-1].copy()
    h = np.zeros((n, spec.N_HARMONICS), np.float32)
    g = np.zeros((n, spec.N_NOISE_BANDS), np.float32)
    for _ in range(100):
        inst.step(f, slots, h, g)
    meds, p99s = [], []
    for _ in range(rounds):
        times = np.empty(steps)
        for i in range(steps):
            t0 = time.perf_counter()
            inst.step(f, slots, h, g)
            times[i] = time.perf_counter() - t0
        meds.append(1e3 * float(np.median(times)))
        p99s.append(1e3 * float(np.percentile(times, 99)))
    # on a shared machine the quietest round is the best estimate of the step's own cost
    best = int(np.argmin(meds))
    return {"median_ms": meds[best], "p99_ms": p99s[best], "rounds_median_ms": meds}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", "--voices", type=int, default=32)
    ap.add_argument("-m", "--model", action="append", default=[], help="model folder(s)")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5, help="report the quietest round")
    a = ap.parse_args(argv)
    if a.model:
        insts = [(m, load_neural_instrument(m)) for m in a.model]
    else:
        from .model import Decoder        # the default sizes need torch to initialise
        insts = []
        for kind in BACKBONES:
            d = Decoder(kind)
            cfg = {"hop": spec.HOP, "sample_rate": spec.SAMPLE_RATE}
            insts.append((f"{kind} (default size)", NeuralInstrument(d, cfg, kind)))
    for name, inst in insts:
        r = bench(inst, a.voices, a.steps, a.rounds)
        nparam = inst.n_params
        print(f"{name:32s} params {nparam:8d}  step for {a.voices} voices: median "
              f"{r['median_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms  (round medians "
              + " ".join(f"{m:.2f}" for m in r["rounds_median_ms"]) + ")")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
