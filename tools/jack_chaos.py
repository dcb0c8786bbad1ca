"""Make every private JACK server of this user drop cycles, as a loaded VM does, while tests run.

    python tools/jack_chaos.py [--stall-ms 6] [--every 50] [--stop-ms 8] [--stop-every 0.5]

For each ``jackd -n NAME`` it finds (``ps``, this user's), a client ``chaos`` joins the server
and sleeps ``--stall-ms`` in every ``--every``-th process callback (the server reports an xrun;
rtsynth fades the next block in); with ``--stop-ms`` the server itself is stopped (SIGSTOP) for
that long every ``--stop-every`` seconds, so that it skips cycles (the recorder misses frames,
a client's stream pauses). For testing the JACK tests' tolerance of a machine that drops
cycles (rtsynth.testing.takes); Ctrl-C ends it."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import threading
import time


def servers() -> dict[str, int]:
    out = subprocess.run(["ps", "-u", str(os.getuid()), "-o", "pid=,args="],
                         capture_output=True, text=True).stdout
    found = {}
    for line in out.splitlines():
        pid, _, args = line.strip().partition(" ")
        a = args.split()
        if a and os.path.basename(a[0]) == "jackd" and "-n" in a:
            found[a[a.index("-n") + 1]] = int(pid)
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stall-ms", type=float, default=6.0)
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument("--stop-ms", type=float, default=0.0)
    ap.add_argument("--stop-every", type=float, default=0.5)
    args = ap.parse_args()
    import math
    for name, v, lo, hi in (("--stall-ms", args.stall_ms, 0.0, 1000.0),
                            ("--stop-ms", args.stop_ms, 0.0, 1000.0),
                            ("--stop-every", args.stop_every, 0.01, 3600.0)):
        if not (math.isfinite(v) and lo <= v <= hi):
            ap.error(f"{name} {v}: must be in [{lo:g}, {hi:g}]")
    if not 1 <= args.every <= 1_000_000:
        ap.error(f"--every {args.every}: must be in [1, 1000000]")
    import jack
    clients = {}
    gone = []          # clients of servers that ended: kept, never closed (one freed then may crash)
    stop = threading.Event()

    def stopper():
        while not stop.wait(args.stop_every):
            for pid in list(servers().values()):
                try:                       # the server may end between ps and here
                    os.kill(pid, signal.SIGSTOP)
                except ProcessLookupError:
                    continue
                try:
                    time.sleep(args.stop_ms / 1000)
                finally:
                    try:
                        os.kill(pid, signal.SIGCONT)
                    except ProcessLookupError:
                        pass
    if args.stop_ms > 0:
        threading.Thread(target=stopper, daemon=True).start()
    try:
        while True:
            live = servers()
            for name in list(clients):
                if name not in live:
                    gone.append(clients.pop(name))    # its server is gone: keep it, untouched
            for name in live:
                if name in clients:
                    continue
                try:
                    c = jack.Client("chaos", no_start_server=True, servername=name)
                except Exception:
                    continue
                n = [0]

                def process(frames, n=n):
                    n[0] += 1
                    if n[0] % args.every == 0:
                        time.sleep(args.stall_ms / 1000)
                c.set_process_callback(process)
                c.activate()
                clients[name] = c
                print(f"chaos: joined {name}", flush=True)
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
