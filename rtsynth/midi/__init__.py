"""MIDI as data: message kinds, parsing of raw bytes, MIDI files."""

from .messages import (CHANNEL_KINDS, MidiError, parse_message, iter_stream)  # noqa: F401
