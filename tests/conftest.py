import os

import pytest

from rtsynth.testing.pytest_fixtures import jack_rig, jack_server  # noqa: F401

#: processes a test module started and left running: ``(module, pid, cpu seconds, command)``
LEFT_BEHIND: list[tuple[str, int, float, str]] = []
_WATCH = ("rtsynth", "jackd", "fluidsynth", "tmux")


def _procs() -> dict[int, tuple[float, str]]:
    """``{pid: (cpu seconds, command)}`` of this machine's processes that look like ours."""
    out = {}
    tick = os.sysconf("SC_CLK_TCK")
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            cmd = open(f"/proc/{d}/cmdline", "rb").read().replace(b"\0", b" ").decode(
                errors="replace").strip()
            if not any(w in cmd for w in _WATCH):
                continue
            st = open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()
            if st[0] == "Z" or int(st[1]) not in (1, os.getpid()):
                continue                   # another session's (its parent is alive)
            out[int(d)] = ((int(st[11]) + int(st[12])) / tick, cmd)
        except (OSError, IndexError, ValueError):
            continue
    return out


@pytest.fixture(scope="module", autouse=True)
def _left_behind(request):
    """After each module: what it started and left running (a CPU hog left by one module
    makes the next module's JACK takes lose cycles)."""
    before = set(_procs())
    yield
    import time
    time.sleep(0.2)
    for pid, (cpu, cmd) in _procs().items():
        if pid not in before:
            LEFT_BEHIND.append((request.module.__name__, pid, cpu, cmd[:120]))


def _machine() -> str:
    """One line on the machine the suite ran on: what a JACK test's xruns depend on."""
    import platform
    import threading
    try:
        model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                      if l.startswith("model name")), platform.processor())
    except OSError:
        model = platform.processor()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    rt = "no"
    try:                               # can this user's threads run real-time (JACK, rtsynth)?
        tid = threading.get_native_id()
        os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(1))
        os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
        rt = "yes"
    except (OSError, AttributeError):
        pass
    steal = ""
    try:
        f = open("/proc/stat").readline().split()
        total = sum(int(x) for x in f[1:])
        steal = f", steal {100.0 * int(f[8]) / total:.1f}% since boot" if len(f) > 8 else ""
    except (OSError, ValueError):
        pass
    return (f"machine: {os.cpu_count()} CPUs ({model}), load {load}, real-time threads "
            f"{rt}{steal}")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    from rtsynth.testing.pytest_fixtures import XRUN_REPORT
    for mod, n, blame in XRUN_REPORT:
        if n or blame:
            top = sorted(blame.items(), key=lambda kv: -kv[1])[:4]
            terminalreporter.write_line(
                f"jack xruns {mod}: {n}; not finished: " +
                (", ".join(f"{k} {v}" for k, v in top) or "none named"))
    for mod, pid, cpu, cmd in LEFT_BEHIND[:20]:
        alive = os.path.exists(f"/proc/{pid}")
        terminalreporter.write_line(f"left running by {mod}: pid {pid} ({cpu:.1f} s CPU then"
                                    f"{', still alive' if alive else ''}): {cmd}")
    terminalreporter.write_line(_machine())
