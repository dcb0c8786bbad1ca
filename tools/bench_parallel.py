#!/usr/bin/env python
"""The live engine's block time with one thread and with two (rtsynth.engine.parallel), side by
side: held voices dealt over 15 channels with bend and CC traffic (the bench's capacity stream),
blocks paced (a sleep after each, as the generator sleeps between them), the rendering thread
SCHED_FIFO where the system allows it (as the generator's).

    python tools/bench_parallel.py [-i flute-lite] [--voices 192] [--rounds 2] [--seconds 5]

Prints, per thread count and round: median / mean / p99 of a block in microseconds, and how many
worker parts the engine took itself. Compare runs of one sitting only (the machine is shared).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402


def run(name: str, voices: int, threads: int, seconds: float, block: int = 128) -> dict:
    from rtsynth.bench import measure as M
    from rtsynth.engine.parallel import ParallelEngine
    from rtsynth.instruments import load_instrument
    e = ParallelEngine(load_instrument(name), block=block, n_slots=voices, threads=threads)
    try:
        e.warmup()
        ev, _, _ = M.held_stream(voices, seconds + 1.0, e.sr, 512, spread=True)
        for w, m in ev:
            e.push(e.time + w, m)
        n = int(seconds * e.sr / block)
        t = np.zeros(n)
        for b in range(n):
            t0 = time.perf_counter_ns()
            e.render()
            t[b] = time.perf_counter_ns() - t0
            time.sleep(0.0015)
        t = t[n // 5:] / 1e3                      # past the onsets
        return {"median": float(np.median(t)), "mean": float(t.mean()),
                "p99": float(np.percentile(t, 99)), "taken": e.taken,
                "active": e.active_voices}
    finally:
        e.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-i", "--instrument", default="flute-lite")
    ap.add_argument("--voices", type=int, default=192)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=5.0)
    a = ap.parse_args(argv)
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(5))
    except (OSError, AttributeError):
        pass
    for r in range(a.rounds):
        for threads in (2, 1):
            s = run(a.instrument, a.voices, threads, a.seconds)
            print(f"round {r + 1} threads {threads}: block median {s['median']:.0f} us, mean "
                  f"{s['mean']:.0f}, p99 {s['p99']:.0f} ({s['active']} voices sounding, "
                  f"{s['taken']} worker parts taken by the engine)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
