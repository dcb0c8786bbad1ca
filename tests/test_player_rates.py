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


def test_44k_server_plays_a_48k_instrument_in_tune(jack_44k, tmp_path):
    """Judged on rtsynth's stream (the take laid out through its cycle log): cycles the server
    skipped for it leave no hole, frames the recorder missed are zeros in place (the window's
    phase is kept); a take that lost the note's MIDI to a skipped cycle, or the frames its
    onset is read from, is taken again (up to 4 takes)."""
    from rtsynth.testing.jackrig import JackRig
    from rtsynth.testing.play import cycle_log
    from rtsynth.testing.takes import clean_log, first_passing, stream_audio, stream_events
    cycles = tmp_path / "cycles.npy"
    ev = [(1000, bytes([0x90, 69, 100])), (1000 + 30000, bytes([0x80, 69, 0])),
          (1000 + 36000, bytes([0xB0, 120, 0]))]
    rig = JackRig(n_inputs=2, servername=jack_44k.name, name="rig44", max_seconds=10)
    try:
        with start_rtsynth(jack_44k.env, "-i", "flute-lite", "--cycle-log", str(cycles)) as proc:
            wire(rig, proc)
            line = next(l for _, l in proc.lines if "resampling" in l)
            assert "48000 -> 44100 Hz" in line
            extra = int(line.split("+")[1].split()[0])
            lat = latency_of(proc)

            def take():
                res = rig.run(ev, 40000)
                return res, cycle_log(proc, cycles)

            def check(got):
                res, log = got
                assert res.sample_rate == 44100
                assert log is not None, "rtsynth did not write its cycle log"
                placed, lost = stream_events(res, log, ev)
                assert not lost, ("MIDI lost to cycles the server skipped for rtsynth", lost)
                # the note-on's stream frame, before the latency its callback added
                lg = clean_log(log)
                e = int(res.start) + int(res.event_frames[0])
                k = int(np.searchsorted(lg[:, 0], e, side="right")) - 1
                s_on = int(lg[k, 1] + (e - lg[k, 0]))
                pre = 2000
                x, seen = stream_audio(res, log, s_on - pre, pre + 30000)
                mono = x.mean(axis=1).astype(np.float64)
                on = detect_onsets(x.T, [pre], threshold=1e-4)[0]
                assert on >= 0, "no onset"
                assert seen[pre - 256:pre + on + 1].all(), (
                    "the recorder missed frames the onset is read from", on)
                # nothing before the stated latency; the attack starts within a control frame
                # after it (the player may have raised its latency a block or two after an
                # underrun at start)
                assert lat + extra <= on <= lat + extra + 2 * PERIOD + 200, (on, lat, extra)
                w0, w1 = pre + 8000, pre + 26000
                share = np.count_nonzero(seen[w0:w1]) / (w1 - w0)
                assert share > 0.8, f"{share:.2f} of the pitch window recorded"
                _, cents = pitch_cents(mono[w0:w1], 44100, 440.0)
                print(f"\nA4 {cents:+.2f} cents, onset {on} frames (latency {lat} + {extra}); "
                      f"xruns {res.xruns}, frames not recorded "
                      f"{np.count_nonzero(~res.recorded)}, window {share:.2f} recorded")
                assert abs(cents) < 5, cents
                assert np.max(np.abs(res.audio)) <= 1.0
            first_passing(take, check, tries=4)
            proc.stop()
    finally:
        rig.close()


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
