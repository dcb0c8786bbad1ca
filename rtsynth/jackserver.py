"""A private JACK server with the dummy backend, for tests and benchmarks.

Machines without a sound card (CI, these VMs) have no audio device at all, but a JACK server with
the dummy backend is a real audio server that needs no hardware::

    with JackServer(period=128) as srv:
        subprocess.run([...], env=srv.env)      # JACK_DEFAULT_SERVER=srv.name for clients
        print(srv.client_xruns("rtsynth"))       # xruns the server blames on a client

The server gets a unique private name (``jackd -n NAME``) so that it never meets another test's or
another user's server, and exactly its own PID is killed on exit, also when the body fails.
Readiness and detection use ``jack_wait`` in a subprocess, so that this process's libjack is never
bound to a server that is still starting.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

__all__ = ["JackServer", "JackServerError", "server_running", "default_server_name"]

_XRUN_RE = re.compile(r"JackEngine::XRun: client = (.+?) was not finished(?:, state = (\w+))?")


class JackServerError(RuntimeError):
    """The JACK server could not be started or did not accept clients in time."""


def default_server_name(env: dict | None = None) -> str:
    """The server a client started with ``env`` would connect to."""
    env = os.environ if env is None else env
    return env.get("JACK_DEFAULT_SERVER") or "default"


def server_running(name: str | None = None, timeout: float = 5.0) -> bool:
    """Whether a JACK server called ``name`` (default: ``$JACK_DEFAULT_SERVER`` or ``default``)
    accepts clients. Never starts one."""
    name = name or default_server_name()
    exe = shutil.which("jack_wait")
    env = dict(os.environ, JACK_NO_START_SERVER="1")
    if exe is None:  # fall back on JACK-Client in a subprocess
        import sys
        code = ("import jack,sys\ntry:\n jack.Client('probe',no_start_server=True,"
                f"servername={name!r}).close()\nexcept Exception: sys.exit(1)")
        try:
            r = subprocess.run([sys.executable, "-c", code], env=env, timeout=timeout,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return False
        return r.returncode == 0
    try:
        r = subprocess.run([exe, "-s", name, "-c"], env=env, capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return False
    return r.stdout.strip().splitlines()[-1:] == ["running"]


class JackServer:
    """``jackd -n NAME -d dummy -r RATE -p PERIOD`` for the duration of a ``with`` block.

    Attributes once started: ``name``, ``pid``, ``env`` (a copy of ``os.environ`` with
    ``JACK_DEFAULT_SERVER=name``; give it to every client subprocess), ``log_path``.
    """

    def __init__(self, name: str | None = None, rate: int = 48000, period: int = 128,
                 start_timeout: float = 15.0, log_path: str | os.PathLike | None = None,
                 extra_args: tuple[str, ...] = ()):
        self.name = name or f"rtsynth-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.rate = int(rate)
        self.period = int(period)
        self.start_timeout = float(start_timeout)
        self.extra_args = tuple(extra_args)
        self._own_log = log_path is None
        self.log_path = Path(log_path) if log_path else Path(
            tempfile.mkstemp(prefix=f"jackd-{self.name}-", suffix=".log")[1])
        self.proc: subprocess.Popen | None = None
        self._log_file = None

    # -- life cycle -------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def env(self) -> dict:
        return dict(os.environ, JACK_DEFAULT_SERVER=self.name, JACK_NO_START_SERVER="1")

    @property
    def cmd(self) -> list[str]:
        return ["jackd", "-n", self.name, *self.extra_args, "-d", "dummy",
                "-r", str(self.rate), "-p", str(self.period)]

    def start(self) -> "JackServer":
        if shutil.which("jackd") is None:
            raise JackServerError("jackd not found: install jackd2 (apt-get install jackd2)")
        self._log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.cmd, stdout=self._log_file, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=self.env)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        sock = Path("/dev/shm") / f"jack_{self.name}_{os.getuid()}_0"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise JackServerError(f"jackd exited with code {self.proc.returncode}: "
                                      f"{self.log_text()[-500:]}")
            if (not sock.parent.exists() or sock.exists()) and server_running(self.name):
                return
            time.sleep(0.05)
        raise JackServerError(f"jackd -n {self.name} did not accept clients within "
                              f"{self.start_timeout:.0f} s: {self.log_text()[-500:]}")

    def stop(self, timeout: float = 5.0) -> None:
        """Stop exactly this server's PID (SIGTERM, then SIGKILL)."""
        p, self.proc = self.proc, None
        if p is not None and p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGTERM)
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(timeout)
            except ProcessLookupError:
                pass
        if p is not None:
            self.returncode = p.returncode
            if not self._no_reclaim and (p.returncode == -signal.SIGKILL
                                         or self._stale_entry()):
                self._reclaim()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def kill(self, reclaim: bool = True) -> float:
        """SIGKILL the server (a crash: no goodbye to its clients) and reap it; returns the
        monotonic time of the kill. Its registry slot is reclaimed (see :meth:`_reclaim`)
        unless ``reclaim`` is False: then start a server of the same name next (that takes the
        slot back too), and no client sees a short-lived one in between."""
        t = time.monotonic()
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self._no_reclaim = not reclaim
        self.stop()
        self._no_reclaim = False
        return t

    _no_reclaim = False

    def _stale_entry(self) -> bool:
        """Whether JACK's registry still holds this server's name under a dead PID (jack2's
        layout: a 24-byte header, then 8 entries of a 32-bit PID and a 260-byte name)."""
        import struct
        try:
            data = Path("/dev/shm/jack-shm-registry").read_bytes()[:24 + 8 * 264]
        except OSError:
            return False
        want = f":{self.name}:".encode()
        for i in range(8):
            off = 24 + 264 * i
            if off + 264 > len(data):
                break
            pid = struct.unpack_from("<i", data, off)[0]
            name = data[off + 4:off + 264].split(b"\0")[0]
            if pid > 0 and name.endswith(want):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return True
                except OSError:
                    pass
        return False

    def _reclaim(self, timeout: float = 5.0) -> None:
        """A server killed with SIGKILL leaves its entry in JACK's shared registry
        (/dev/shm/jack-shm-registry, 8 entries for the whole machine), which only a server of
        the same name takes back: after 8 such kills no jackd starts anywhere ('Too many
        servers already active'). Start one of the same name and stop it properly."""
        try:
            q = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 stdin=subprocess.DEVNULL, env=self.env)
        except OSError:
            return
        # stopped before it has registered, it would leave a stale entry of its own: wait
        # until it accepts clients (the dead server's socket file may still be there)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and q.poll() is None and \
                not server_running(self.name, timeout=2.0):
            time.sleep(0.05)
        if q.poll() is None:
            q.terminate()
            try:
                q.wait(timeout)
            except subprocess.TimeoutExpired:
                q.kill()
                q.wait()

    def cleanup(self) -> None:
        """Stop and remove the log file if this object created it."""
        self.stop()
        if self._own_log:
            try:
                self.log_path.unlink()
            except FileNotFoundError:
                pass

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> "JackServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __del__(self):  # last resort; never leaves a server behind
        try:
            self.stop(timeout=1.0)
        except Exception:
            pass

    # -- the log ----------------------------------------------------------------------------
    def log_text(self) -> str:
        return self._log_since(0)

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def _log_since(self, since: int) -> str:
        if self._log_file is not None:
            self._log_file.flush()
        try:
            with open(self.log_path, "rb") as f:
                f.seek(since)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def xrun_clients(self, since: int = 0, states: tuple[str, ...] | None = ("Running",)
                     ) -> dict[str, int]:
        """``{client: count}`` from ``JackEngine::XRun: client = X was not finished, state = S``
        lines after byte offset ``since`` of the log.

        At an xrun the server lists every client that had not finished. ``state = Running``
        means the client was inside its process callback at the deadline: that is the client at
        fault (the default, ``states=("Running",)``). ``Triggered`` means it was woken but never
        got the CPU (the machine, or an upstream client, was late); ``states=None`` counts all."""
        out: dict[str, int] = {}
        for m in _XRUN_RE.finditer(self._log_since(since)):
            if states is not None and m.group(2) is not None and m.group(2) not in states:
                continue
            out[m.group(1)] = out.get(m.group(1), 0) + 1
        return out

    def client_xruns(self, client_prefix: str, since: int = 0,
                     states: tuple[str, ...] | None = ("Running",)) -> int:
        """Xruns the server blames on clients whose name starts with ``client_prefix``."""
        return sum(n for c, n in self.xrun_clients(since, states).items()
                   if c.startswith(client_prefix))

    def server_xruns(self, since: int = 0) -> int:
        """All xruns of the server's cycle (any cause, including the dummy driver's timer)."""
        t = self._log_since(since)
        return len(re.findall(r"ProcessGraphAsyncMaster: Process error", t)) or \
            len(re.findall(r"JackTimedDriver::Process XRun", t))

    def __repr__(self) -> str:
        return (f"JackServer(name={self.name!r}, rate={self.rate}, period={self.period}, "
                f"pid={self.pid})")
