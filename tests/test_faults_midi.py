"""Every message in one raw MIDI buffer (a JACK MIDI event may hold several): running status,
real-time bytes inside a message, sysex followed by a note; bad bytes counted, never raised."""

from __future__ import annotations

import numpy as np
import pytest

from rtsynth.midi.messages import parse_message, split_messages


@pytest.mark.parametrize("raw,want", [
    ("90 3c 64", ["90 3c 64"]),
    ("90 3c 64 3e 64 40 00", ["90 3c 64", "90 3e 64", "90 40 00"]),         # running status
    ("90 f8 3c fe 64", ["90 3c 64"]),                                       # real time inside
    ("f8 fa 90 3c 64 fc", ["90 3c 64"]),
    ("f0 7e 7f 09 01 f7 90 3c 64", ["90 3c 64"]),                           # sysex, then a note
    ("f0 01 f8 02 f7 c5 07", ["c5 07"]),                                    # clock inside sysex
    ("c0 05 06 07", ["c0 05", "c0 06", "c0 07"]),
    ("f2 01 02 80 3c 00", ["80 3c 00"]),                                    # song position
    ("b0 07 7f e0 00 40 d3 22", ["b0 07 7f", "e0 00 40", "d3 22"]),
    ("", []),
])
def test_split(raw, want):
    assert [m.hex(" ") for m in split_messages(bytes.fromhex(raw))] == want


@pytest.mark.parametrize("raw,good,bad", [
    ("3c 40", [], 2),                          # data with no status
    ("90 3c", [], 2),                          # cut short by the end
    ("90 3c 90 40 40", ["90 40 40"], 2),       # cut short by a status byte
    ("f4 f5 f9 fd 90 3c 64", ["90 3c 64"], 4),  # undefined status bytes
    ("f0 01 02 90 3c 64", ["90 3c 64"], 1),     # a sysex with no end
    ("f7 80 3c 00", ["80 3c 00"], 1),           # a stray end of sysex
    ("90 3c 64 f0 01", ["90 3c 64"], 1),
])
def test_bad_bytes_are_one_byte_fragments(raw, good, bad):
    out = split_messages(bytes.fromhex(raw))
    assert [m.hex(" ") for m in out if len(m) > 1 or parse_message(m)] == good
    frags = [m for m in out if parse_message(m) is None]
    assert all(len(m) == 1 for m in frags) and len(frags) == bad


def test_random_buffers_give_whole_messages_or_counted_bytes():
    """2,000 random buffers: each output is a complete channel message whose data bytes are
    in the buffer (real-time bytes taken out), or a one-byte fragment of the buffer; never an
    exception."""
    rng = np.random.default_rng(5)
    for _ in range(2000):
        data = bytes(rng.integers(0, 256, int(rng.integers(0, 40)), np.uint8))
        plain = bytes(b for b in data if b < 0xF8)
        for m in split_messages(data):
            if len(m) == 1 and parse_message(m) is None:
                assert m[0] in data
            else:
                assert parse_message(m) is not None and m[1:] in plain, (data.hex(), m.hex())


def test_messages_survive_any_interleaving_of_real_time_bytes():
    rng = np.random.default_rng(7)
    for _ in range(500):
        msgs = []
        for _ in range(int(rng.integers(1, 6))):
            st = int(rng.integers(0x80, 0xF0))
            n = 1 if st >> 4 in (0xC, 0xD) else 2
            msgs.append(bytes([st, *rng.integers(0, 128, n)]))
        data = bytearray(b"".join(msgs))
        for _ in range(int(rng.integers(0, 5))):
            data.insert(int(rng.integers(0, len(data) + 1)), int(rng.choice([0xF8, 0xFE, 0xFA])))
        assert split_messages(bytes(data)) == msgs


def test_the_engine_counts_the_bad_bytes():
    from rtsynth.engine import Engine
    from rtsynth.instruments import BasicInstrument
    e = Engine(BasicInstrument(), block=128)
    for m in split_messages(bytes.fromhex("3c 90 3c 64 3e 64 f4 f8 b0 07")):
        e.push(0, m)
    e.render()
    assert e.stats["bad_messages"] == 4          # 3c, f4, and the cut b0 07
    assert e.active_voices == 2                  # both notes of the running status


def test_any_buffer_type():
    """rtmidi gives a list of ints, JACK a cffi buffer (which indexes as bytes), tests bytes."""
    import cffi
    ffi = cffi.FFI()
    raw = b"\x90\x3c\x64\x3e\x64"
    cbuf = ffi.new("unsigned char[]", raw)
    want = [b"\x90\x3c\x64", b"\x90\x3e\x64"]
    for data in (raw, bytearray(raw), list(raw), memoryview(raw), ffi.buffer(cbuf, 5)):
        assert split_messages(data) == want
    assert split_messages(ffi.buffer(cbuf, 3)) == want[:1]
