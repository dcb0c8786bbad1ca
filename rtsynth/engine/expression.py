"""What the expressive controls do: the control map, and the MPE options.

A note's dynamics (spec column 7), brightness (column 8) and vibrato follow its controls. The
map says which control drives what (``--map pressure=vibrato``, or a dict from a preset)::

    control     message                                        default
    pressure    poly aftertouch (0xA0) for its note, channel    dynamics
                pressure (0xD0) for every note of the channel
                (of an MPE member channel: its note)
    breath      CC2                                             dynamics
    timbre      CC74                                            brightness
    modwheel    CC1                                             vibrato
    expression  CC11                                            dynamics

and the destinations: ``dynamics`` (pressure and the mod wheel swell the note from its velocity
towards full; breath sets it, once it has been sent; CC11 scales it), ``brightness`` (CC74 sets
it, 64 = the instrument as recorded; pressure swells it towards 1), ``vibrato`` (depth: the mod
wheel 0.5 semitone at 127, the others 0.35), ``none``.

A model of contract version 2 gets dynamics and brightness as inputs. For a version-1 model the
engine applies them to its controls: dynamics as level (``(dynamics / (velocity/127))**2``, the
square law of CC7/CC11, both taken as at least velocity 32's: at most +24 dB; CC11 stays the
channel gain), brightness as a spectral tilt of the
harmonic amplitudes (``h**s``, ``s`` from -1 at brightness 0 through 0 at 64/127 to +1 at 1:
-6 .. +6 dB per octave, at the same RMS).

MPE (MIDI Polyphonic Expression 1.0): ``auto`` follows the MPE Configuration Message (RPN 6 on
channel 1: the lower zone's member channels, on channel 16: the upper zone's; 0 turns a zone
off); ``lower``/``upper`` force one zone of 15 member channels, ``both`` two of 7 (channels
2-8 and 9-15), ``off`` ignores RPN 6. On a member channel the bend (default range 48 semitones;
RPN 0 on a member sets it for every member of the zone), channel pressure and CC74 are its
note's; the master channel's bend (range 2, its own RPN 0) adds to every note of the zone, its
sustain and CC1/7/11/64 apply to the whole zone.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

from .bank import (DST_BRIGHTNESS, DST_DYNAMICS, DST_NONE, DST_VIBRATO, SRC_BREATH,
                   SRC_EXPRESSION, SRC_MODWHEEL, SRC_PRESSURE, SRC_TIMBRE)

CONTROLS = {"pressure": SRC_PRESSURE, "aftertouch": SRC_PRESSURE, "breath": SRC_BREATH,
            "cc2": SRC_BREATH, "timbre": SRC_TIMBRE, "cc74": SRC_TIMBRE,
            "modwheel": SRC_MODWHEEL, "mod": SRC_MODWHEEL, "cc1": SRC_MODWHEEL,
            "expression": SRC_EXPRESSION, "cc11": SRC_EXPRESSION}
TARGETS = {"dynamics": DST_DYNAMICS, "brightness": DST_BRIGHTNESS, "vibrato": DST_VIBRATO,
           "none": DST_NONE}
DEFAULT_MAP = {"pressure": "dynamics", "breath": "dynamics", "timbre": "brightness",
               "modwheel": "vibrato", "expression": "dynamics"}
#: what each destination accepts (the rest would mean nothing: CC11 drives dynamics or none)
_ALLOWED = {SRC_EXPRESSION: (DST_DYNAMICS, DST_NONE)}
MPE_MODES = ("auto", "lower", "upper", "both", "off")


def control_map(spec: Mapping[str, str] | Iterable[str] | str | None = None) -> np.ndarray:
    """The route table (``routes[control] = destination``, int64) from a dict
    ``{"pressure": "vibrato"}``, ``"pressure=vibrato,breath=dynamics"`` or a list of such
    items, on top of :data:`DEFAULT_MAP`. Raises ValueError with one readable line."""
    routes = np.zeros(5, np.int64)
    for name, dst in DEFAULT_MAP.items():
        routes[CONTROLS[name]] = TARGETS[dst]
    items: list[tuple[str, str]] = []
    if spec is None:
        pass
    elif isinstance(spec, Mapping):
        items = [(str(k), str(v)) for k, v in spec.items()]
    else:
        parts = [spec] if isinstance(spec, str) else list(spec)
        for part in parts:
            for item in str(part).split(","):
                if not item.strip():
                    continue
                k, eq, v = item.partition("=")
                if not eq:
                    raise ValueError(f"--map {item!r}: write control=target, e.g. pressure=vibrato")
                items.append((k, v))
    for k, v in items:
        k, v = k.strip().lower(), v.strip().lower()
        if k not in CONTROLS:
            raise ValueError(f"--map: unknown control {k!r} (one of {', '.join(DEFAULT_MAP)})")
        if v not in TARGETS:
            raise ValueError(f"--map {k}: unknown target {v!r} (one of {', '.join(TARGETS)})")
        src, dst = CONTROLS[k], TARGETS[v]
        if dst not in _ALLOWED.get(src, tuple(TARGETS.values())):
            raise ValueError(f"--map {k}: can drive only dynamics or none")
        routes[src] = dst
    return routes


def describe_map(routes: np.ndarray) -> str:
    names = {v: k for k, v in TARGETS.items()}
    return ", ".join(f"{k}={names[int(routes[CONTROLS[k]])]}" for k in DEFAULT_MAP)


MAP_HELP = ("what an expressive control drives, control=target (repeat or comma-separate): "
            "controls pressure (poly/channel aftertouch), breath (CC2), timbre (CC74), "
            "modwheel (CC1), expression (CC11); targets dynamics, brightness, vibrato, none. "
            "Default: " + ", ".join(f"{k}={v}" for k, v in DEFAULT_MAP.items()))
MPE_HELP = ("MPE (MIDI Polyphonic Expression): auto (default) turns it on when the controller "
            "sends the MPE Configuration Message (RPN 6); lower/upper force one zone of 15 "
            "member channels (master channel 1 / 16), both two zones of 7, off ignores RPN 6")

DEVICES_LINE = ("MPE: on by itself when the controller sends the MPE Configuration Message "
                "(RPN 6); --mpe lower|upper|both forces it, --mpe off ignores it; "
                "--map CONTROL=TARGET changes what pressure, breath, CC74, CC1, CC11 drive")


def add_options(parser) -> None:
    """``--mpe`` and ``--map`` for ``rtsynth play`` and ``rtsynth render``."""
    parser.add_argument("--mpe", choices=MPE_MODES, default="auto", help=MPE_HELP)
    parser.add_argument("--map", action="append", default=None, metavar="CONTROL=TARGET",
                        type=_map_item, help=MAP_HELP)
    from ..options import checker, help_range
    parser.add_argument("--life", type=checker("life"), default=None, metavar="SCALE",
                        help="a model's own pitch movement (its life table: the source's "
                        "vibrato, settling, tuning): SCALE times the source's vibrato depth (1, the "
                        "default: its natural amount; the mod wheel deepens it up to 3x), 0 "
                        "turns the movement off (static lines); " + help_range("life"))


def _map_item(text: str) -> str:
    import argparse
    try:
        control_map(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("--map ").removeprefix("--map: "))
    return text


def engine_options(args) -> dict:
    """The Engine keyword arguments of those options (``mpe``, ``control_map``)."""
    kw = {}
    if getattr(args, "mpe", None):
        kw["mpe"] = args.mpe
    if getattr(args, "map", None):
        kw["control_map"] = args.map
    if getattr(args, "life", None) is not None:
        kw["life"] = float(args.life)
    return kw
