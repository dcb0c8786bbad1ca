"""``rtsynth play`` as a child process on a test JACK server, and what it says while it runs."""

from __future__ import annotations

import json
import re
import signal
import sys
import time
from pathlib import Path

from .procs import ManagedProcess

__all__ = ["start_play", "counters", "wait_counters", "read_stats", "cycle_log"]

_AT = re.compile(r"rtsynth: at [\d.]+ s: underruns (\d+).*latency (\d+) frames")


def start_play(server, stats: str | Path, *args: str, env: dict | None = None,
               instrument: str = "basic", ready_timeout: float = 120.0) -> ManagedProcess:
    """``rtsynth play --driver jack -i INSTRUMENT --reverb 0 --no-hw-midi --stats-json STATS
    ARGS`` on ``server`` (a :class:`~rtsynth.jackserver.JackServer`), once it is playing."""
    cmd = [sys.executable, "-m", "rtsynth.cli", "play", "--driver", "jack", "-i", instrument,
           "--reverb", "0", "--no-hw-midi", "--stats-json", str(stats), *args]
    e = dict(server.env, PYTHONUNBUFFERED="1", **(env or {}))
    return ManagedProcess(cmd, env=e, ready=r"rtsynth: latency", ready_timeout=ready_timeout)


def counters(proc: ManagedProcess, timeout: float = 5.0) -> dict | None:
    """Ask a running ``rtsynth play`` for its counters (SIGUSR1) and parse the answer:
    ``{"underruns": int, "latency_frames": int}``, or None when it did not answer."""
    n = len(proc.lines)
    proc.proc.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for _, line in proc.lines[n:]:
            m = _AT.search(line)
            if m:
                return {"underruns": int(m.group(1)), "latency_frames": int(m.group(2))}
        if proc.proc.poll() is not None:
            return None
        time.sleep(0.02)
    return None


def cycle_log(proc: ManagedProcess, path: str | Path, timeout: float = 10.0):
    """The cycle log of an ``rtsynth play --cycle-log PATH``: asked for (SIGUSR1, which writes
    it before it prints the counters) while it runs, read as it left it once it has ended.
    ``[n, 6]`` int64 (``rtsynth.live.player.CYCLE_FIELDS``); None when it did not answer."""
    import numpy as np
    if proc.proc.poll() is None and counters(proc, timeout) is None:
        return None
    try:
        return np.load(Path(path), allow_pickle=False)
    except (OSError, ValueError):
        return None


def wait_counters(proc: ManagedProcess, until, timeout: float = 60.0, every: float = 0.25
                  ) -> list[dict]:
    """Poll :func:`counters` until ``until(history)`` is true; returns the history (raises
    ``TimeoutError`` with it)."""
    hist: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        c = counters(proc)
        if c is not None:
            c["t"] = time.monotonic()
            hist.append(c)
            if until(hist):
                return hist
        elif proc.proc.poll() is not None:
            raise RuntimeError(f"rtsynth exited ({proc.proc.returncode}):\n" + proc.output[-1500:])
        time.sleep(every)
    raise TimeoutError(f"condition not met in {timeout:.0f} s; latency history "
                       f"{[h['latency_frames'] for h in hist]}\n" + proc.output[-1500:])


def read_stats(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())
