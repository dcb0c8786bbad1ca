"""rtsynth: a real-time neural synthesizer and instrument host."""

__version__ = "0.1.0"
