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


@pytest.fixture(scope="module")
def jack_server():
    if shutil.which("jackd") is None:
        pytest.skip("jackd not installed (apt-get install jackd2)")
    pytest.importorskip("jack")
    srv = JackServer(period=128)
    srv.start()
    try:
        yield srv
    finally:
        srv.cleanup()


@pytest.fixture(scope="module")
def jack_rig(jack_server):
    from rtsynth.testing.jackrig import JackRig
    rig = JackRig(n_inputs=2, servername=jack_server.name, max_seconds=30)
    try:
        yield rig
    finally:
        if not rig.close():
            import warnings
            warnings.warn("JACK rig: the server did not answer the clients' deactivation in "
                          "10 s; it is stopped next (jack_server teardown)")
