"""JACK faults, live: the server killed mid-play and restarted, a server that never comes back,
a MIDI source that disconnects while a key is held. Real servers (dummy backend), real clients,
real JACK MIDI; each test has its own private server so that killing it touches nothing else."""

import os
import re
import signal
import shutil
import time

import numpy as np
import pytest

from rtsynth.jackserver import JackServer
from rtsynth.testing.jackrig import JackRig, wait_for_ports
from rtsynth.testing.play import read_stats, start_play

SR = 48000

pytestmark = pytest.mark.skipif(shutil.which("jackd") is None, reason="jackd not installed")


@pytest.fixture
def server():
    pytest.importorskip("jack")
    srv = JackServer(period=128).start()
    try:
        yield srv
    finally:
        srv.cleanup()


def _line_time(proc, pattern, timeout):
    return proc.wait_ready(pattern, timeout)


def _rig(srv, name="frig"):
    return JackRig(n_inputs=2, name=name, servername=srv.name, max_seconds=10)


def _wire(rig, proc):
    wait_for_ports(rig.rx, r"rtsynth", midi=True, is_input=True, proc=proc.proc)
    wait_for_ports(rig.rx, r"rtsynth", midi=False, is_input=False, count=2, proc=proc.proc)
    rig.connect_midi("rtsynth:midi_in")
    rig.connect_audio(["rtsynth:out_1", "rtsynth:out_2"])


def _note_rms(rig, seconds=1.0):
    """Play A4 for ``seconds``; the RMS of its middle half."""
    n = int(seconds * SR)
    res = rig.run([(0, bytes([0x90, 69, 100])), (n - 2000, bytes([0x80, 69, 0])),
                   (n - 500, bytes([0xB0, 120, 0]))], n)
    m = res.audio.mean(axis=0)
    return float(np.sqrt(np.mean(m[n // 4: 3 * n // 4] ** 2)))


def _kill(srv, reclaim=True):
    """SIGKILL the server (no goodbye to its clients), reap it, and reclaim its slot in JACK's
    registry (JackServer.kill; without, a server of the same name must start next)."""
    return srv.kill(reclaim=reclaim)


def test_server_killed_and_restarted_sounds_again_with_connections(server, tmp_path):
    stats = tmp_path / "stats.json"
    with start_play(server, stats, "--reconnect-timeout", "30") as proc:
        rig = _rig(server)
        _wire(rig, proc)
        assert _note_rms(rig) > 1e-3
        t_kill = _kill(server, reclaim=False)      # srv2 below takes the same name
        rig.close(timeout=2)
        t_detect = _line_time(proc, r"JACK server shut down", 10)
        time.sleep(0.5)
        srv2 = JackServer(name=server.name, period=128)
        srv2.start()
        t_up = time.monotonic()
        try:
            t_back = _line_time(proc, r"JACK server back after", 20)
            # the rig comes back under the same client names: rtsynth restores the connections
            # its ports had (nobody connects them here)
            rig2 = _rig(srv2)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                mc = [p.name for p in rig2.tx.get_all_connections(rig2.midi_out)]
                ac = [p.name for p in rig2.rx.get_all_connections(rig2.inputs[0])]
                if mc == ["rtsynth:midi_in"] and ac == ["rtsynth:out_1"]:
                    break
                time.sleep(0.05)
            assert mc == ["rtsynth:midi_in"] and ac == ["rtsynth:out_1"], (mc, ac, proc.output)
            t_conn = time.monotonic()
            assert _note_rms(rig2) > 1e-3
            rig2.close()
            assert proc.stop() == 0
        finally:
            srv2.cleanup()
    st = read_stats(stats)
    assert st["server_losses"] == 1 and len(st["reconnects"]) == 1, st
    assert st["reconnects"][0]["restored"] == 0 or st["reconnects"][0]["wanted"] >= 3
    print(f"\ndetect {1e3 * (t_detect - t_kill):.0f} ms after the kill; back "
          f"{1e3 * (t_back - t_up):.0f} ms after the new server accepted clients; connections "
          f"{1e3 * (t_conn - t_up):.0f} ms")
    assert t_detect - t_kill < 2.0          # the shutdown callback, not a timeout
    assert t_back - t_up < 5.0


def test_server_that_does_not_come_back_exits_nonzero(server, tmp_path):
    stats = tmp_path / "stats.json"
    with start_play(server, stats, "--reconnect-timeout", "1.5") as proc:
        t_kill = _kill(server, reclaim=False)
        try:
            code = proc.proc.wait(30)
        except Exception:
            code = None
        finally:
            server._reclaim()     # its registry slot, now that nobody waits for it
        assert code not in (None, 0), proc.output
        out = proc.output
    assert re.search(r"JACK server shut down", out)
    assert re.search(r"did not come back within 1.5 s", out), out
    assert time.monotonic() - t_kill < 20


def test_notes_held_through_a_source_that_disconnects_are_released(server, tmp_path):
    """A real JACK MIDI sender holds a note (one with the sustain pedal down too) and
    disconnects: the notes end (all notes off, sustain off). Without the disconnect the same
    notes still sound at the end: the test can fail."""
    stats = tmp_path / "stats.json"
    with start_play(server, stats) as proc:
        rig = _rig(server)
        _wire(rig, proc)
        n = 2 * SR
        held = [(0, bytes([0x90, 69, 100])), (0, bytes([0xB0, 64, 127])),
                (100, bytes([0x90, 64, 90])), (200, bytes([0x80, 64, 0]))]

        def run(disconnect: bool) -> np.ndarray:
            rig.start(held, n)
            if disconnect:
                while rig.progress() < SR // 2:
                    time.sleep(0.01)
                rig.tx.disconnect(rig.midi_out, "rtsynth:midi_in")
            return rig.finish().audio.mean(axis=0)

        kept = run(False)
        rig.run([(0, bytes([0xB0, 64, 0])), (0, bytes([0xB0, 123, 0])),
                 (0, bytes([0xB0, 120, 0]))], SR // 2)
        gone = run(True)
        rig.close()
        assert proc.stop() == 0
    rms = lambda m, a, b: float(np.sqrt(np.mean(m[a:b] ** 2)))
    assert rms(kept, SR // 4, SR // 2) > 1e-3 and rms(kept, n - SR // 2, n) > 1e-3
    assert rms(gone, SR // 4, SR // 2) > 1e-3
    assert rms(gone, n - SR // 2, n) < 1e-5, rms(gone, n - SR // 2, n)
    st = read_stats(stats)
    assert st["notes_released"] >= 1


def test_watchdog_notices_a_stopped_process_callback(server, tmp_path):
    """The server frozen (SIGSTOP) for 1.5 s: rtsynth says on stderr that its process callback
    has stopped, and that it runs again once the server goes on (SIGCONT)."""
    stats = tmp_path / "stats.json"
    with start_play(server, stats) as proc:
        os.kill(server.pid, signal.SIGSTOP)
        try:
            t_warn = _line_time(proc, r"process callback has not run for", 10)
        finally:
            time.sleep(0.5)
            os.kill(server.pid, signal.SIGCONT)
        _line_time(proc, r"process callback runs again", 10)
        assert proc.stop() == 0
    st = read_stats(stats)
    assert st["watchdog_stalls"] == 1, st
    assert t_warn > 0


def test_notes_held_through_an_rtmidi_port_that_vanishes_are_released(server, tmp_path,
                                                                       monkeypatch):
    """PortAudio audio (on the JACK server) and a hardware-style rtmidi input (JACK API) from
    a sender that holds a note and then goes away (its port vanishes): the note ends, and
    rtsynth says why on stderr."""
    rtmidi = pytest.importorskip("rtmidi")
    import sys
    from rtsynth.testing.procs import ManagedProcess
    env = dict(server.env, PYTHONUNBUFFERED="1")
    monkeypatch.setenv("JACK_DEFAULT_SERVER", server.name)   # rtmidi's client in this process
    out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="sender")
    out.open_virtual_port("out")
    stats = tmp_path / "stats.json"
    cmd = [sys.executable, "-m", "rtsynth.cli", "play", "--driver", "portaudio", "-m", "jack",
           "--midi-port", "sender", "-i", "basic", "--reverb", "0", "--stats-json", str(stats)]
    with ManagedProcess(cmd, env=env, ready=r"rtsynth: latency", ready_timeout=120) as proc:
        rig = _rig(server)
        ports = wait_for_ports(rig.rx, r"rtsynth", midi=False, is_input=False, count=2)
        rig.connect_audio(ports[:2])
        n = 2 * SR
        rig.start([], n)
        while rig.progress() < SR // 4:
            time.sleep(0.01)
        out.send_message([0x90, 69, 100])
        while rig.progress() < 3 * SR // 4:
            time.sleep(0.01)
        out.close_port()
        del out
        res = rig.finish()
        proc.wait_ready(r"MIDI input 'sender:out' went away", 10)
        rig.close()
        assert proc.stop() == 0
    m = res.audio.mean(axis=0)
    rms = lambda a, b: float(np.sqrt(np.mean(m[a:b] ** 2)))
    assert rms(SR // 2, 3 * SR // 4) > 1e-3
    assert rms(n - SR // 2, n) < 1e-5, rms(n - SR // 2, n)
    assert read_stats(stats)["notes_released"] >= 1
