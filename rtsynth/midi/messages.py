"""Channel-voice messages as a table, and a tolerant parser for raw MIDI bytes.

Raw input comes from hardware, virtual ports and files; any of them can be malformed (truncated
messages, stray data bytes, running status). The parser never raises on live input: it returns
``None`` for what it cannot use, and the engine counts those.
"""

from __future__ import annotations

from typing import Iterable, Iterator

# status nibble -> (kind, number of data bytes)
CHANNEL_KINDS: dict[int, tuple[str, int]] = {
    0x80: ("note_off", 2),
    0x90: ("note_on", 2),
    0xA0: ("poly_aftertouch", 2),
    0xB0: ("control_change", 2),
    0xC0: ("program_change", 1),
    0xD0: ("channel_aftertouch", 1),
    0xE0: ("pitch_bend", 2),
}

# System messages and their data lengths (None: variable, SysEx until 0xF7).
SYSTEM_LENGTHS: dict[int, int | None] = {
    0xF0: None, 0xF1: 1, 0xF2: 2, 0xF3: 1, 0xF6: 0, 0xF7: 0,
    0xF8: 0, 0xFA: 0, 0xFB: 0, 0xFC: 0, 0xFE: 0, 0xFF: 0,
}


class MidiError(ValueError):
    """A MIDI file or message that cannot be used."""


def parse_message(data: bytes | bytearray | list[int] | tuple[int, ...]
                  ) -> tuple[int, int, int] | None:
    """One complete message -> ``(status, data1, data2)`` for channel messages, else ``None``.

    Returns None for system messages, truncated messages, data bytes out of range, or anything
    that is not a channel message. A note-on with velocity 0 is returned as a note-off.
    """
    if not data:
        return None
    status = data[0]
    if status < 0x80 or status >= 0xF0:
        return None
    kind = CHANNEL_KINDS[status & 0xF0]
    n = kind[1]
    if len(data) < 1 + n:
        return None
    d1 = data[1]
    d2 = data[2] if n == 2 else 0
    if d1 > 127 or d2 > 127:
        return None
    if status & 0xF0 == 0x90 and d2 == 0:
        status = 0x80 | (status & 0x0F)
        d2 = 64
    return status, d1, d2


def iter_stream(stream: Iterable[int]) -> Iterator[tuple[int, int, int]]:
    """Parse a raw byte stream (with running status); skips what cannot be parsed."""
    running = 0
    buf: list[int] = []
    need = 0
    in_sysex = False
    for b in stream:
        if b >= 0xF8:            # real-time bytes may appear anywhere
            continue
        if in_sysex:
            if b == 0xF7:
                in_sysex = False
            elif b >= 0x80:
                in_sysex = False
            else:
                continue
        if b >= 0x80:
            if b == 0xF0:
                in_sysex = True
                running = 0
                continue
            if b >= 0xF0:
                running = 0
                buf = []
                continue
            running = b
            buf = [b]
            need = CHANNEL_KINDS[b & 0xF0][1]
            continue
        if not running:
            continue             # stray data byte
        if not buf:
            buf = [running]
        buf.append(b)
        if len(buf) == 1 + need:
            msg = parse_message(buf)
            if msg is not None:
                yield msg
            buf = []
