"""Channel-voice messages as a table, and a tolerant parser for raw MIDI bytes.

Raw input comes from hardware, virtual ports and files; any of them can be malformed (truncated
messages, stray data bytes, running status). The parser never raises on live input: it returns
``None`` for what it cannot use, and the engine counts those.
"""

from __future__ import annotations

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


#: data bytes of a channel message, by status byte (0 for bytes below 0x80 and system bytes)
_DATA_LEN = bytes(CHANNEL_KINDS[s & 0xF0][1] if 0x80 <= s < 0xF0 else 0 for s in range(256))
#: data bytes of the system common messages (F0 sysex and F7 are handled apart); F4, F5 undefined
_COMMON_LEN = {0xF1: 1, 0xF2: 2, 0xF3: 1, 0xF6: 0}
#: real-time status bytes: one-byte messages that may appear anywhere, even inside another
#: message (F9 and FD are undefined)
_REALTIME = frozenset((0xF8, 0xFA, 0xFB, 0xFC, 0xFE, 0xFF))
_UNDEFINED = frozenset((0xF4, 0xF5, 0xF9, 0xFD))
#: one-byte fragments, made once: a bad byte is handed on without allocating
_BYTE = tuple(bytes((i,)) for i in range(256))


def split_messages(data) -> list[bytes]:
    """Every message in one raw MIDI buffer (a JACK MIDI event, an rtmidi message): the
    channel messages, in order, each complete with its status byte; and each byte that belongs
    to no message as a one-byte fragment, so that :meth:`Engine.push <rtsynth.engine.Engine.push>`
    counts it in ``stats['bad_messages']``.

    Running status (the status byte left out of the messages that follow in the same buffer)
    is restored; real-time bytes (clock, start, stop, active sensing...) are taken out wherever
    they are, even inside another message, which then goes on; a sysex (F0 ... F7) and the
    system common messages are skipped whole (rtsynth uses none). Bad bytes: data bytes with
    no status before them, a message cut short by a status byte or the end of the buffer (its
    bytes), undefined status bytes, a sysex with no end. Running status does not carry over
    from one buffer to the next (JACK MIDI events are whole messages).
    """
    if not isinstance(data, (bytes, bytearray)):
        data = bytes(data)          # rtmidi's list of ints; JACK's cffi buffer indexes as bytes
    n = len(data)
    if 2 <= n <= 3:                                   # the usual case: one channel message
        s = data[0]
        if 0x80 <= s < 0xF0 and n == 1 + _DATA_LEN[s] and data[1] < 0x80 \
                and data[n - 1] < 0x80:
            return [bytes(data)]
    out: list[bytes] = []
    status = 0          # running status: 0 none
    need = 0            # data bytes the message being read still needs
    msg = bytearray()   # the message being read (a channel or system common one)
    in_sysex = False
    common = False      # the message being read is a system common one (skipped when whole)
    for b in data:
        if b >= 0xF8:
            if b in _UNDEFINED:
                out.append(_BYTE[b])
            continue                                  # real time: taken out, skipped
        if in_sysex:
            if b == 0xF7:
                in_sysex = False
            elif b >= 0x80:
                # a status byte ends an unterminated sysex (counted bad), then is read
                in_sysex = False
                out.append(_BYTE[0xF0])
            else:
                continue
            if b == 0xF7:
                continue
        if b >= 0x80:
            if need:                                  # the previous message was cut short
                out.extend(_BYTE[x] for x in msg)
            msg.clear()
            need = 0
            common = False
            if b < 0xF0:
                status = b
                msg.append(b)
                need = _DATA_LEN[b]
            elif b == 0xF0:
                in_sysex = True
                status = 0
            elif b in _COMMON_LEN:
                status = 0
                need = _COMMON_LEN[b]
                common = True
                msg.append(b)
            else:                                     # F4, F5, a stray F7
                status = 0
                out.append(_BYTE[b])
            continue
        # a data byte
        if need:
            msg.append(b)
            need -= 1
        elif status:                                  # running status
            msg.clear()
            msg.append(status)
            msg.append(b)
            need = _DATA_LEN[status] - 1
        else:
            out.append(_BYTE[b])
            continue
        if not need:
            if not common:
                out.append(bytes(msg))
            msg.clear()
            common = False
    if need:
        out.extend(_BYTE[x] for x in msg)
    if in_sysex:
        out.append(_BYTE[0xF0])
    return out


#: ``--midi-api`` names -> python-rtmidi API constants (here, so the CLI can list them without
#: importing the live drivers)
RTMIDI_APIS = {"alsa": "API_LINUX_ALSA", "jack": "API_UNIX_JACK", "coremidi": "API_MACOSX_CORE",
               "winmm": "API_WINDOWS_MM", "webmidi": "API_WEB_MIDI_API"}
