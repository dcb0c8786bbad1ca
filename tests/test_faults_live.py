"""Fault suite: live MIDI fuzz through a real JACK server. Hundreds of random JACK MIDI events
(garbage bytes, several messages in one event, running status, real-time bytes inside a
message, sysex then a note, extreme bends and controllers) into ``rtsynth:midi_in`` of a real
``rtsynth play``: the recorded output is never NaN and never above full scale, rtsynth keeps
answering, exits 0 and counts the bad bytes. (The longer fuzz: ``tools/fuzz.py live``.)"""

from __future__ import annotations

import numpy as np

from rtsynth.testing.hostile import random_midi_event
from rtsynth.testing.jackrig import wait_for_ports
from rtsynth.testing.play import counters, read_stats, start_play

N_EVENTS = 400
SECONDS = 6.0


def _wire(rig, proc):
    mp = wait_for_ports(rig.rx, r"rtsynth", midi=True, is_input=True, proc=proc.proc)
    ap = wait_for_ports(rig.rx, r"rtsynth", midi=False, is_input=False, count=2,
                        proc=proc.proc)
    rig.disconnect_all()
    rig.connect_midi(mp[0])
    rig.connect_audio(ap[:2])


def test_live_midi_fuzz_through_jack(jack_server, jack_rig, tmp_path):
    rng = np.random.default_rng(15)
    sr = jack_rig.sample_rate
    n = int(SECONDS * sr)
    frames = np.sort(rng.integers(0, n - sr, N_EVENTS))
    events = [(int(f), random_midi_event(rng)) for f in frames]
    events.append((n - sr, b"\xb0\x78\x00"))             # all sound off, channel 1
    stats = tmp_path / "stats.json"
    with start_play(jack_server, stats, "--polyphony", "32",
                    instrument="flute-lite") as proc:
        _wire(jack_rig, proc)
        res = jack_rig.run(events, n, timeout=SECONDS + 30)
        assert proc.proc.poll() is None, proc.output[-2000:]     # no crash
        assert counters(proc) is not None, proc.output[-2000:]   # still answering: no hang
        assert proc.stop() == 0, proc.output[-2000:]
    assert "Traceback" not in proc.output
    x = res.audio
    assert x.shape[1] > 0.9 * n
    assert np.isfinite(x).all()
    assert np.abs(x).max() <= 1.0
    assert np.abs(x).max() > 1e-3                                  # it did play
    st = read_stats(stats)
    eng = st["engine"]
    assert eng["events"] > N_EVENTS // 2, eng
    assert eng["bad_messages"] > 0, eng                            # garbage counted
    print(f"live fuzz: {N_EVENTS} JACK events -> {eng['events']} messages applied, "
          f"{eng['bad_messages']} bad bytes counted, peak {np.abs(x).max():.3f}")
