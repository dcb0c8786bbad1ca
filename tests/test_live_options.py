"""`rtsynth play` options on a real JACK server: -j, --midi-port, the PortAudio driver, Ctrl-C."""

import signal
import sys
import time

import numpy as np

from rtsynth.testing.jackrig import wait_for_ports
from rtsynth.testing.procs import ManagedProcess


def play(jack_server, *args):
    cmd = [sys.executable, "-m", "rtsynth.cli", "play", "-i", "basic", *args]
    return ManagedProcess(cmd, env=dict(jack_server.env, PYTHONUNBUFFERED="1"),
                          ready=r"rtsynth: latency", ready_timeout=120)


def test_jack_connect_and_midi_port_selection(jack_server, jack_rig):
    with play(jack_server, "-j", "--midi-port", "rig-tx:midi_out") as p:
        conns = [c.name for c in jack_rig.rx.get_all_connections("rtsynth:out_1")]
        assert "system:playback_1" in conns
        conns = [c.name for c in jack_rig.rx.get_all_connections("rtsynth:midi_in")]
        assert "rig-tx:midi_out" in conns
        assert "connected rig-tx:midi_out -> rtsynth:midi_in" in p.output
        assert p.stop() == 0


def test_ctrl_c_fades_out_without_a_click(jack_server, jack_rig):
    with play(jack_server, "--reverb", "0") as p:
        wait_for_ports(jack_rig.rx, r"rtsynth", midi=True, is_input=True)
        jack_rig.connect_midi("rtsynth:midi_in")
        jack_rig.connect_audio(["rtsynth:out_1", "rtsynth:out_2"])
        jack_rig.start([(0, bytes([0x90, 69, 110])), (10, bytes([0x90, 76, 110]))],
                            int(48000 * 4))
        time.sleep(1.5)
        p.proc.send_signal(signal.SIGINT)
        assert p.proc.wait(30) == 0
        res = jack_rig.finish(timeout=10)
    x = res.audio[0]
    loud = np.flatnonzero(np.abs(x) > 1e-3)
    assert len(loud) and loud[-1] > 48000        # it was sounding when interrupted
    end = loud[-1]
    # the last 20 ms before silence must be a fade: no sample-to-sample jump of a click
    tail = x[max(0, end - 960): end + 256]
    steady = x[48000:60000]
    assert np.max(np.abs(np.diff(tail))) <= np.max(np.abs(np.diff(steady))) * 1.05
    assert np.max(np.abs(x[end + 256:end + 4800])) < 1e-3
    assert "underruns" in p.output


def test_portaudio_driver_and_rtmidi_virtual_port(jack_server, jack_rig):
    with play(jack_server, "--driver", "portaudio", "--midi-api", "jack", "--duration", "30") as p:
        assert "MIDI input" in p.output and "(virtual)" in p.output
        outs = wait_for_ports(jack_rig.rx, r"^rtsynth$", midi=False, is_input=False, count=2)
        midi = wait_for_ports(jack_rig.rx, r"rtsynth.*", midi=True, is_input=True)
        jack_rig.connect_midi(midi[0])
        jack_rig.connect_audio(outs[:2])
        res = jack_rig.run([(100, bytes([0x90, 69, 100])), (20000, bytes([0x80, 69, 0]))], 30000)
        jack_rig.disconnect_all()
        assert p.stop() == 0
    x = res.audio.mean(axis=0)
    assert np.abs(x).max() > 1e-3
    on = np.flatnonzero(np.abs(x) > 1e-4)[0] - res.event_frames[0]
    # host-clock stamped: latency within (1 + ahead) blocks + one block of margin + the device's
    assert 0 < on < 6 * 128 + 192, on


def test_sync_mode_sounds_in_the_same_period(jack_server, jack_rig):
    """--sync renders in the process callback: a note sounds at its own frame (no added delay)."""
    from rtsynth import spec
    from rtsynth.testing.jackrig import detect_onsets
    with play(jack_server, "--sync", "--reverb", "0") as p:
        assert "latency MIDI->audio 0 frames" in p.output
        wait_for_ports(jack_rig.rx, r"rtsynth", midi=True, is_input=True)
        jack_rig.connect_midi("rtsynth:midi_in")
        jack_rig.connect_audio(["rtsynth:out_1", "rtsynth:out_2"])
        rng = np.random.default_rng(3)
        ev = []
        for k in range(8):
            t = k * 9600 + int(rng.integers(128))
            ev += [(t, bytes([0x90, 60 + k, 100])), (t + 4800, bytes([0x80, 60 + k, 0])),
                   (t + 7000, bytes([0xB0, 120, 0]))]
        for _ in range(4):
            res = jack_rig.run(ev, 8 * 9600 + 2000)
            if res.complete and res.xruns == 0:
                break
        jack_rig.disconnect_all()
        assert p.stop() == 0
    on = detect_onsets(res.audio, res.event_frames[0::3], threshold=1e-4)
    assert np.all(on >= 0) and np.all(on <= spec.HOP), on
