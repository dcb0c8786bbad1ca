"""Standard MIDI Files (SMF, formats 0, 1 and 2) -> timed channel messages.

A small reader for what a render needs: every channel message of every track, merged in time
order, each at its time in seconds through the file's tempo map. It reads a file in a few tens
of milliseconds where mido takes a tenth of a second or more (and 30 ms to import): for the
bench's 187 s file that was most of the gap between the start of ``rtsynth render`` and its
first block.

Times agree with mido's to the last bit (the same merge, the same float arithmetic: seconds
accumulated message by message, ``ticks * (tempo * 1e-6 / ticks_per_beat)``), so a file renders
to the same samples with either; ``tests/test_smf.py`` compares them.

Malformed input raises :class:`SmfError` (a :class:`~rtsynth.midi.messages.MidiError`) with one
readable line: a missing or wrong header, a truncated chunk or event, running status with
nothing to run, an undefined status byte. Data bytes above 127 are clipped to 127 (as mido's
``clip=True``); unknown chunks are skipped (as the SMF specification asks).
"""

from __future__ import annotations

from .messages import CHANNEL_KINDS, MidiError

DEFAULT_TEMPO = 500000          # microseconds per quarter note (120 bpm)

#: data bytes of a channel message, by its high nibble
_CHANNEL_LEN = {status >> 4: n for status, (_, n) in CHANNEL_KINDS.items()}
#: data bytes of a system common / real-time status (not channel messages: read and dropped)
_SYSTEM_LEN = {0xF1: 1, 0xF2: 2, 0xF3: 1, 0xF6: 0, 0xF8: 0, 0xFA: 0, 0xFB: 0, 0xFC: 0,
               0xFE: 0}

# kinds in the merged list
_CHANNEL, _TEMPO, _OTHER = 0, 1, 2


class SmfError(MidiError):
    """The bytes are not a readable Standard MIDI File."""


def read_smf(data: bytes, max_events: int | None = None
             ) -> tuple[list[tuple[float, bytes]], int]:
    """``data`` (a whole file) -> ``([(seconds, message bytes)], n_tracks)``: the channel
    messages of all tracks in time order (ties: track order, then file order). More than
    ``max_events`` events (of any kind) raise :class:`SmfError`, so memory stays bounded."""
    limit = max_events if max_events is not None else 1 << 62
    if len(data) < 14 or data[:4] != b"MThd":
        raise SmfError("no MThd header")
    hlen = int.from_bytes(data[4:8], "big")
    if hlen < 6 or 8 + hlen > len(data):
        raise SmfError("truncated header")
    fmt = int.from_bytes(data[8:10], "big")
    ntrks = int.from_bytes(data[10:12], "big")
    division = int.from_bytes(data[12:14], "big")
    if fmt > 2:
        raise SmfError(f"unknown format {fmt}")
    if division & 0x8000:
        # SMPTE: -frames per second in the high byte, ticks per frame in the low byte; the
        # tempo map does not apply
        fps = 256 - (division >> 8)
        tpf = division & 0xFF
        if fps not in (24, 25, 29, 30) or tpf == 0:
            raise SmfError(f"bad SMPTE division {division:#06x}")
        smpte = 1.0 / ((29.97 if fps == 29 else fps) * tpf)
        tpb = 0
    else:
        if division == 0:
            raise SmfError("zero ticks per beat")
        smpte = 0.0
        tpb = division
    pos = 8 + hlen
    merged: list[tuple[int, int, object]] = []   # (absolute tick, kind, payload)
    n_tracks = 0
    while pos + 8 <= len(data) and n_tracks < ntrks:
        name = data[pos:pos + 4]
        size = int.from_bytes(data[pos + 4:pos + 8], "big")
        pos += 8
        end = pos + size
        if end > len(data):
            raise SmfError(f"track {n_tracks + 1} is truncated ({len(data) - pos} of {size} "
                           f"bytes)")
        if name == b"MTrk":
            _read_track(data[pos:end], n_tracks + 1, merged, limit)
            n_tracks += 1
        pos = end
    if n_tracks < ntrks:
        raise SmfError(f"truncated: {n_tracks} of {ntrks} tracks")
    merged.sort(key=_tick)
    out: list[tuple[float, bytes]] = []
    append = out.append
    t = 0.0
    prev = 0
    scale = DEFAULT_TEMPO * 1e-6 / tpb if tpb else smpte
    for tick, kind, payload in merged:
        delta = tick - prev
        if delta > 0:
            t += delta * scale
            prev = tick
        if kind == _CHANNEL:
            append((t, payload))
        elif kind == _TEMPO and tpb:
            scale = payload * 1e-6 / tpb
    return out, n_tracks


def _tick(e):
    return e[0]


def _read_track(data: bytes, track: int, merged: list, limit: int = 1 << 62) -> None:
    """Append one track's events to ``merged`` as ``(absolute tick, kind, payload)``; an
    end-of-track meta event is not an event of the merge (as mido: the merged track has one, at
    its end)."""
    append = merged.append
    tick = 0
    status = 0            # running status (0: none)
    clen = _CHANNEL_LEN
    pos = 0
    end = len(data)
    try:
        while pos < end:
            if len(merged) > limit:
                raise SmfError(f"more than {limit} events")
            delta, pos = _vlq(data, pos, track, "delta time")
            tick += delta
            b = data[pos]
            if b & 0x80:
                pos += 1
                if b < 0xF0:
                    status = b
                    nd = clen[b >> 4]
                    d = data[pos:pos + nd]
                    pos += nd
                elif b == 0xFF:                          # meta event
                    kind = data[pos]
                    size, pos = _vlq(data, pos + 1, track, "meta event length")
                    body = data[pos:pos + size]
                    pos += size
                    if len(body) < size:
                        raise IndexError
                    if kind == 0x51 and size >= 3:
                        append((tick, _TEMPO, (body[0] << 16) | (body[1] << 8) | body[2]))
                    elif kind != 0x2F:
                        append((tick, _OTHER, None))
                    continue
                elif b in (0xF0, 0xF7):                  # sysex: length, data
                    size, pos = _vlq(data, pos, track, "sysex length")
                    pos += size
                    if pos > end:
                        raise IndexError
                    status = 0
                    append((tick, _OTHER, None))
                    continue
                else:
                    nd = _SYSTEM_LEN.get(b)
                    if nd is None:
                        raise SmfError(f"track {track}: undefined status byte {b:#04x}")
                    pos += nd
                    if pos > end:
                        raise IndexError
                    append((tick, _OTHER, None))
                    continue
            else:
                if not status:
                    raise SmfError(f"track {track}: running status with no status before it")
                nd = clen[status >> 4]
                d = data[pos:pos + nd]
                pos += nd
                b = status
            if len(d) != nd:
                raise IndexError
            if nd == 2:
                d0, d1 = d
                msg = bytes((b, d0 if d0 < 128 else 127, d1 if d1 < 128 else 127))
            else:
                d0 = d[0]
                msg = bytes((b, d0 if d0 < 128 else 127))
            append((tick, _CHANNEL, msg))
    except IndexError:
        raise SmfError(f"track {track} is truncated (an event runs past its end)") from None


def _vlq(data: bytes, pos: int, track: int, what: str) -> tuple[int, int]:
    """A variable-length quantity (at most 4 bytes) at ``pos`` -> ``(value, next pos)``."""
    v = 0
    for _ in range(4):
        b = data[pos]
        pos += 1
        v = (v << 7) | (b & 0x7F)
        if not b & 0x80:
            return v, pos
    raise SmfError(f"track {track}: {what} longer than 4 bytes")
