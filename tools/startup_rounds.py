"""Start-up to first sound, rtsynth trees against FluidSynth, in interleaved rounds.

The bench's start-up row (``rtsynth bench --rows startup``) is one launch per synth on a fresh
server, rtsynth always first. This runs N rounds of the same measurement (``measure_startup``:
a key every 10 ms from the launch, the first sample above 1e-3), each round on a fresh private
JACK server, the synths in a rotating order, and prints per-round ratios against FluidSynth
with their quartiles, and each process's CPU time (all threads) when its first sound came.

    python tools/startup_rounds.py 15 old=/tmp/old-tree new= fs

``NAME=PATH``: rtsynth with ``PYTHONPATH=PATH`` (a copy of the package with its own compiled
kernels; empty: the installed one); ``fs``: FluidSynth (program 0, as the bench). FIXED=1 keeps
the order as given (rtsynth first, as the bench).
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import sys
import time

from rtsynth.bench import measure as M
from rtsynth.bench.runner import _dry_args, _with_args
from rtsynth.bench.synths import LiveSynth, fluidsynth_spec, rtsynth_spec
from rtsynth.jackserver import JackServer
from rtsynth.testing.jackrig import JackRig


def cpu_ms(pid: int) -> float:
    tot = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                tot += int(f.read().split()[0])
        except OSError:
            pass
    return tot / 1e6


def main(argv: list[str]) -> int:
    n = int(argv[0])
    specs = []
    for a in argv[1:]:
        if a == "fs":
            f = fluidsynth_spec()
            specs.append(_with_args(f, _dry_args(f)))
            continue
        label, path = a.split("=", 1)
        s = rtsynth_spec(os.environ.get("INST", "flute-life"), label=label)
        s = dataclasses.replace(s, env={"PYTHONPATH": path} if path else {})
        specs.append(_with_args(s, _dry_args(s)))
    first = {s.label: [] for s in specs}
    cpu = {s.label: [] for s in specs}
    for k in range(n):
        srv = JackServer(rate=48000, period=128)
        srv.start()
        try:
            with JackRig(n_inputs=2, servername=srv.name, name=f"rounds{os.getpid()}",
                         max_seconds=90) as rig:
                order = specs if os.environ.get("FIXED") else specs[k % len(specs):] + specs[
                    :k % len(specs)]
                for s in order:
                    st = None
                    for _ in range(2):          # FluidSynth exits when its port 9800 is taken
                        live = LiveSynth(s, srv.env, rig, 128)
                        try:
                            st = M.measure_startup(live, timeout=60)
                            cpu[s.label].append(cpu_ms(live.proc.proc.pid))
                            break
                        except Exception as e:  # noqa: BLE001
                            print(f"  {s.label}: {str(e).splitlines()[0][:100]}")
                        finally:
                            live.stop()
                        time.sleep(0.5)
                    first[s.label].append(st["first_sound_s"] if st else float("nan"))
                    time.sleep(0.2)
        finally:
            srv.cleanup()
        print(k, " ".join(f"{lab}={v[-1]:.3f}" for lab, v in first.items()), flush=True)
    base = specs[-1].label
    for lab, v in first.items():
        ok = [x for x in v if x == x]
        c = statistics.median(cpu[lab]) if cpu[lab] else float("nan")
        print(f"{lab:12s} first sound median {statistics.median(ok):.3f} s, CPU then {c:.0f} ms")
    for lab, v in first.items():
        if lab == base:
            continue
        r = sorted(x / y for x, y in zip(v, first[base]) if x == x and y == y)
        q = lambda p: r[min(len(r) - 1, int(p * len(r)))]  # noqa: E731
        print(f"{lab}/{base}: per-round median {statistics.median(r):.3f} (quartiles "
              f"{q(0.25):.2f}-{q(0.75):.2f}, n={len(r)})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
