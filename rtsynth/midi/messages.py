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


#: ``--midi-api`` names -> python-rtmidi API constants (here, so the CLI can list them without
#: importing the live drivers)
RTMIDI_APIS = {"alsa": "API_LINUX_ALSA", "jack": "API_UNIX_JACK", "coremidi": "API_MACOSX_CORE",
               "winmm": "API_WINDOWS_MM", "webmidi": "API_WEB_MIDI_API"}
