"""Fault suite: hostile MIDI files through ``rtsynth render`` (generated here:
:func:`rtsynth.testing.hostile.midi_files`). Each file either renders (a valid file: nothing
NaN, nothing above full scale, no longer than its music plus the tail) or is refused with one
line and exit 1; an existing output is never destroyed; every case is bounded in time."""

from __future__ import annotations

import time

import numpy as np
import pytest
import soundfile as sf

from rtsynth.cli import main
from rtsynth.testing.hostile import midi_files

CASES = midi_files(seed=0, n_random=8)
#: what must be refused, by name (the rest must render; random files may go either way)
REFUSED = {"empty", "mthd_only", "header_truncated", "header_length_huge", "no_track",
           "zero_tracks", "track_length_huge", "track_truncated_event", "bad_vlq_5_bytes",
           "vlq_runs_off_the_end", "running_status_without_status", "undefined_status_f4",
           "status_f9_realtime", "meta_length_huge", "sysex_length_huge", "division_zero",
           "smpte_bad", "format_3", "ntrks_65535_one_track", "unknown_chunk_length_huge",
           "tempo_max_long_deltas", "ten_hour_note", "seventy_seven_hour_note",
           "three_million_events"}
OLD = b"RIFF-an-old-render-that-must-survive"
MAX_DURATION = 60.0
TAIL = 1.0


def _render(tmp_path, capsys, name: str, data: bytes, *extra: str):
    mid = tmp_path / f"{name}.mid"
    mid.write_bytes(data)
    out = tmp_path / f"{name}.wav"
    out.write_bytes(OLD)
    capsys.readouterr()
    t = time.perf_counter()
    rc = main(["render", str(mid), "-o", str(out), "-i", "basic", "-q", "--tail", str(TAIL),
               "--max-duration", str(MAX_DURATION), *extra])
    took = time.perf_counter() - t
    err = capsys.readouterr().err
    return rc, err, out, took


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_midi_file(tmp_path, capsys, name):
    rc, err, out, took = _render(tmp_path, capsys, name, CASES[name])
    assert "Traceback" not in err
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")]
    assert not leftovers, leftovers
    if name in REFUSED or rc != 0:
        assert name in REFUSED or name.startswith("random_"), f"{name} was refused: {err}"
        assert rc == 1, (rc, err)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("rtsynth: error: "), err
        assert out.read_bytes() == OLD                      # nothing destroyed
        assert took < 30
        return
    x, sr = sf.read(out, dtype="float32")
    assert x.ndim == 2 and x.shape[1] == 2 and len(x) > 0
    assert np.isfinite(x).all() and np.abs(x).max() <= 1.0
    from rtsynth.render import events_length, read_midi_timed
    music = events_length(read_midi_timed(tmp_path / f"{name}.mid"))
    assert len(x) <= round((music + TAIL) * sr) + 1          # bounded by its music + tail
    assert took < 60


def test_the_engine_output_of_accepted_files_is_finite_and_below_full_scale(tmp_path):
    """The same files straight through the engine (float output, before PCM could hide a
    NaN): finite and within full scale, block by block."""
    from rtsynth.instruments import BasicInstrument
    from rtsynth.midi.messages import MidiError
    from rtsynth.render import (events_length, iter_blocks, offline_engine, read_midi_timed,
                                to_samples)
    n = 0
    for name, data in sorted(CASES.items()):
        if name in REFUSED:
            continue
        p = tmp_path / "f.mid"
        p.write_bytes(data)
        try:
            timed = read_midi_timed(p)
        except MidiError:
            continue
        if events_length(timed) > MAX_DURATION:
            continue
        e = offline_engine(BasicInstrument(), n_slots=32)
        for out in iter_blocks(e, to_samples(timed, e.sr), tail=TAIL):
            assert np.isfinite(out).all(), name
            assert np.abs(out).max() <= 1.0, name
        e.close()
        n += 1
    assert n >= 20


def test_an_absurd_length_is_refused_before_any_work(tmp_path, capsys):
    """A 200-byte file with a 10-hour note: refused at once by --max-duration (default one
    hour) instead of writing 4 GiB of silence; with a larger --max-duration a WAV that its
    header could not count is refused too (use .flac)."""
    data = CASES["ten_hour_note"]
    assert len(data) < 200
    mid = tmp_path / "long.mid"
    mid.write_bytes(data)
    out = tmp_path / "long.wav"
    t = time.perf_counter()
    rc = main(["render", str(mid), "-o", str(out), "-i", "basic", "-q"])
    err = capsys.readouterr().err
    assert rc == 1 and "--max-duration 3600" in err and "10:00:00" in err, err
    rc = main(["render", str(mid), "-o", str(out), "-i", "basic", "-q", "--max-duration",
               "86400"])
    err = capsys.readouterr().err
    assert rc == 1 and "a WAV file holds at most 4 GiB" in err and ".flac" in err, err
    assert time.perf_counter() - t < 20
    assert not out.exists()


def test_a_huge_file_is_refused_unread(tmp_path, capsys):
    """Over 16 MiB: refused from its size (a sparse file: nothing is read or allocated)."""
    from rtsynth.options import MAX_MIDI_BYTES
    mid = tmp_path / "huge.mid"
    with open(mid, "wb") as f:
        f.write(CASES["running_status"][:64])
        f.truncate(1 << 30)                                      # 1 GiB, sparse
    out = tmp_path / "huge.wav"
    rc = main(["render", str(mid), "-o", str(out), "-i", "basic", "-q"])
    err = capsys.readouterr().err
    assert rc == 1 and f"at most {MAX_MIDI_BYTES >> 20} MiB" in err, err
    assert not out.exists()


@pytest.mark.parametrize("what", ["folder", "dev_zero", "missing"])
def test_not_a_midi_file(tmp_path, capsys, what):
    path = {"folder": str(tmp_path), "dev_zero": "/dev/zero",
            "missing": str(tmp_path / "nope.mid")}[what]
    out = tmp_path / "o.wav"
    rc = main(["render", path, "-o", str(out), "-i", "basic", "-q"])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("rtsynth: error: ") and len(err.splitlines()) == 1, err
    assert not out.exists()


@pytest.mark.parametrize("fmt", [".wav", ".flac", ".ogg"])
def test_output_into_a_missing_folder_is_one_error(tmp_path, capsys, fmt):
    out = tmp_path / "no" / "such" / f"x{fmt}"
    rc = main(["render", "--demo", "-o", str(out), "-i", "basic", "-q"])
    err = capsys.readouterr().err
    assert rc == 1 and "no such folder" in err and len(err.splitlines()) == 1, err


def test_output_cannot_be_the_midi_file_or_a_folder(tmp_path, capsys):
    mid = tmp_path / "song.wav"                  # a MIDI file with an audio name
    mid.write_bytes(CASES["running_status"])
    rc = main(["render", str(mid), "-o", str(mid), "-i", "basic", "-q"])
    assert rc == 1 and "is the MIDI file" in capsys.readouterr().err
    assert mid.read_bytes() == CASES["running_status"]
    (tmp_path / "d.wav").mkdir()
    rc = main(["render", "--demo", "-o", str(tmp_path / "d.wav"), "-i", "basic", "-q"])
    assert rc == 1 and "is a folder" in capsys.readouterr().err


def test_a_failed_render_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    """A write error mid-render (the disk full): the old output is untouched, the temporary
    file removed."""
    from rtsynth import render as R
    from rtsynth.instruments import BasicInstrument
    out = tmp_path / "o.wav"
    out.write_bytes(OLD)
    calls = []
    real = R._Pcm24Wav.write

    def write(self, chunk):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(self, chunk)
    monkeypatch.setattr(R._Pcm24Wav, "write", write)
    e = R.offline_engine(BasicInstrument(), block=1024)
    with pytest.raises(OSError, match="No space"):
        R.render_to_file(e, R.demo_events(), out)
    e.close()
    assert out.read_bytes() == OLD
    assert [p.name for p in tmp_path.iterdir()] == ["o.wav"]


def test_render_ends_within_the_music_plus_the_tail(tmp_path):
    """A note held to the end: the file is exactly the music plus the tail (the voice still
    sounds, so only the bound ends it), at any block."""
    from rtsynth.instruments import BasicInstrument
    from rtsynth.render import offline_engine, render_to_file
    sr = 48000
    ev = [(0, b"\x90\x45\x64"), (sr, b"\xb0\x40\x7f"), (2 * sr + 77, b"\x80\x45\x00")]
    for block in (1024, 8192):
        e = offline_engine(BasicInstrument(), block=block)
        frames, _ = render_to_file(e, ev, tmp_path / "t.wav", tail=0.5)
        e.close()
        assert frames == 2 * sr + 77 + sr // 2
