"""A neural instrument beyond its trained pitch range: clamped and tapered, never louder than
inside it, said once on stderr; the source's bandwidth on its controls."""

from pathlib import Path

import numpy as np
import pytest

from rtsynth import spec
from rtsynth.nn import guard
from rtsynth.nn.io import load_neural_instrument

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def flute():
    return load_neural_instrument(ROOT / "models" / "flute-lite")


def _note(inst, pitch_curve, seconds=0.6):
    T = int(seconds * spec.SAMPLE_RATE / spec.HOP)
    pc = np.broadcast_to(np.asarray(pitch_curve, dtype=np.float64), (T,))
    f = spec.note_features(T, pc, 127.0, None)
    if inst.n_features > spec.N_FEATURES:
        f = np.concatenate([f, np.full((T, 1), 1.0, np.float32),
                            np.full((T, 1), spec.DEFAULT_BRIGHTNESS, np.float32)], 1)
    h, g = inst.render_note(f)
    f0 = np.repeat(spec.midi_to_hz(pc), spec.HOP)
    return spec.synthesize_reference(h, g, f0), h, g


def test_out_of_range_notes_never_louder_than_inside(flute):
    lo, hi = flute.pitch_range
    inside = [_note(flute, p)[0] for p in np.linspace(lo + 1, hi - 1, 5)]
    top_rms = max(np.sqrt(np.mean(y ** 2)) for y in inside)
    top_peak = max(np.abs(y).max() for y in inside)
    for p in (0, 12, 24, 127):
        y = _note(flute, p)[0]
        assert np.isfinite(y).all()
        assert np.sqrt(np.mean(y ** 2)) <= top_rms and np.abs(y).max() <= top_peak, p
    # five octaves below the range: faded by 60 dB (12 dB per octave)
    far = _note(flute, 0)[0]
    assert np.sqrt(np.mean(far ** 2)) < 1e-2 * top_rms


def test_bend_beyond_range_is_bounded(flute):
    lo, hi = flute.pitch_range
    T = int(0.8 * spec.SAMPLE_RATE / spec.HOP)
    ramp = 72.0 + np.linspace(0.0, 127.0, T)          # bend range 127 semitones, full up
    y, h, g = _note(flute, ramp, 0.8)
    ref = _note(flute, 72.0, 0.8)[0]
    assert np.isfinite(y).all()
    assert np.sqrt(np.mean(y ** 2)) <= np.sqrt(np.mean(ref ** 2))
    assert np.abs(y).max() < 0.5


def test_out_of_range_said_once(flute, capsys):
    g = flute.guard
    g.out_of_range, g.range_reported = 0, False
    _note(flute, 12)
    assert g.out_of_range > 0
    guard.report(flute)
    guard.report(flute)
    err = capsys.readouterr().err
    assert err.count("beyond its trained range") == 1


def test_in_range_untouched_by_the_taper(flute):
    y1, h1, _ = _note(flute, 72.0)
    flute.guard.out_of_range = 0
    _note(flute, 80.0)
    assert flute.guard.out_of_range == 0


def test_bandwidth_silences_controls_above_it(flute):
    bw = flute.bandwidth_hz
    assert bw is not None and bw < spec.SAMPLE_RATE / 2
    _, h, g = _note(flute, 84.0)
    f0 = spec.midi_to_hz(84.0)
    k = np.arange(1, spec.N_HARMONICS + 1) * f0
    assert np.all(h[:, k >= bw] == 0.0)
    edges = spec.band_edges()
    assert np.all(g[:, edges[:-1] >= bw] <= 2e-7)        # held at the gains' floor
