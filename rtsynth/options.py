"""Option values checked where they are parsed: every number has a range, stated in ``--help``.

Each checker is an ``argparse`` ``type=`` function: a value out of range (or NaN, or not a
number) becomes argparse's one-line usage error (exit 2) naming the option, the value and the
range, before any model is loaded or any file is touched. The ranges bound the work and memory
an option can ask for (measured before these limits: ``--polyphony 100000`` took all 24 GB,
``-z 10000000`` 14 GB).

The same limits serve the code paths that do not go through the command line
(:func:`check_range`).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

__all__ = ["Limit", "LIMITS", "check_range", "checker", "help_range", "ahead",
           "MAX_MIDI_BYTES", "MAX_MIDI_EVENTS", "DEFAULT_MAX_DURATION"]


@dataclass(frozen=True)
class Limit:
    """The accepted values of one option: ``lo <= x <= hi``, an integer when ``integer``."""
    lo: float
    hi: float
    integer: bool = False
    unit: str = ""

    def text(self) -> str:
        def f(x):
            return str(int(x)) if self.integer or float(x).is_integer() else f"{x:g}"
        return f"{f(self.lo)}-{f(self.hi)}{(' ' + self.unit) if self.unit else ''}"


#: an hour: longer renders are refused unless ``--max-duration`` says more (a 200-byte MIDI file
#: can hold a 77-hour note)
DEFAULT_MAX_DURATION = 3600.0
#: a MIDI file is read whole: larger ones are refused before reading (the largest real pieces
#: are a few MB; 16 MiB of notes is ~5 million events)
MAX_MIDI_BYTES = 16 << 20
#: channel messages of one MIDI file (each costs ~200 bytes while it waits in the engine)
MAX_MIDI_EVENTS = 2_000_000

LIMITS: dict[str, Limit] = {
    # voice slots: each holds the model's state and its work rows (a CNN: ~100 kB a slot)
    "polyphony": Limit(1, 256, True, "voices"),
    # frames per block: the engine's per-block buffers scale with it (render's default 8192)
    "block": Limit(16, 16384, True, "frames"),
    "sample_rate": Limit(8000, 192000, True, "Hz"),
    "gain": Limit(0.0, 10.0),
    "reverb": Limit(0.0, 1.0),
    "tail": Limit(0.0, 120.0, unit="s"),
    "max_duration": Limit(1.0, 86400.0, unit="s"),
    "timbre_cc": Limit(0, 127, True),
    "duration": Limit(0.001, 1e7, unit="s"),
    "ahead": Limit(0, 16, True, "blocks"),
}


def check_range(name: str, value, what: str | None = None) -> float | int:
    """``value`` converted and checked against ``LIMITS[name]``; raises ``ValueError`` with one
    line (``what`` names it in the message, default the option's name)."""
    lim = LIMITS[name]
    what = what or "--" + name.replace("_", "-")
    kind = "an integer" if lim.integer else "a number"
    try:
        x = float(value) if not isinstance(value, (int, float)) else value
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be {kind} in {lim.text()}, not {value!r}") from None
    if isinstance(x, bool) or not math.isfinite(x) or not lim.lo <= x <= lim.hi:
        raise ValueError(f"{what} must be {kind} in {lim.text()}, not {value!r}")
    if lim.integer:
        if float(x) != int(x) or (isinstance(value, str) and not _int_text(value)):
            raise ValueError(f"{what} must be {kind} in {lim.text()}, not {value!r}")
        return int(x)
    return float(x)


def _int_text(s: str) -> bool:
    s = s.strip()
    return s.lstrip("+-").isdigit()


def checker(name: str):
    """The ``argparse`` ``type=`` function for ``LIMITS[name]``."""
    lim = LIMITS[name]

    def parse(text: str):
        try:
            return check_range(name, text, what="value")
        except ValueError:
            kind = "an integer" if lim.integer else "a number"
            raise argparse.ArgumentTypeError(
                f"must be {kind} in {lim.text()}, not {text!r}") from None
    parse.__name__ = name          # argparse names the type in some messages
    return parse


def help_range(name: str) -> str:
    """``'1-256 voices'``: the range for a ``--help`` text."""
    return LIMITS[name].text()


def ahead(text: str):
    """``--ahead``: ``auto`` or a number of blocks in range."""
    if text == "auto":
        return text
    return checker("ahead")(text)


def add_render_options(p: argparse.ArgumentParser) -> None:
    """``rtsynth render``'s bounds on the work a file may ask for."""
    p.add_argument("--max-duration", type=checker("max_duration"),
                   default=DEFAULT_MAX_DURATION, metavar="SECONDS",
                   help=f"refuse a render longer than this: the MIDI file's length plus the tail "
                        f"({help_range('max_duration')}; default {DEFAULT_MAX_DURATION:g} s). "
                        f"MIDI files over {MAX_MIDI_BYTES >> 20} MiB or "
                        f"{MAX_MIDI_EVENTS:,} events are refused unread")
