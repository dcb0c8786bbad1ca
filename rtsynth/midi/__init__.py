"""MIDI as data: message kinds and parsing of raw bytes (files: :mod:`rtsynth.render`)."""

from .messages import CHANNEL_KINDS, MidiError, parse_message  # noqa: F401
