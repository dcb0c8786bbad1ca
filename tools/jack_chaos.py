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
    for pid in servers().values():       # a server an earlier run left stopped (it crashed)
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    stopper_pid = None
    if args.stop_ms > 0:
        # the stops from a process of their own, forked before libjack is loaded: the clients'
        # process can die (libjack under servers that end) without leaving a server stopped
        parent = os.getpid()
        stopper_pid = os.fork()
        if stopper_pid == 0:
            _stopper(args, parent)
            os._exit(0)
    import jack
    clients = {}
    gone = []          # clients of servers that ended: kept, never closed (one freed then may crash)
    stop = threading.Event()
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
        if stopper_pid:
            os.kill(stopper_pid, signal.SIGTERM)
            os.waitpid(stopper_pid, 0)
    return 0


def _stopper(args, parent: int) -> None:
    """Stop each server for ``--stop-ms`` every ``--stop-every`` s until the clients' process
    ``parent`` is gone or SIGTERM comes; a server is always continued before this ends."""
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: done.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)       # Ctrl-C ends the parent, then this
    while not done.wait(args.stop_every) and os.getppid() == parent:
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


if __name__ == "__main__":
    raise SystemExit(main())
