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
        lo, hi = f(self.lo), f(self.hi)
        sep = " to " if "e" in lo + hi or lo.startswith("-") else "-"
        return f"{lo}{sep}{hi}{(' ' + self.unit) if self.unit else ''}"


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
    "reconnect_timeout": Limit(0.0, 1e6, unit="s"),
    "lower_after": Limit(0.01, 1e6, unit="s"),
    "threads": Limit(1, 2, True),
    # a life model's pitch movement, times the source's vibrato depth (the wheel adds up to 3x)
    "life": Limit(0.0, 4.0),
}


def check_range(name: str | Limit, value, what: str | None = None) -> float | int:
    """``value`` converted and checked against ``LIMITS[name]`` (or the :class:`Limit` given);
    raises ``ValueError`` with one line (``what`` names it, default the option's name)."""
    lim = name if isinstance(name, Limit) else LIMITS[name]
    what = what or ("value" if isinstance(name, Limit) else "--" + name.replace("_", "-"))
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


def checker(name: str | Limit):
    """The ``argparse`` ``type=`` function for ``LIMITS[name]`` (or the :class:`Limit` given)."""
    lim = name if isinstance(name, Limit) else LIMITS[name]

    def parse(text: str):
        try:
            return check_range(lim, text, what="value")
        except ValueError:
            kind = "an integer" if lim.integer else "a number"
            raise argparse.ArgumentTypeError(
                f"must be {kind} in {lim.text()}, not {text!r}") from None
    parse.__name__ = name if isinstance(name, str) else "number"   # argparse may name it
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


#: ``rtsynth train``'s numbers (dest -> limit): sizes that bound its memory, rates that keep it
#: finite
TRAIN_LIMITS: dict[str, Limit] = {
    "steps": Limit(0, 10 ** 9, True), "gan_steps": Limit(0, 10 ** 9, True),
    "batch": Limit(1, 4096, True), "crop": Limit(1, 4096, True, "frames"),
    "z_dim": Limit(1, 256, True), "kl_weight": Limit(0.0, 1e6),
    "lr": Limit(1e-12, 10.0), "lr_final": Limit(1e-12, 10.0), "gan_lr": Limit(1e-12, 10.0),
    "adv_weight": Limit(0.0, 1e6), "fm_weight": Limit(0.0, 1e6),
    "time_limit": Limit(0.0, 1e8, unit="s"), "gan_time_limit": Limit(0.0, 1e8, unit="s"),
    "max_frames": Limit(1, 10 ** 6, True), "ckpt_every": Limit(1, 10 ** 9, True),
    "log_every": Limit(1, 10 ** 9, True), "noise_warmup": Limit(0, 10 ** 9, True),
    "amp_bias": Limit(-100.0, 100.0), "tilt": Limit(0.0, 10.0), "log_weight": Limit(0.0, 1e6),
    "seed": Limit(0, 2 ** 32 - 1, True), "velocity_dropout": Limit(0.0, 1.0),
    "onset_weight": Limit(0.0, 1e6), "level_weight": Limit(0.0, 1e6),
    "pre_dim": Limit(1, 4096, True), "distill_weight": Limit(0.0, 1e6),
}


def bound(p: argparse.ArgumentParser, limits: dict[str, Limit]) -> None:
    """Give the numeric options of an already configured parser their ranges: ``limits`` maps
    an option's ``dest`` to its :class:`Limit` (the type becomes the range check, the range
    is added to its ``--help``); sub-commands' parsers too."""
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for sp in a.choices.values():
                bound(sp, limits)
            continue
        lim = limits.get(a.dest)
        if lim is None or not a.option_strings:
            continue
        a.type = checker(lim)
        a.help = (a.help + ", " if a.help else "") + lim.text()


def bound_train_options(p: argparse.ArgumentParser) -> None:
    """Give ``rtsynth train``'s numeric options their ranges (type and ``--help``), and
    ``--backbone-kw`` its check, on an already configured parser."""
    bound(p, TRAIN_LIMITS)
    for a in p._actions:
        if a.dest == "backbone_kw":
            a.type = backbone_kw_json


#: the numbers of the other subcommands, by subcommand (see :func:`bound`)
BENCH_LIMITS = {"notes": Limit(1, 100_000, True), "seconds": Limit(0.1, 86400.0, unit="s"),
                "voices": Limit(1, 256, True), "capacity_seconds": Limit(0.1, 3600.0, unit="s"),
                "felt_repeats": Limit(1, 1000, True), "render_runs": Limit(1, 100, True),
                "render_multipart": Limit(0.0, 3600.0, unit="s")}
EVAL_LIMITS = {"max_notes": Limit(1, 10 ** 6, True), "life": LIMITS["life"]}
BATCH_LIMITS = {"jobs": Limit(1, 256, True)}
DATASET_LIMITS = {"density": Limit(0.01, 100.0), "gain": Limit(0.0, 10.0),
                  "seed": Limit(0, 2 ** 32 - 1, True), "program": Limit(0, 127, True),
                  "n": Limit(1, 10_000, True), "notes": Limit(1, 10_000, True),
                  "test_fraction": Limit(0.0, 0.9), "gate_db": Limit(-120.0, 0.0, unit="dB")}


def backbone_kw_json(text: str) -> str:
    """``--backbone-kw``: a JSON object of sizes, each an integer 1-4096 (``dilations``: a list
    of at most 64 of them); returned as given (the trainer parses it)."""
    import json
    try:
        kw = json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not JSON: {text!r}") from None
    if not isinstance(kw, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object, not {text!r}")
    for k, v in kw.items():
        vals = v if k == "dilations" and isinstance(v, list) and 0 < len(v) <= 64 else [v]
        if not all(isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= 4096
                   for x in vals):
            raise argparse.ArgumentTypeError(f"{k} must be an integer in 1-4096"
                                             + (" (a list of at most 64)" if k == "dilations"
                                                else "") + f", not {v!r}")
    return text
