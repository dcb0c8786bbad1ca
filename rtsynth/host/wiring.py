"""The host's command-line options and the engine (or rack) that ``play`` and ``render`` get.

:func:`add_options` adds ``--channel``, ``--fx``, ``--preset``, ``--stems`` and
``--multi-out`` to a parser; :func:`host_engine` builds what ``cli._make_engine`` returns:

- one instrument with nothing per channel asked (``-i NAME``, or a file without program changes
  or drums, or live play): the plain engine, with the ``--fx`` chain in its master;
- otherwise a :class:`~rtsynth.host.rack.Rack`: an instrument per channel (``--channel``, the
  preset's ``[channels]``, GM program changes), channel 10 percussion, one master chain.

A bad ``--fx``/``--channel``/``--preset`` is one ``rtsynth: error:`` line and exit status 2.
"""

from __future__ import annotations

import argparse
import sys

from . import gm

EXIT_USAGE = 2


class _DefaultFloat(float):
    """A parser default (so a preset may replace it; a value given on the command line is a
    plain float)."""


class _DefaultInt(int):
    pass


class _DefaultNone:
    pass


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--channel", action="append", default=None, metavar="N=SPEC",
                   help="the instrument of MIDI channel N (1-16): a model name or folder, "
                        "'basic', or 'lv2:URI' (an LV2 instrument); repeatable")
    p.add_argument("--fx", action="append", default=None, metavar="'URI symbol=value ...'",
                   help="an LV2 effect on the master, before reverb and limiter; repeatable, "
                        "applied in order (`rtsynth plugins` lists them and their controls)")
    p.add_argument("--preset", default=None, metavar="FILE|NAME",
                   help="a TOML preset (instruments per channel, effects, gain, reverb, "
                        "polyphony, controllers); NAME is looked up in ~/.config/rtsynth/; "
                        "command-line options override it")
    p.add_argument("--gm", action="store_true",
                   help="follow GM program changes live (loads every model the GM table "
                        "selects up front); a file render always follows them")
    p.add_argument("--stems", default=None, metavar="DIR",
                   help="render: also write each channel's part alone, one file per channel, "
                        "into DIR (before the master chain)")
    p.add_argument("--multi-out", action="store_true",
                   help="play (JACK): each channel's part on its own stereo pair "
                        "(rtsynth:ch1_L, ch1_R, ...) besides the master pair")
    # parser defaults a preset may replace
    for a in p._actions:
        if a.dest in ("gain", "reverb") and isinstance(a.default, float):
            a.default = _DefaultFloat(a.default)
        elif a.dest == "polyphony" and isinstance(a.default, int):
            a.default = _DefaultInt(a.default)


def _given(v) -> bool:
    return v is not None and not isinstance(v, (_DefaultFloat, _DefaultInt))


def _fail(msg: str) -> None:
    print(f"rtsynth: error: {msg}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_USAGE)


def parse_channel_specs(items) -> dict[int, str]:
    if not items:
        return {}
    from .preset import parse_channel_number
    out = {}
    for item in items or []:
        k, eq, v = str(item).partition("=")
        if not eq or not v.strip():
            from .preset import PresetError
            raise PresetError(f"--channel {item!r}: give N=SPEC, e.g. 1=violin or "
                             f"2=lv2:http://synthv1.sourceforge.net/lv2")
        out[parse_channel_number(k)] = v.strip()
    return out


def host_engine(args, block, device_rate, offline, plain):
    """What ``play``/``render`` use; ``plain(args, block, device_rate, offline)`` is the CLI's
    one-instrument engine."""
    try:
        return _host_engine(args, block, device_rate, offline, plain)
    except Exception as e:
        if not _host_error(e):
            raise
        _fail(str(e))


def _host_error(e: BaseException) -> bool:
    """An LV2 or preset error (one line for the user). Their modules are imported only when an
    --fx, lv2: channel or --preset needs them (~10 ms of a plain play's start-up): an error of
    a module never imported was not raised."""
    pkg = __name__.rsplit(".", 2)[0]
    kinds = []
    for mod, name in (("lv2", "LilvMissing"), ("lv2.world", "LV2Error"),
                      ("host.preset", "PresetError")):
        m = sys.modules.get(f"{pkg}.{mod}")
        if m is not None and hasattr(m, name):
            kinds.append(getattr(m, name))
    return bool(kinds) and isinstance(e, tuple(kinds))


def _apply_preset(args):
    if not getattr(args, "preset", None):
        return None
    from .preset import PresetError, load_preset
    pr = load_preset(args.preset)
    if pr is None:
        return None
    for key in ("gain", "reverb", "polyphony"):
        v = getattr(pr, key)
        if v is not None and not _given(getattr(args, key, None)):
            setattr(args, key, v)
    if pr.timbre_cc is not None and getattr(args, "timbre_cc", None) is None:
        args.timbre_cc = pr.timbre_cc
    if pr.controllers:
        # the preset's controller map first, --map items after it (the later wins)
        try:
            from ..engine.expression import control_map
            control_map({str(k): str(v) for k, v in pr.controllers.items()})
        except ImportError:
            pass
        except ValueError as e:
            raise PresetError(f"preset {pr.path}: [controllers]: "
                              f"{str(e).removeprefix('--map ').removeprefix('--map: ')}") from None
        args.map = [f"{k}={v}" for k, v in pr.controllers.items()] + list(
            getattr(args, "map", None) or [])
    if pr.instrument is not None and getattr(args, "instrument", None) is None \
            and not getattr(args, "channel", None):
        args.instrument = pr.instrument
        args._preset_instrument = True
    return pr


def _host_engine(args, block, device_rate, offline, plain):
    pr = _apply_preset(args)
    specs = dict(pr.channels) if pr else {}
    specs.update(parse_channel_specs(getattr(args, "channel", None)))
    if getattr(args, "_preset_instrument", False) and getattr(args, "channel", None) is None:
        pass
    fx_specs = []
    if getattr(args, "fx", None):
        from ..dsp.effects import parse_fx
        fx_specs = [parse_fx(t) for t in args.fx]
    elif pr is not None:
        fx_specs = list(pr.fx)
    stems = getattr(args, "stems", None)
    multi = getattr(args, "multi_out", False)
    if stems or multi:
        from .preset import PresetError
    if stems and not offline:
        raise PresetError("--stems is for render (play: --multi-out)")
    if multi and offline:
        raise PresetError("--multi-out is for play through JACK (render: --stems DIR)")
    use_rack = bool(specs) or bool(stems) or bool(multi) or bool(getattr(args, "gm", False))
    if offline and not use_rack and getattr(args, "instrument", None) is None:
        use_rack = _needs_rack(_file_messages(args))
    if not use_rack:
        _check_fx(fx_specs)
        engine = plain(args, block, device_rate, offline)
        if fx_specs:
            from ..dsp.effects import FxChain
            engine.master.fx = FxChain(fx_specs, engine.sr, engine.block)
            _say_fx(engine.master.fx, engine.sr)
        return engine
    _check_fx(fx_specs)
    rack = build_rack(args, block, device_rate, offline, specs, fx_specs,
                      per_channel=bool(stems) or bool(multi))
    if rack.master.fx is not None:
        _say_fx(rack.master.fx, rack.sr)
    if multi:
        if getattr(args, "driver", "auto") == "portaudio":
            raise PresetError("--multi-out needs the JACK driver")
        if device_rate and device_rate != rack.sr:
            raise PresetError(f"--multi-out needs the JACK server at the instruments' rate "
                              f"({rack.sr} Hz), not {device_rate} Hz (jackd -r {rack.sr})")
        rack.open_multi_out()
    if stems:
        from .stems import Stems
        try:
            rack.stems = Stems(stems, rack, getattr(args, "output", None))
        except OSError as e:
            raise PresetError(f"--stems {stems!r}: cannot make that folder ({e.strerror})")
    return rack


def _say_fx(chain, sr: int) -> None:
    """The master effects on stderr, with the latency they report (a plugin's own delay:
    x42 dpl's look-ahead, a convolver's partition)."""
    lat = chain.latency
    print(f"rtsynth: effects: {chain.describe()}"
          + (f"; they delay the output by {lat} frames ({lat / sr * 1e3:.2f} ms)" if lat else ""),
          file=sys.stderr, flush=True)


def _check_fx(fx_specs) -> None:
    """Every ``--fx`` URI and symbol known, every value in range, before anything loads."""
    if not fx_specs:
        return
    from ..lv2.host import check_params
    from ..lv2.world import LV2Error, plugin_info
    for uri, params in fx_specs:
        info = plugin_info(uri)
        if info.instrument:
            raise LV2Error(f"{uri} is an instrument, not an effect: give it to a channel "
                           f"(--channel N=lv2:{uri})")
        check_params(info, params, 48000)


def _file_messages(args) -> list:
    """The MIDI messages of the file ``render`` was given (none for the demo, or a file that
    cannot be read: the render reports that itself)."""
    path = getattr(args, "midi", None)
    if getattr(args, "demo", False) or path is None:
        return []
    try:
        from ..render import read_midi_timed      # size-checked before it is read whole
        return [m for _, m in read_midi_timed(path)]
    except Exception:
        return []


def _needs_rack(messages) -> bool:
    """A file with GM program changes or percussion notes plays through the rack."""
    for m in messages:
        if not m:
            continue
        st = m[0]
        if st & 0xF0 == 0xC0:
            return True
        if st & 0xF0 == 0x90 and st & 0x0F == gm.PERCUSSION_CHANNEL and len(m) > 2 and m[2]:
            return True
    return False


def build_rack(args, block, device_rate, offline, specs, fx_specs, *, per_channel=False,
               master=True):
    from ..instruments import (BasicInstrument, InstrumentError, available_instruments,
                               default_instrument, load_instrument)
    from .rack import LV2_PREFIX, Rack

    # the shipped instruments' rate (a server at another rate gets the rack resampled by the
    # live session, as it does the plain engine)
    from .. import spec
    rate = args.sample_rate or spec.SAMPLE_RATE
    if offline:
        from ..render import OFFLINE_BLOCK
        block = block or OFFLINE_BLOCK
    block = block or 128
    available = available_instruments()
    gain = float(args.gain)

    def make_engine(name: str):
        inst = load_instrument(name)
        from ..nn.guard import report
        report(inst)                    # a faulty model: muted, one warning
        if isinstance(inst, BasicInstrument):
            inst = BasicInstrument(rate)
        if inst.sample_rate != rate:
            raise InstrumentError(f"instrument {inst.name!r} is trained at {inst.sample_rate} "
                                  f"Hz; the rack runs at {rate} Hz")
        kw = dict(sample_rate=rate, n_slots=int(args.polyphony), gain=gain, reverb=0.0,
                  timbre_cc=args.timbre_cc, master=False)
        try:
            from ..engine.expression import engine_options
            kw.update(engine_options(args))     # --mpe, --map (and a preset's controllers)
        except ImportError:
            pass
        if offline:
            from ..render import offline_engine
            e = offline_engine(inst, block=block, **kw)
        else:
            from ..engine import Engine
            e = Engine(inst, block=block, **kw)
        return e

    lv2_controls = {}
    for ch, s in list(specs.items()):
        if s.startswith(LV2_PREFIX):
            # 'lv2:URI symbol=value ...': the instrument's controls, checked now
            from ..dsp.effects import parse_fx
            from ..lv2.host import check_params
            from ..lv2.world import LV2Error, plugin_info
            uri, params = parse_fx(s[len(LV2_PREFIX):])
            info = plugin_info(uri)
            if not info.instrument:
                raise LV2Error(f"{uri} is an effect, not an instrument: put it on the master "
                               f"(--fx '{uri}')")
            lv2_controls[uri] = check_params(info, params, rate)
            specs[ch] = LV2_PREFIX + uri
        elif s != "basic":
            load_instrument(s)         # fails here, with its one line, before anything runs
    fx = None
    if fx_specs:
        from ..dsp.effects import FxChain
        fx = FxChain(fx_specs, rate, block)
    force = args.instrument
    default = default_instrument()
    preload = []
    if not offline:
        preload = [force or default]
        if getattr(args, "gm", False) and force is None:
            preload += [n for n in gm.table_models(available) if n not in preload]
    return Rack(make_engine, sample_rate=rate, block=block, gain=gain, reverb=args.reverb,
                default=default, channel_specs=specs, force=force, available=available,
                preload=preload, per_channel=per_channel, fx=fx, master=master,
                lazy=offline, lv2_controls=lv2_controls, budget=int(args.polyphony))


def finish(engine) -> None:
    """After a render: close what the rack wrote beside the master (stems)."""
    st = getattr(engine, "stems", None)
    if st is not None:
        st.close()
        print(f"rtsynth: wrote {len(st.files)} stems into {st.folder}", flush=True)
