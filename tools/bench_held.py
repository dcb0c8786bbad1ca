#!/usr/bin/env python
"""Hold K voices on `rtsynth play` for a few seconds, several times, and say where the slow
blocks were: the bench's dropout/capacity stream, with every block's generator time kept.

    python tools/bench_held.py -i flute -k 64 --seconds 5 --runs 3 [-- --ahead=1]

Starts a private JACK dummy server (48 kHz, 128-frame periods) and the bench's rig; for each run
prints dropouts, underruns, the generator time per block (median, max) and the first blocks that
took more than ``--slow`` ms, with their time from the start of the stream. Arguments after
``--`` go to `rtsynth play`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile

import numpy as np


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-i", "--instrument", default="flute")
    ap.add_argument("-k", "--voices", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--period", type=int, default=128)
    ap.add_argument("--slow", type=float, default=2.0, help="ms: a block above this is listed")
    a = ap.parse_args(argv)

    from rtsynth.bench import measure as M
    from rtsynth.bench.synths import LiveSynth, rtsynth_spec
    from rtsynth.jackserver import JackServer
    from rtsynth.testing.jackrig import JackRig

    with JackServer(period=a.period) as srv, \
            JackRig(n_inputs=2, servername=srv.name, name="held-rig",
                    max_seconds=a.seconds + 10) as rig:
        for run in range(a.runs):
            spec = rtsynth_spec(a.instrument, extra=extra)
            live = LiveSynth(spec, srv.env, rig, a.period, voices=max(a.voices, 32),
                             workdir=tempfile.mkdtemp(prefix="rtsynth-held-"))
            with live:
                row = M.measure_held(live, srv, a.voices, a.seconds)
            row = M.finish_held(row, live.stats)
            g = np.asarray(live.stats.get("gen_ms") or [0.0])
            slow = np.flatnonzero(g > a.slow)[:8]
            where = ", ".join(f"#{i} ({i * a.period / 48000:.2f} s, {g[i]:.2f} ms)" for i in slow)
            print(f"{a.instrument} {a.voices} voices, run {run}: dropouts {row['dropouts']} "
                  f"(underruns {row['underruns']}), {len(g)} blocks, generator median "
                  f"{np.median(g):.2f} max {g.max():.2f} ms; above {a.slow:g} ms: "
                  f"{where or 'none'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
