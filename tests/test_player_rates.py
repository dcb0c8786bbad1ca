"""`rtsynth play` on a JACK server at another rate than the instrument's (44.1 kHz under a 48 kHz
model: soxr in the generator) and the messages that give the real numbers.

Its own module: one process's libjack talks to one server at a time, so the 44.1 kHz server's
clients must not meet the 48 kHz rig of another module.
"""

import subprocess
import sys

import numpy as np
import pytest

from rtsynth.testing.jackrig import detect_onsets, pitch_cents
from test_player_live import CMD, PERIOD, latency_of, start_rtsynth, wire


@pytest.fixture(scope="module")
def jack_44k():
    import shutil
    if shutil.which("jackd") is None:
        pytest.skip("jackd not installed")
    from rtsynth.jackserver import JackServer
    srv = JackServer(rate=44100, period=128)
    srv.start()
    try:
        yield srv
    finally:
        srv.cleanup()


def test_44k_server_plays_a_48k_instrument_in_tune(jack_44k):
    from rtsynth.testing.jackrig import JackRig
    rig = JackRig(n_inputs=2, servername=jack_44k.name, name="rig44", max_seconds=10)
    try:
        with start_rtsynth(jack_44k.env, "-i", "flute-lite") as proc:
            wire(rig, proc)
            line = next(l for _, l in proc.lines if "resampling" in l)
            assert "48000 -> 44100 Hz" in line
            extra = int(line.split("+")[1].split()[0])
            lat = latency_of(proc)
            ev = [(1000, bytes([0x90, 69, 100])), (1000 + 30000, bytes([0x80, 69, 0]))]
            res = rig.run(ev, 40000)
            proc.stop()
    finally:
        rig.close()
    assert res.sample_rate == 44100
    mono = res.audio.mean(axis=0)
    f0 = int(res.event_frames[0])
    on = detect_onsets(res.audio, [f0], threshold=1e-4)[0]
    # nothing before the stated latency; the attack starts within a control frame after it
    # (the player may have raised its latency a block or two after an underrun at start)
    assert lat + extra <= on <= lat + extra + 2 * PERIOD + 200, (on, lat, extra)
    _, cents = pitch_cents(mono[f0 + 8000:f0 + 26000], 44100, 440.0)
    assert abs(cents) < 5, cents
    assert np.max(np.abs(res.audio)) <= 1.0


def test_messages_give_the_real_numbers(jack_server, jack_44k):
    r = subprocess.run([*CMD, "-i", "basic", "-z", "256"], env=jack_server.env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "period is 128 frames, not the 256" in r.stderr and "-z 128" in r.stderr, r.stderr
    r = subprocess.run([*CMD, "-i", "flute-lite", "-r", "48000"], env=jack_44k.env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "runs at 44100 Hz but the instrument at 48000 Hz" in r.stderr, r.stderr
    r = subprocess.run([*CMD, "-i", "basic", "--record", "take.mp3"], env=jack_server.env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        "rtsynth: error: cannot record to take.mp3: the file must end in .wav or .flac"], r.stderr
    r = subprocess.run([*CMD, "-i", "basic", "no-such-song.mid"], env=jack_server.env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "no such MIDI file: no-such-song.mid" in r.stderr, r.stderr
    r = subprocess.run([sys.executable, "-m", "rtsynth.cli", "-i", "violin"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "rtsynth play -i violin" in r.stderr, r.stderr
