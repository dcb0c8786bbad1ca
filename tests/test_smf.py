"""rtsynth.midi.smf: the render's MIDI file reader, against mido (the reference) and by hand."""

from __future__ import annotations

import struct

import mido
import pytest

from rtsynth.midi.messages import MidiError
from rtsynth.midi.smf import SmfError, read_smf
from rtsynth.render import read_midi_events


def mido_events(path, sr=48000):
    """What read_midi_events returned when it used mido."""
    mid = mido.MidiFile(str(path), clip=True)
    t = 0.0
    out = []
    for msg in mid:
        t += msg.time
        if msg.is_meta or msg.type == "sysex":
            continue
        out.append((int(round(t * sr)), bytes(msg.bytes())))
    return out


def chunk(name: bytes, body: bytes) -> bytes:
    return name + struct.pack(">I", len(body)) + body


def header(fmt=1, ntrks=1, division=480) -> bytes:
    return chunk(b"MThd", struct.pack(">HHH", fmt, ntrks, division))


def test_same_times_as_mido_with_tempo_changes_in_several_tracks(tmp_path):
    mid = mido.MidiFile(type=1, ticks_per_beat=384)
    conductor = mido.MidiTrack()
    mid.tracks.append(conductor)
    conductor.append(mido.MetaMessage("set_tempo", tempo=600000, time=0))
    conductor.append(mido.MetaMessage("set_tempo", tempo=431234, time=1000))
    conductor.append(mido.MetaMessage("time_signature", numerator=3, denominator=4, time=77))
    conductor.append(mido.MetaMessage("set_tempo", tempo=1234567, time=2000))
    for ch in range(3):
        tr = mido.MidiTrack()
        mid.tracks.append(tr)
        tr.append(mido.Message("program_change", channel=ch, program=73, time=0))
        for i in range(60):
            note = 48 + (i * 7 + ch * 5) % 36
            tr.append(mido.Message("note_on", channel=ch, note=note, velocity=1 + i % 127,
                                   time=(i * 37 + ch * 11) % 200))
            tr.append(mido.Message("pitchwheel", channel=ch, pitch=(i * 523) % 16000 - 8000,
                                   time=13))
            tr.append(mido.Message("control_change", channel=ch, control=1, value=i % 128,
                                   time=0))
            tr.append(mido.Message("note_off", channel=ch, note=note, velocity=0,
                                   time=(i * 53) % 300))
        tr.append(mido.Message("aftertouch", channel=ch, value=99, time=5))
        tr.append(mido.Message("polytouch", channel=ch, note=60, value=3, time=5))
    p = tmp_path / "tempo.mid"
    mid.save(p)
    ev = read_midi_events(p)
    assert ev == mido_events(p)
    assert len(ev) == 3 * (1 + 60 * 4 + 2)
    assert [e for e in ev if e[1][0] == 0xC1] == [(0, bytes([0xC1, 73]))]


def test_running_status_sysex_and_an_unknown_chunk(tmp_path):
    # note on ch 0, then two more note-ons by running status, a sysex (cancels running
    # status), a note-off; an alien chunk between the tracks is skipped (the SMF spec)
    t1 = bytes([0x00, 0x90, 60, 100, 0x10, 62, 101, 0x10, 64, 102,
                0x00, 0xF0, 0x03, 0x7E, 0x7F, 0xF7,
                0x81, 0x00, 0x80, 60, 0,
                0x00, 0xFF, 0x2F, 0x00])
    t2 = bytes([0x83, 0x60, 0xE5, 0x00, 0x40, 0x00, 0xFF, 0x2F, 0x00])
    data = header(1, 2, 96) + chunk(b"MTrk", t1) + chunk(b"XFIH", b"alien") + chunk(b"MTrk", t2)
    timed, n = read_smf(data)
    assert n == 2
    spb = 0.5 / 96                                   # seconds per tick at the default tempo
    assert [m for _, m in timed] == [bytes([0x90, 60, 100]), bytes([0x90, 62, 101]),
                                     bytes([0x90, 64, 102]), bytes([0x80, 60, 0]),
                                     bytes([0xE5, 0x00, 0x40])]
    assert [round(t / spb) for t, _ in timed] == [0, 16, 32, 160, 480]


def test_data_bytes_above_127_are_clipped_as_mido_does(tmp_path):
    body = bytes([0x00, 0x90, 60, 0xC8, 0x60, 0x80, 0xFF, 0x00, 0x00, 0xFF, 0x2F, 0x00])
    p = tmp_path / "clip.mid"
    p.write_bytes(header(0, 1, 480) + chunk(b"MTrk", body))
    ev = read_midi_events(p)
    assert ev == mido_events(p)
    assert [m for _, m in ev] == [bytes([0x90, 60, 127]), bytes([0x80, 127, 0])]


def test_smpte_division():
    # 25 fps, 40 ticks a frame: a tick is 1 ms, whatever the tempo
    body = bytes([0x00, 0xFF, 0x51, 0x03, 0x0F, 0x42, 0x40,
                  0x00, 0x90, 60, 100, 0x83, 0x74, 0x80, 60, 0])
    timed, _ = read_smf(header(0, 1, (256 - 25) << 8 | 40) + chunk(b"MTrk", body))
    assert [t for t, _ in timed] == [0.0, pytest.approx(0.5)]


@pytest.mark.parametrize("data, why", [
    (b"RIFF" + b"\0" * 30, "no MThd header"),
    (b"MThd\0\0\0\6\0\1", "no MThd header"),
    (header(1, 2) + chunk(b"MTrk", bytes([0, 0x90, 60, 100])), "1 of 2 tracks"),
    (header(0, 1) + b"MTrk\0\0\1\0" + bytes([0, 0x90]), "truncated"),
    (header(0, 1) + chunk(b"MTrk", bytes([0, 0x90, 60])), "truncated"),
    (header(0, 1) + chunk(b"MTrk", bytes([0, 60, 100])), "running status"),
    (header(0, 1) + chunk(b"MTrk", bytes([0, 0xF4])), "undefined status"),
    (header(0, 1) + chunk(b"MTrk", bytes([0xFF, 0xFF, 0xFF, 0xFF, 0x7F])), "longer than 4"),
    (header(0, 1) + chunk(b"MTrk", bytes([0, 0xFF, 0x51, 0x05, 1])), "truncated"),
    (header(3, 1) + chunk(b"MTrk", b""), "unknown format"),
    (header(0, 1, 0) + chunk(b"MTrk", b""), "zero ticks"),
])
def test_malformed_files_raise_one_clear_error(data, why):
    with pytest.raises(SmfError, match=why):
        read_smf(data)


def test_read_midi_events_names_the_file(tmp_path):
    p = tmp_path / "cut.mid"
    p.write_bytes(header(0, 1) + chunk(b"MTrk", bytes([0, 0x90, 60])))
    with pytest.raises(MidiError, match=r"cut\.mid is not a readable MIDI file \(track 1"):
        read_midi_events(p)
    p.write_bytes(header(0, 0))
    with pytest.raises(MidiError, match="has no tracks"):
        read_midi_events(p)
