"""Child processes for tests and benchmarks: started with an environment, waited for until they
print a ready line, always ended by their own PID."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time

__all__ = ["ManagedProcess"]


class ManagedProcess:
    """``Popen`` + a reader thread that keeps every output line (stdout and stderr merged).

    ``wait_ready(pattern)`` blocks until a line matches; ``stop()`` sends SIGTERM (then SIGKILL)
    to exactly this PID. Use as a context manager so the process ends also when the body fails.
    """

    def __init__(self, cmd: list[str], env: dict | None = None, cwd: str | None = None,
                 ready: str | None = None, ready_timeout: float = 60.0):
        self.cmd = [str(c) for c in cmd]
        self.t_start = time.monotonic()
        self.proc = subprocess.Popen(self.cmd, env=env, cwd=cwd, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     text=True, bufsize=1)
        self.lines: list[tuple[float, str]] = []
        self._cv = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if ready is not None:
            try:
                self.wait_ready(ready, ready_timeout)
            except BaseException:
                self.stop()
                raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self):
        for line in self.proc.stdout:
            with self._cv:
                self.lines.append((time.monotonic(), line.rstrip("\n")))
                self._cv.notify_all()
        with self._cv:
            self._cv.notify_all()

    @property
    def output(self) -> str:
        return "\n".join(l for _, l in self.lines)

    def wait_ready(self, pattern: str, timeout: float = 60.0) -> float:
        """Wait for a line matching ``pattern`` (regex search); returns its monotonic time."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cv:
            while True:
                for t, l in self.lines[seen:]:
                    if rx.search(l):
                        return t
                seen = len(self.lines)
                if self.proc.poll() is not None and not self._reader.is_alive():
                    raise RuntimeError(f"{os.path.basename(self.cmd[0])} exited with code "
                                       f"{self.proc.returncode} before {pattern!r}:\n"
                                       + self.output[-2000:])
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no line matching {pattern!r} within {timeout:.0f} s:\n"
                                       + self.output[-2000:])
                self._cv.wait(min(left, 0.1))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        """End exactly this PID; returns its exit code."""
        p = self.proc
        if p.poll() is None:
            try:
                os.kill(p.pid, sig)
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                # it hangs: ask for its threads' stacks (rtsynth play prints them on SIGUSR2)
                # into the output, then end it
                try:
                    os.kill(p.pid, signal.SIGUSR2)
                    p.wait(1.0)
                except (subprocess.TimeoutExpired, ProcessLookupError):
                    pass
                if p.poll() is None:
                    os.kill(p.pid, signal.SIGKILL)
                    p.wait(timeout)
            except ProcessLookupError:
                pass
        self._reader.join(2.0)
        return p.returncode

    def __enter__(self) -> "ManagedProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
