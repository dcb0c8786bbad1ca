"""`rtsynth play` with --record, a MIDI file, a 44.1 kHz server and its error messages, on real
JACK dummy servers, checked against a JACK recording of rtsynth's ports (frames, no host clock).
"""

import signal
import sys
import time

import numpy as np
import pytest

from rtsynth.testing.jackrig import detect_onsets, pitch_cents, wait_for_ports
from rtsynth.testing.procs import ManagedProcess

SR = 48000
PERIOD = 128
CMD = [sys.executable, "-m", "rtsynth.cli", "play", "--driver", "jack", "--reverb", "0",
       "--no-keys"]


def start_rtsynth(env, *extra, name="rtsynth"):
    return ManagedProcess([*CMD, "--client-name", name, *extra],
                          env=dict(env, PYTHONUNBUFFERED="1"), ready=r"rtsynth: latency",
                          ready_timeout=120)


def latency_of(proc) -> int:
    line = next(l for _, l in proc.lines if "latency MIDI->audio" in l)
    return int(line.split("latency MIDI->audio ")[1].split()[0])


def wire(rig, proc, name="rtsynth"):
    wait_for_ports(rig.rx, rf"^{name}$", midi=True, is_input=True, proc=proc.proc)
    rig.disconnect_all()
    rig.connect_midi(f"{name}:midi_in")
    rig.connect_audio([f"{name}:out_1", f"{name}:out_2"])


def exact_offset(haystack: np.ndarray, needle: np.ndarray, guess: int, search: int = 4096):
    """The offset d (near ``guess``) with haystack[d:d+n] == needle exactly, or None."""
    n = len(needle)
    for d in sorted(range(guess - search, guess + search + 1), key=lambda d: abs(d - guess)):
        if d < 0 or d + n > len(haystack):
            continue
        if np.array_equal(haystack[d:d + n], needle):
            return d
    return None


def performance(pitches, spacing=9000, length=6000, first=2000):
    ev = []
    for k, p in enumerate(pitches):
        t = first + k * spacing + 37 * k
        ev += [(t, bytes([0x90, p, 90 + k])), (t + length, bytes([0x80, p, 0])),
               (t + length + 1500, bytes([0xB0, 120, 0]))]     # silence the release tail
    return ev


def test_record_holds_the_samples_jack_got_and_the_midi(jack_server, jack_rig, tmp_path):
    import mido
    import soundfile as sf
    from rtsynth.testing.play import cycle_log
    from rtsynth.testing.takes import match_stream, stream_events
    wav, cycles = tmp_path / "take.wav", tmp_path / "cycles.npy"
    with start_rtsynth(jack_server.env, "-i", "basic", "--record", str(wav), "-v",
                       "--cycle-log", str(cycles)) as proc:
        wire(jack_rig, proc)
        pitches = [60, 67, 64, 72]
        ev = performance(pitches)
        runs = []
        for _ in range(3):        # a run the server lost MIDI of for rtsynth: again
            n0 = len(proc.lines)
            res = jack_rig.run(ev, 50000)
            runs.append(res)
            got = _heard(proc, n0, 8)               # -v: what reached it (4 ons, 4 offs)
            if got == 8 and not stream_events(res, cycle_log(proc, cycles), ev)[1]:
                break
        assert proc.stop() == 0
    log = np.load(cycles)
    assert "recorded" in proc.output
    # -v: every incoming event, in words and bytes
    assert "ch1 note-on C4 90  [90 3c 5a]" in proc.output
    assert "ch1 note-off G4  [80 43 00]" in proc.output
    rec, sr = sf.read(wav, dtype="float32")
    assert sr == SR and rec.ndim == 2
    mid = mido.MidiFile(wav.with_suffix(".mid"))
    tick = mido.tick2second(1, mid.ticks_per_beat, 250000) * sr
    t, ons = 0, []
    for msg in mid.tracks[0]:
        t += msg.time
        if msg.type == "note_on" and msg.velocity:
            ons.append((int(round(t * tick)), msg.note, msg.velocity))
    # The JACK recording is in the file, sample for sample (float WAV: exact; the fade-ins
    # after a loaded machine's xruns as the cycle log says), on rtsynth's stream: each run's
    # note-ons are in the .mid at the stream frames rtsynth placed them (the run's first one
    # says where the file begins on the stream), and the take equals the file from there.
    run = runs[-1]
    placed, lost = stream_events(run, log, ev)
    assert not lost, ("note-ons lost in every run", lost)
    assert len(ons) >= 4, ons                    # (an earlier run may have lost one)
    sent_on = [w for (w, d) in placed if d[0] == 0x90]
    file_on = [f for f, _, _ in ons[-4:]]
    assert [(n, v) for _, n, v in ons[-4:]] == [(p, 90 + k) for k, p in enumerate(pitches)]
    r0 = sent_on[0] - file_on[0]                 # the stream frame of the file's frame 0
    # ... the .mid holds every note-on at the frame it was placed on the stream, to the frame
    assert [w - r0 for w in sent_on] == file_on, (sent_on, file_on, r0)
    m = match_stream(run, log, rec, r0, tol=0.0)
    print(f"JACK take vs the --record file: {m}")
    assert m.ok, m
    assert np.max(np.abs(m.off)) > 1e-2
    # each note-on sits where its sound starts in the file: the attack within one control
    # frame of it
    from rtsynth import spec
    on = detect_onsets(rec.T, file_on, threshold=1e-4)
    assert np.all((on >= 0) & (on <= spec.HOP)), on


def _heard(proc, since: int, want: int, timeout: float = 2.0) -> int:
    """Note-ons and -offs ``play -v`` printed since line ``since`` (waiting up to ``timeout``
    s for ``want`` of them)."""
    deadline = time.monotonic() + timeout
    while True:
        n = sum(1 for _, l in proc.lines[since:] if " note-o" in l and "  [" in l)
        if n >= want or time.monotonic() > deadline:
            return n
        time.sleep(0.05)


def test_record_survives_sigkill(jack_server, jack_rig, tmp_path):
    import mido
    import soundfile as sf
    wav = tmp_path / "killed.wav"
    with start_rtsynth(jack_server.env, "-i", "basic", "--record", str(wav), "-v",
                       name="rtk") as proc:
        wire(jack_rig, proc, "rtk")
        for _ in range(3):       # a run the server lost a note-on of for rtsynth: again
            n0 = len(proc.lines)
            jack_rig.run(performance([60, 64]), 30000)
            if _heard(proc, n0, 4) == 4:
                break
        time.sleep(1.5)                      # the writer updates the header every second
        proc.stop(sig=signal.SIGKILL)
    heard = [int(l.split("[")[1].split()[1], 16) for _, l in proc.lines
             if " note-on " in l and "  [" in l]
    x, sr = sf.read(wav, dtype="float32")
    assert sr == SR and len(x) > SR          # everything up to the last header update
    assert np.max(np.abs(x)) > 1e-3 and np.all(np.isfinite(x))
    notes = [m.note for m in mido.MidiFile(wav.with_suffix(".mid")) if m.type == "note_on"
             and m.velocity]
    # every note-on that reached it is in the .mid, in order (and a run that lost none: the
    # last two)
    assert notes == heard and heard[-2:] == [60, 64], (notes, heard)


def write_song(path, notes, tpb=480, tempo=500000):
    """notes: [(start_s, length_s, pitch)] -> a type-1 file with a tempo track."""
    import mido
    mid = mido.MidiFile(type=1, ticks_per_beat=tpb)
    t0 = mido.MidiTrack()
    t0.append(mido.MetaMessage("set_tempo", tempo=tempo, time=0))
    tr = mido.MidiTrack()
    mid.tracks += [t0, tr]
    ev = []
    for s, l, p in notes:
        ev += [(s, mido.Message("note_on", note=p, velocity=100)),
               (s + l, mido.Message("note_off", note=p, velocity=0))]
    ev.sort(key=lambda e: e[0])
    last = 0
    for s, m in ev:
        tk = int(round(mido.second2tick(s, tpb, tempo)))
        m.time = tk - last
        last = tk
        tr.append(m)
    mid.save(path)


def test_play_file_sounds_its_notes_at_its_times(jack_server, jack_rig, tmp_path):
    """`play FILE.mid`: JACK receives what an offline render of the file holds, sample for
    sample once aligned (the file's events at exact frames)."""
    import soundfile as sf
    song = tmp_path / "song.mid"
    notes = [(0.0, 0.25, 60), (0.3125, 0.2, 64), (0.5, 0.4, 67), (1.0, 0.3, 72)]
    write_song(song, notes)
    from rtsynth.cli import main
    off_path = tmp_path / "off.wav"
    assert main(["render", str(song), "-o", str(off_path), "-i", "basic", "--reverb", "0",
                 "-z", "128", "-q"]) == 0
    off, _ = sf.read(off_path, dtype="float32")
    n = int(1.4 * SR)
    from rtsynth.testing.takes import match_stream, stream_audio
    cycles = tmp_path / "cycles.npy"
    m = None
    for attempt in range(4):      # a loaded machine can spoil a take: then play it again
        jack_rig.start([], int(20 * SR))      # record from before the file starts
        with start_rtsynth(jack_server.env, "-i", "basic", str(song), "--cycle-log",
                           str(cycles), name="rtf") as proc:
            wire(jack_rig, proc, "rtf")
            proc.proc.wait(30)                # ends by itself after the file
        res = jack_rig.finish(stop_when=lambda rig: True)     # rtsynth has ended
        assert proc.proc.returncode == 0, proc.output[-2000:]
        assert "playing song.mid" in proc.output
        log = np.load(cycles)
        # The take on rtsynth's stream (its cycle log: frames the server skipped for it are
        # not in it, fade-ins after xruns as logged); the file's first sound there says where
        # the file began on the stream, to within a fade or a recorder hole: the frame that
        # makes the take equal the render is searched for near it
        x, seen = stream_audio(res, log, 0, int(log[:, 3].max()) + 1)
        a = int(np.flatnonzero(seen & (np.abs(x).max(axis=1) > 1e-3))[0])
        b = int(np.flatnonzero(np.abs(off).max(axis=1) > 1e-3)[0])
        ref = off[:b + n + 100]
        for k in sorted(range(-256, 257), key=abs):
            m = match_stream(res, log, ref, a - b + k, tol=1e-5)
            if m.ok:
                break
        if m.ok and np.count_nonzero(m.valid) >= 0.8 * n:    # (not: recorder holes)
            break
    # the offline render puts every event at its exact frame: live, the same samples (24-bit
    # file: 6e-8 rounding); one event a frame off would differ by ~1e-3
    print(f"play FILE vs its render: {m} (attempt {attempt + 1})")
    assert m.ok and np.count_nonzero(m.valid) >= 0.8 * n, (m, np.count_nonzero(m.valid))
    assert np.max(np.abs(m.off)) > 1e-2
