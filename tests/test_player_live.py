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
    wav = tmp_path / "take.wav"
    with start_rtsynth(jack_server.env, "-i", "basic", "--record", str(wav), "-v") as proc:
        wire(jack_rig, proc)
        lat = latency_of(proc)
        pitches = [60, 67, 64, 72]
        ev = performance(pitches)
        runs = []
        for _ in range(5):                  # a loaded machine may drop cycles: run again
            res = jack_rig.run(ev, 50000)
            runs.append(res)
            if res.complete and res.late_events == 0 and res.xruns == 0:
                break
        assert proc.stop() == 0
    assert "recorded" in proc.output
    # -v: every incoming event, in words and bytes
    assert "ch1 note-on C4 90  [90 3c 5a]" in proc.output
    assert "ch1 note-off G4  [80 43 00]" in proc.output
    rec, sr = sf.read(wav, dtype="float32")
    assert sr == SR and rec.ndim == 2
    # the JACK recording is in the file, sample for sample (float WAV: exact): each take's
    # note-ons are in the .mid at the frames the file sounds them, and the take equals the
    # file from there on rtsynth's stream (takes.match_offline: a loaded machine's skipped
    # cycles tried as pauses of the stream or holes in the recording, fade-ins after xruns)
    from rtsynth.testing.takes import match_offline
    mid = mido.MidiFile(wav.with_suffix(".mid"))
    tick = mido.tick2second(1, mid.ticks_per_beat, 250000) * sr
    t, ons = 0, []
    for msg in mid.tracks[0]:
        t += msg.time
        if msg.type == "note_on" and msg.velocity:
            ons.append((int(round(t * tick)), msg.note, msg.velocity))
    assert len(ons) == 4 * len(runs), (len(ons), len(runs))
    matched, why = None, []
    for i in reversed(range(len(runs))):
        res = runs[i]
        f0 = ons[4 * i][0]                          # its first note-on, in the file
        m = match_offline(res, ev, lambda sev, f0=f0: rec[f0:], latency=lat,
                          lags=range(0, 8 * PERIOD + 1, PERIOD), tol=0.0)
        why.append(str(m))
        if m.ok and np.max(np.abs(m.off)) > 1e-2:
            matched = (res, f0 - int(res.event_frames[0]))
            break
    assert matched is not None, ("no JACK recording found sample-exact in the --record file",
                                 why)
    res, d = matched
    # ... and the .mid holds the notes at the frames they sounded in the file
    first = d + int(res.event_frames[0])           # the run's first note-on, in the file
    run_ons = [o for o in ons if first <= o[0] < first + 50000]
    assert [(n, v) for _, n, v in run_ons] == [(p, 90 + k) for k, p in enumerate(pitches)]
    # the same spacing as sent, to the frame (the player's latency is constant within a run)
    fr = np.array([f for f, _, _ in run_ons])
    # (but where the player's stream paused for a cycle the server skipped: then the notes
    # after it are that many frames earlier in the file; such gaps are in the recording too)
    from itertools import combinations
    from rtsynth.testing.takes import recorded_gaps
    sent = res.event_frames[0::3]
    gaps = recorded_gaps(res.recorded)
    for k, (got, want) in enumerate(zip(np.diff(fr), np.diff(sent))):
        between = [g for a, g in gaps if sent[k] <= a < sent[k + 1] + lat + 256]
        pauses = {sum(c) for r in range(len(between) + 1) for c in combinations(between, r)}
        assert want - got in pauses, (k, got, want, gaps)
    # each note-on sits where its sound starts in the file: latency (>= the initial one) after
    # the frame it was sent at, and the attack within one control frame of it
    from rtsynth import spec
    assert fr[0] - first >= lat
    on = detect_onsets(rec.T, fr, threshold=1e-4)
    assert np.all((on >= 0) & (on <= spec.HOP)), on


def test_record_survives_sigkill(jack_server, jack_rig, tmp_path):
    import mido
    import soundfile as sf
    wav = tmp_path / "killed.wav"
    with start_rtsynth(jack_server.env, "-i", "basic", "--record", str(wav), name="rtk") as proc:
        wire(jack_rig, proc, "rtk")
        jack_rig.run(performance([60, 64]), 30000)
        time.sleep(1.5)                      # the writer updates the header every second
        proc.stop(sig=signal.SIGKILL)
    x, sr = sf.read(wav, dtype="float32")
    assert sr == SR and len(x) > SR          # everything up to the last header update
    assert np.max(np.abs(x)) > 1e-3 and np.all(np.isfinite(x))
    notes = [m.note for m in mido.MidiFile(wav.with_suffix(".mid")) if m.type == "note_on"
             and m.velocity]
    assert notes == [60, 64]


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
    from dataclasses import replace
    from rtsynth.testing.takes import match_offline
    for attempt in range(4):      # a loaded machine can spoil a take: then play it again
        jack_rig.start([], int(20 * SR))      # record from before the file starts
        with start_rtsynth(jack_server.env, "-i", "basic", str(song), name="rtf") as proc:
            wire(jack_rig, proc, "rtf")
            proc.proc.wait(30)                # ends by itself after the file
        res = jack_rig.finish(stop_when=lambda rig: True)     # rtsynth has ended
        assert proc.proc.returncode == 0, proc.output[-2000:]
        assert "playing song.mid" in proc.output
        live = res.audio.T
        a = int(np.flatnonzero(np.abs(live).max(axis=1) > 1e-3)[0])
        b = int(np.flatnonzero(np.abs(off).max(axis=1) > 1e-3)[0])
        pre = min(a, b, 2000)
        # the file's events are on the player's stream: a take the server dropped cycles in
        # is compared on that stream (takes.match_offline: its skipped cycles tried as pauses
        # or holes, fade-ins after its xruns), from ``pre`` frames before the first sound
        end = a - pre + n + 2000                # the take up to the span compared
        take = replace(res, audio=res.audio[:, :end], recorded=res.recorded[:end],
                       event_frames=np.array([a - pre]))
        m = match_offline(take, [(0, b"\xfe")],
                          lambda sev: off[b - pre:b - pre + n + 100], tol=1e-5)
        if m.ok and len(m.live) >= n:
            break
    # the offline render puts every event at its exact frame: live, the same samples (24-bit
    # file: 6e-8 rounding); one event a frame off would differ by ~1e-3
    print(f"play FILE vs its render: {m} (attempt {attempt + 1})")
    assert m.ok and len(m.live) >= n, (m, len(m.live) if m.live is not None else None)
    assert np.max(np.abs(m.off)) > 1e-2
