import os

from rtsynth.testing.pytest_fixtures import jack_rig, jack_server  # noqa: F401


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
    terminalreporter.write_line(_machine())
