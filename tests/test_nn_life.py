"""The life of the source (issue 12.4): the f0 tracker and fit recover a known vibrato; a
shipped life model's held note has the vibrato of its table (rate, depth) in the engine's audio;
the mod wheel deepens it as documented, ``life=0`` removes it; offline == live."""

import json
from pathlib import Path

import numpy as np
import pytest

from rtsynth import spec
from rtsynth.dataset import life as dl
from rtsynth.engine import Engine
from rtsynth.instruments import load_instrument
from rtsynth.nn import life as nl

ROOT = Path(__file__).resolve().parents[1]
SR = spec.SAMPLE_RATE
NOTE = 76          # a training pitch of violin-life's table


def _held(inst, note=NOTE, seconds=1.6, cc1=None, life=1.0, block=128, offline=False):
    from rtsynth.render import offline_engine, render_events
    kw = dict(n_slots=4, gain=1.0, reverb=0.0, master=False, life=life)
    eng = offline_engine(inst, **kw) if offline else Engine(inst, block=block, **kw)
    ev = []
    if cc1 is not None:
        for when, val in cc1:
            ev.append((when, bytes((0xB0, 1, val))))
    ev.append((0, bytes((0x90, note, 100))))
    ev.append((int(seconds * SR), bytes((0x80, note, 0))))
    ev.sort(key=lambda e: e[0])
    return render_events(eng, ev, tail=0.05)[:, 0].astype(np.float64)


def _fit(y, note=NOTE, seconds=1.6):
    T = int(seconds * SR) // spec.HOP
    c, p = dl.track_f0(y[: T * spec.HOP], np.full(T, float(note)))
    return dl.fit_note(c, dl.trusted(p))


@pytest.fixture(scope="module")
def violin():
    inst = load_instrument("violin-life")
    params = nl.note_params(*nl.table_from_config(inst.config["life"]), NOTE)
    return inst, dict(zip(nl.COLS, params))


def test_tracker_recovers_a_known_vibrato():
    """A harmonic tone at 440 Hz with 6 Hz, 20 cent vibrato from 0.2 s: rate within 0.05 Hz,
    depth within 10 %."""
    t = np.arange(int(1.5 * SR)) / SR
    cents = 20.0 * np.clip((t - 0.2) / 0.1, 0, 1) * np.sin(2 * np.pi * 6.0 * t + 0.5)
    f = 440.0 * 2 ** (cents / 1200)
    th = 2 * np.pi * np.cumsum(f) / SR
    y = sum(0.5 / h * np.sin(h * th) for h in range(1, 6))
    T = len(y) // spec.HOP
    c, p = dl.track_f0(y[: T * spec.HOP], np.full(T, 69.0))
    fit = dl.fit_note(c, dl.trusted(p))
    assert abs(fit["rate"] - 6.0) < 0.05
    assert abs(fit["depth"] - 20.0) < 2.0


def test_held_note_has_the_tables_vibrato(violin):
    """The engine's audio of a held violin-life note: vibrato rate within 0.15 Hz and depth
    within 15 % of the learned values (the card's tolerance)."""
    inst, prm = violin
    fit = _fit(_held(inst))
    assert prm["depth"] > 10.0            # the source's vibrato is there to learn: ~15 cents
    assert abs(fit["rate"] - prm["rate"]) < 0.15, (fit, prm)
    assert abs(fit["depth"] / prm["depth"] - 1.0) < 0.15, (fit, prm)


def test_mod_wheel_deepens_life_zero_removes(violin):
    """CC1 127 gives 1 + WHEEL_GAIN (3x) the natural depth (within 15 %); life=0 draws the
    static line of a model without it (under 1.5 cents)."""
    inst, prm = violin
    deep = _fit(_held(inst, cc1=[(0, 127)]))
    assert abs(deep["depth"] / prm["depth"] - (1 + nl.WHEEL_GAIN)) < 0.15 * (1 + nl.WHEEL_GAIN)
    assert abs(deep["rate"] - prm["rate"]) < 0.15
    flat = _fit(_held(inst, life=0.0))
    assert flat["depth"] < 1.5


def test_offline_equals_live(violin):
    """The same MIDI (a wheel move mid-note included) at 128-frame live blocks and through the
    offline engine: the same samples (float32 rounding)."""
    inst, _ = violin
    cc1 = [(0, 0), (int(0.61 * SR) + 37, 90), (int(1.1 * SR) + 5, 20)]
    live = _held(inst, cc1=cc1, block=128)
    off = _held(inst, cc1=cc1, offline=True)
    n = min(len(live), len(off))
    assert np.max(np.abs(live[:n] - off[:n])) < 1e-5
    odd = _held(inst, cc1=cc1, block=96)
    assert np.max(np.abs(live[:n] - odd[:n])) < 1e-5


def test_card_numbers():
    """The shipped life models' configs carry their tables and the cards' vibrato numbers."""
    for name in ("violin-life", "flute-life", "cello-life", "trumpet-life"):
        cfg = json.loads((ROOT / "models" / name / "config.json").read_text())
        p, t = nl.table_from_config(cfg["life"])
        assert len(p) >= 10 and np.all(t[:, 5] > 2.5) and np.all(t[:, 5] < 9.0)


def test_level_breathing_measures_a_known_tremolo():
    """eval.life.level_breathing: a tone whose level moves 1.5 dB at 5.5 Hz over a slow swell
    reads 1.5 dB at that rate (the swell is the envelope, left out); a steady tone reads ~0."""
    import numpy as np
    from rtsynth import spec
    from rtsynth.eval.life import level_breathing
    sr = spec.SAMPLE_RATE
    t = np.arange(int(2.0 * sr)) / sr
    db = 1.5 * np.sin(2 * np.pi * 5.5 * t + 0.7) + 6.0 * t          # tremolo + a 6 dB/s swell
    x = 0.1 * 10 ** (db / 20) * np.sin(2 * np.pi * 440.0 * t)
    rel = len(t) // spec.HOP
    rms, trem = level_breathing(x, rel, 5.5)
    assert abs(trem - 1.5) < 0.15 and 0.9 < rms < 1.3
    rms0, trem0 = level_breathing(0.1 * np.sin(2 * np.pi * 440.0 * t), rel, 5.5)
    assert rms0 < 0.05 and trem0 < 0.05


@pytest.fixture(scope="module")
def violin_trem():
    """models/violin: its table carries the level's tremolo (trem_db since session 9, before
    trem; and trem_phase)."""
    inst = load_instrument("violin")
    p, t = nl.table_from_config(inst.config["life"])
    assert (t[:, 8] + t[:, 12] > 0).sum() >= 10
    return inst


def test_tremolo_breathes_the_level_with_the_vibrato(violin_trem):
    """A held models/violin note breathes at its vibrato's rate (level_breathing's tremolo)
    more than with the level's movement off (the same table with trem 0), and life=0 (and so
    no pitch movement either) breathes least; the pitch movement is the same either way."""
    from rtsynth.eval.life import level_breathing
    from rtsynth.nn.io import load_weights
    from rtsynth.nn.neural import NeuralInstrument
    w, cfg = load_weights(ROOT / "models" / "violin")
    off = dict(cfg, life=dict(cfg["life"], trem=[0.0] * len(cfg["life"]["pitch"]),
                              trem_db=[0.0] * len(cfg["life"]["pitch"])))
    still = NeuralInstrument(w, off, name="violin")
    note = 67                                     # a training pitch with a fitted tremolo
    prm = nl.note_params(*nl.table_from_config(cfg["life"]), note)
    assert prm[8] > 0.02 or prm[12] > 0.3
    rel = int(1.6 * SR) // spec.HOP
    got = {k: level_breathing(_held(i, note=note, life=lf), rel, prm[5])[1]
           for k, i, lf in (("trem", violin_trem, 1.0), ("still", still, 1.0),
                            ("none", violin_trem, 0.0))}
    assert got["trem"] > got["still"] + 0.2 and got["none"] < got["trem"] - 0.2, got
    a = _fit(_held(violin_trem, note=note))
    b = _fit(_held(still, note=note))
    assert abs(a["depth"] - b["depth"]) < 1.0 and abs(a["rate"] - b["rate"]) < 0.05


def test_tremolo_offline_equals_live(violin_trem):
    """The level's movement is a function of the voice clock: 128- and 96-frame live blocks
    and the offline engine give the same samples (a wheel move mid-note included)."""
    cc1 = [(0, 0), (int(0.61 * SR) + 37, 90), (int(1.1 * SR) + 5, 20)]
    live = _held(violin_trem, note=67, cc1=cc1, block=128)
    off = _held(violin_trem, note=67, cc1=cc1, offline=True)
    odd = _held(violin_trem, note=67, cc1=cc1, block=96)
    n = min(len(live), len(off), len(odd))
    assert np.max(np.abs(live[:n] - off[:n])) < 1e-5
    assert np.max(np.abs(live[:n] - odd[:n])) < 1e-5
