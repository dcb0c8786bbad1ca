"""Pytest fixtures for JACK tests. Import them into a test module (or a conftest)::

    from rtsynth.testing.pytest_fixtures import jack_server, jack_rig  # noqa: F401

``jack_server``: a private dummy server (48 kHz, 128 frames) for the module, ended by its PID.
``jack_rig``: a :class:`~rtsynth.testing.jackrig.JackRig` (2 inputs) on that server.
Tests are skipped when ``jackd`` or the ``jack`` module is missing.
"""

from __future__ import annotations

import shutil

import pytest

from rtsynth.jackserver import JackServer

#: per test module that used :func:`jack_server`: ``(module, server xruns, {client: count} of
#: clients not finished at them, by state)``; the suite's summary prints it (what a loaded
#: machine did to the JACK tests, and whom the server blamed)
XRUN_REPORT: list[tuple[str, int, dict]] = []


def xrun_summary(srv: JackServer) -> tuple[int, dict]:
    """``(server xruns, {"client state": count})`` from ``srv``'s log so far."""
    from rtsynth.jackserver import _XRUN_RE
    blame: dict[str, int] = {}
    for m in _XRUN_RE.finditer(srv.log_text()):
        key = f"{m.group(1)} {m.group(2) or '?'}"
        blame[key] = blame.get(key, 0) + 1
    return srv.server_xruns(), blame


@pytest.fixture(scope="module")
def jack_server(request):
    if shutil.which("jackd") is None:
        pytest.skip("jackd not installed (apt-get install jackd2)")
    pytest.importorskip("jack")
    srv = JackServer(period=128)
    srv.start()
    try:
        yield srv
    finally:
        try:
            n, blame = xrun_summary(srv)
            XRUN_REPORT.append((request.module.__name__, n, blame))
        except Exception:                 # a report, never a reason for a test to fail
            pass
        srv.cleanup()


@pytest.fixture(scope="module")
def jack_rig(jack_server):
    import time

    import jack

    from rtsynth.testing.jackrig import JackRig
    for attempt in range(4):
        try:      # a server stalled by a loaded machine can refuse a client now and then
            rig = JackRig(n_inputs=2, servername=jack_server.name, max_seconds=30)
            break
        except jack.JackError:
            if attempt == 3:
                raise
            time.sleep(1.0)
    try:
        yield rig
    finally:
        if not rig.close():
            import warnings
            warnings.warn("JACK rig: the server did not answer the clients' deactivation in "
                          "10 s; it is stopped next (jack_server teardown)")
