"""The real-time cost of models, side by side: an engine block (128 frames) with ``voices``
held notes, the models interleaved round by round in one process, median per block.

    python -m rtsynth.eval.cost flute-lite violin violin@0 [--voices 32] [--rounds 7] [--blocks 200]

(``violin@0``: violin with its life off, ``Engine(life=0)``.)

Prints each model's median block time and its ratio to the first model's (the machine is
noisy: read the ratios, not the absolute times).
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _engine(name: str, voices: int, block: int, life: float = 1.0):
    from ..engine import Engine
    from ..instruments import load_instrument

    inst = load_instrument(name)
    e = Engine(inst, block=block, n_slots=voices, reverb=0.0, life=life)
    lo, hi = (inst.pitch_range if getattr(inst, "pitch_range", None) else (48.0, 84.0))
    for k, p in enumerate(np.linspace(lo + 1, hi - 1, voices).round().astype(int)):
        e.push(0, (0x90, int(p), 70 + (k * 7) % 50))
    for _ in range(40):          # past the attacks, every voice held
        e.render()
    return e


def block_costs(models: list[str], voices: int = 32, rounds: int = 7, blocks: int = 200,
                block: int = 128) -> dict[str, float]:
    """Median seconds per ``block``-frame engine block of each model, interleaved
    (``NAME@0``: the model with its life off)."""
    engines = {m: _engine(m.split("@")[0], voices, block,
                          float(m.split("@")[1]) if "@" in m else 1.0) for m in models}
    times: dict[str, list[float]] = {m: [] for m in models}
    for _ in range(rounds):
        for m, e in engines.items():
            t0 = time.perf_counter()
            for _ in range(blocks):
                e.render()
            times[m].append((time.perf_counter() - t0) / blocks)
    return {m: float(np.median(v)) for m, v in times.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rtsynth.eval.cost", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--voices", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--blocks", type=int, default=200)
    a = ap.parse_args(argv)
    c = block_costs(a.models, a.voices, a.rounds, a.blocks)
    ref = c[a.models[0]]
    for m, v in c.items():
        print(f"{m:>24s}  {v * 1e3:7.3f} ms a block ({a.voices} voices)  x{v / ref:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
