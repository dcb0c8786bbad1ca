"""``rtsynth plugins``: the installed LV2 plugins (through lilv), for ``--fx`` and
``--channel N=lv2:URI``."""

from __future__ import annotations

import math
import sys


def add_parser(subparsers):
    p = subparsers.add_parser(
        "plugins", help="list the installed LV2 plugins (URI, name, kind, ports, controls)")
    p.add_argument("filter", nargs="?", default=None,
                   help="only plugins whose URI or name contains this (case-insensitive)")
    p.add_argument("--instruments", action="store_true", help="only instruments")
    p.add_argument("--effects", action="store_true", help="only effects")
    p.add_argument("--brief", action="store_true", help="one line per plugin, no controls")
    p.set_defaults(func=run)
    return p


def _num(v: float) -> str:
    return "-" if not math.isfinite(v) else f"{v:g}"


def run(args) -> int:
    from ..lv2 import LilvMissing
    from ..lv2.world import plugin_info, plugin_uris
    try:
        uris = plugin_uris()
    except LilvMissing as e:
        print(f"rtsynth: error: {e}", file=sys.stderr)
        return 1
    want = (args.filter or "").lower()
    shown = 0
    for uri in uris:
        try:
            info = plugin_info(uri)
        except Exception as e:          # one broken bundle does not hide the others
            print(f"{uri}\n  (cannot be described: {e})")
            continue
        if want and want not in uri.lower() and want not in info.name.lower():
            continue
        if args.instruments and not info.instrument:
            continue
        if args.effects and info.instrument:
            continue
        shown += 1
        kind = "instrument" if info.instrument else "effect"
        a_in, a_out = len(info.audio_in), len(info.audio_out)
        midi = len(info.midi_in)
        ports = f"audio {a_in} in / {a_out} out" + (f", MIDI {midi} in" if midi else "")
        lat = ", reports latency" if info.latency_port is not None else ""
        from ..lv2.host import SUPPORTED_FEATURES
        missing = [f.rsplit("/", 1)[-1] for f in info.required_features
                   if f not in SUPPORTED_FEATURES]
        if missing:
            lat += "; needs what this host lacks: " + ", ".join(missing)
        if args.brief:
            print(f"{uri}  {info.name}  [{kind}; {ports}]")
            continue
        print(f"{uri}\n  {info.name}: {kind} ({info.class_label}); {ports}{lat}")
        from ..lv2.world import world
        pres = world().presets(uri)
        if pres:
            print("  presets (preset=LABEL): " + ", ".join(repr(lab or u) for u, lab in pres))
        ctl = info.controls
        if ctl:
            print("  controls:")
            for c in ctl:
                flags = ("integer " if c.integer else "") + ("toggle " if c.toggled else "") + \
                    ("x sample rate " if c.sample_rate else "")
                print(f"    {c.symbol} = {_num(c.default)}  [{_num(c.minimum)} .. "
                      f"{_num(c.maximum)}] {flags}{c.name}".rstrip())
    if shown == 0:
        print("no LV2 plugins found" + (f" matching {args.filter!r}" if args.filter else "")
              + " (Debian packages: swh-lv2, x42-plugins, synthv1-lv2)")
    return 0
