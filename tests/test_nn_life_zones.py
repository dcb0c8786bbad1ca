"""The source's sample zones in a life table (``zone``: :func:`rtsynth.dataset.life.sf2_zones`)
and the kernel's HOLD-step recurrence (:func:`rtsynth.nn.life._hold_step`).

A note between two rows of one zone takes their interpolation; between two zones, its own zone's
row (the real FluidR3 file's flute zones; a table without the column keeps the old rule). The
kernel's recurrence (sin/cos by rotation, exp terms by decay, step to step) gives a long held
note's pitch and level as the direct formula does (Python reference, ``Life.curve``), the same
at 64- and 128-frame blocks, and after a voice's clock restarts (a new note)."""

import json
from pathlib import Path

import numpy as np
import pytest

from rtsynth import spec
from rtsynth.dataset import life as dl
from rtsynth.engine import Engine
from rtsynth.nn import life as nl
from rtsynth.nn.io import load_weights
from rtsynth.nn.neural import NeuralInstrument

ROOT = Path(__file__).resolve().parents[1]
SF2 = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
SR = spec.SAMPLE_RATE


def _table(zone=None):
    """Three rows: 64 and 65 one sample, 67 another (phases far apart, the old rule's 'not the
    same sample' too)."""
    life = {"pitch": [64.0, 65.0, 67.0], "offset": [1.0, 3.0, 20.0], "settle": [0.0] * 3,
            "settle_tau": [0.05] * 3, "delay": [0.1] * 3, "ramp": [0.1] * 3,
            "rate": [5.0, 5.3, 5.0], "depth": [10.0, 12.0, 30.0], "phase": [0.0, 0.1, 2.5]}
    if zone is not None:
        life["zone"] = zone
    return nl.table_from_config(life)


def test_a_note_between_two_zones_takes_its_own_zones_row():
    p, t = _table(zone=[63.0, 63.0, 66.0])
    at = lambda n: dict(zip(nl.COLS, nl.note_params(p, t, n)))
    # 66: the zone of 66-68 (row 67), though 65 is as near: its offset, depth, phase
    assert at(66.0)["offset"] == 20.0 and at(66.0)["phase"] == 2.5
    assert abs(at(66.0)["rate"] - 5.0 * 2 ** (-1 / 12)) < 1e-12
    # 65.5 is in 63-65's zone... of a key below 66: the lower row
    assert at(65.5)["offset"] == 3.0
    # within one zone: interpolated
    assert abs(at(64.5)["offset"] - 2.0) < 1e-12
    # without zones: the old rule (the nearer one, the lower on a tie): 66 takes 65's
    p0, t0 = _table()
    assert dict(zip(nl.COLS, nl.note_params(p0, t0, 66.0)))["offset"] == 3.0
    # a zone column out of range is refused
    with pytest.raises(ValueError, match="zone"):
        _table(zone=[63.0, 63.0, 200.0])


@pytest.mark.skipif(not SF2.exists(), reason="FluidR3_GM.sf2 not installed")
def test_sf2_zones_of_the_real_soundfont():
    zones = dl.sf2_zones(SF2, 73)
    los = [z[0] for z in zones]
    # sorted, disjoint, every key 0..127 in exactly one
    assert los == sorted(los) and zones[0][0] == 0 and zones[-1][1] == 127
    assert all(a[1] + 1 == b[0] for a, b in zip(zones, zones[1:])), zones
    # the keys the flute's held-out 66 is about: 63-65 one sample, 66 another
    z = {k: next(i for i, (lo, hi, _) in enumerate(zones) if lo <= k <= hi) for k in (63, 65, 66)}
    assert z[63] == z[65] != z[66]
    assert dl.sf2_zones(SF2, 40) != zones


@pytest.mark.skipif(not SF2.exists(), reason="FluidR3_GM.sf2 not installed")
@pytest.mark.parametrize("name,program", [("flute-life", 73), ("violin", 40),
                                          ("violin-life", 40), ("cello-life", 42),
                                          ("trumpet-life", 56)])
def test_the_shipped_tables_zones_are_their_sources(name, program):
    """Each shipped life table's ``zone`` column is its source's (the SoundFont's own zones of
    the program its dataset rendered), and a held-out key between two zones plays its own."""
    cfg = json.loads((ROOT / "models" / name / "config.json").read_text())
    zones = dl.sf2_zones(SF2, program)
    assert dl.with_zones(cfg["life"], zones)["zone"] == cfg["life"]["zone"]
    p, t = nl.table_from_config(cfg["life"])
    for lo, hi, _ in zones[1:]:
        if p[0] < lo <= p[-1] and lo not in p and (lo - 1) in p:
            # a key at a zone's bottom whose lower neighbour is of another zone: never its row
            got = nl.note_params(p, t, float(lo))
            low = t[list(p).index(lo - 1)]
            assert got[0] != low[0] or got[7] != low[7], (name, lo)


def test_sf2_zones_refuses_another_file(tmp_path):
    f = tmp_path / "x.sf2"
    f.write_bytes(b"RIFF\x04\x00\x00\x00WAVE")
    with pytest.raises(ValueError, match="SoundFont"):
        dl.sf2_zones(f, 73)


def _rows(inst, note, blocks, block, restart_at=None):
    """The voice's bend row less its bend, and its dynamics row, per block of a held note."""
    eng = Engine(inst, block=block, n_slots=1, reverb=0.0, master=False)
    vs = eng.voices
    got = []
    orig = eng._synthesize

    def synth(n, out):
        if vs.active[0]:
            got.append((int(vs.vpos[0]), vs.bend_row[0, :n] - vs.bend[0],
                        vs.dyn_row[0, :n].astype(np.float64)))
        return orig(n, out)
    eng._synthesize = synth
    eng.push(0, (0x90, note, 100))
    for b in range(blocks):
        if restart_at is not None and b == restart_at:
            eng.push(0, (0x80, note, 0))
            for _ in range(200):
                eng.render()
            got.clear()
            eng.push(0, (0x90, note, 100))
        eng.render()
    return eng, got


def _curve_and_level(life, note, n):
    """The direct formula per voice sample: cents (``Life.curve``) and the tremolo's dB."""
    prm = nl.note_params(life.pitches, life.table, note)
    k = np.arange(n)
    step = np.where(k < int(nl.FINE_S * SR), nl.SUB, nl.HOLD)
    kk = (k - k % step) / SR
    m = np.array([nl._python(nl._tremolo_shape)(prm, x) for x in kk])
    return life.curve(note, n) / 100.0, prm[12] * m


def test_the_recurrence_plays_the_direct_formula_over_a_long_note():
    """Violin (its dB tremolo), 40 s held: the bend row is the direct formula's to 1e-9
    semitones and the level's factor to 1e-6 dB, every block; 64-frame blocks give the 128's
    rows bit for bit; a voice's clock restarting (a new note-on) starts the recurrence anew."""
    w, cfg = load_weights(ROOT / "models" / "violin")
    inst = NeuralInstrument(w, cfg, name="violin")
    note = int(cfg["life"]["pitch"][int(np.argmax(cfg["life"]["trem_db"]))])
    blocks = int(40 * SR / 128)
    eng, got = _rows(inst, note, blocks, 128)
    want, db = _curve_and_level(eng.life, note, got[-1][0] + 128)
    assert np.abs(db).max() > 0.5       # the note breathes
    base = got[-1][2][0] / 10 ** (db[got[-1][0]] / nl.DB_PER_DECADE)
    for pos, bend, dyn in got[50::97] + got[-3:]:
        assert np.abs(bend - want[pos:pos + len(bend)]).max() < 1e-9, pos
        lvl = nl.DB_PER_DECADE * np.log10(dyn / base)
        assert np.abs(lvl - db[pos:pos + len(dyn)]).max() < 1e-3, pos   # (float32 row)
    _, got64 = _rows(inst, note, 2 * 4000, 64)
    a = np.concatenate([b for _, b, _ in got[:4000]])
    b = np.concatenate([b for _, b, _ in got64])[:len(a)]
    assert np.array_equal(a, b)
    _, again = _rows(inst, note, 400, 128, restart_at=100)
    for (p1, b1, d1), (p2, b2, d2) in zip(got[:250], again[:250]):
        assert p1 == p2 and np.array_equal(b1, b2) and np.array_equal(d1, d2)
