"""The engine's level guard (rtsynth.engine.frames.MAX_FRAME_LEVEL): a real instrument made
absurd but finite (a flute-lite subclass whose harmonic amplitudes are x1e4 for velocity-127
notes) through the real engine and master chain stays finite and within full scale, its frames
are scaled down and counted, the render's end warns once, and a normal voice beside it keeps
its level."""

from __future__ import annotations

import io

import numpy as np
import pytest

from rtsynth.engine import Engine
from rtsynth.engine.frames import MAX_FRAME_LEVEL
from rtsynth.instruments import load_instrument
from rtsynth.render import render_events, report_faults

SR = 48000
LOUD_VEL, NORMAL_VEL = 127, 100
NORMAL_KEY, LOUD_KEY = 60, 96          # the loud one's partials start far above 261.6 Hz
FACTOR = 1e4


def _absurd():
    """flute-lite (the real model and weights) as a subclass of its own class whose harmonic
    amplitudes are multiplied by ``FACTOR`` on the rows of velocity-127 notes."""
    inst = load_instrument("flute-lite")

    class Absurd(type(inst)):
        def step(self, features, slots, out_harm, out_noise):
            super().step(features, slots, out_harm, out_noise)
            for i in range(features.shape[0]):
                if features[i, 1] > 0.999:
                    out_harm[i] *= FACTOR

    inst.__class__ = Absurd
    return inst


@pytest.fixture(scope="module")
def flute():
    return load_instrument("flute-lite")


def _events(loud: bool, normal: bool):
    ev = []
    if normal:
        ev += [(0, bytes((0x90, NORMAL_KEY, NORMAL_VEL))), (SR, bytes((0x80, NORMAL_KEY, 0)))]
    if loud:
        ev += [(SR // 10, bytes((0x91, LOUD_KEY, LOUD_VEL))),
               (SR, bytes((0x81, LOUD_KEY, 0)))]
    return sorted(ev, key=lambda e: e[0])


def _render(inst, events, gain=0.5, guard=True):
    eng = Engine(inst, sample_rate=SR, block=256, n_slots=8, reverb=0.0, gain=gain)
    if not guard:
        eng.max_level = float("inf")
    eng.top_level = 0.0
    store = eng._store

    def filed(r, q):            # the largest level of a frame filed (the voices' own record)
        store(r, q)
        eng.top_level = max(eng.top_level, float(eng.voices.level.max()))

    eng._store = filed
    out = render_events(eng, events, tail=0.3)
    return eng, out


def _band_db(out, lo=200.0, hi=330.0):
    """Level (dB) of the normal voice's fundamental, 0.2..0.9 s: the loud one has nothing
    there (its lowest partial is ~2 kHz; its noise bands are the model's, not scaled)."""
    x = out[int(0.2 * SR):int(0.9 * SR), 0].astype(np.float64)
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    f = np.fft.rfftfreq(len(x), 1.0 / SR)
    return 10 * np.log10(np.sum(spec[(f >= lo) & (f <= hi)] ** 2) + 1e-30)


def test_absurd_voice_is_clamped_counted_and_output_bounded(flute):
    inst = _absurd()
    eng, out = _render(inst, _events(loud=True, normal=True))
    assert np.isfinite(out).all()
    assert np.abs(out).max() <= 1.0
    st = eng.stats
    assert st["clamped_frames"] > 0
    assert st["nan_voices"] == 0
    # the loud voice's filed level is at the limit, not 1e4 times the model's
    assert MAX_FRAME_LEVEL * 0.999 <= eng.top_level <= MAX_FRAME_LEVEL * 1.001
    err = io.StringIO()
    report_faults(eng, file=err)
    lines = [ln for ln in err.getvalue().splitlines() if "level limit" in ln]
    assert len(lines) == 1
    assert f"{st['clamped_frames']} control frame(s)" in lines[0] and inst.name in lines[0]


def test_shipped_model_is_not_clamped(flute):
    """The same phrase from the unmodified model: nothing counted, no warning."""
    eng, out = _render(flute, _events(loud=True, normal=True))
    assert eng.stats["clamped_frames"] == 0
    assert 0.0 < eng.top_level < MAX_FRAME_LEVEL / 3
    err = io.StringIO()
    report_faults(eng, file=err)
    assert "level limit" not in err.getvalue()


def test_normal_voice_keeps_its_level_beside_an_absurd_one(flute):
    """At a gain where a voice at the limit fits under the limiter's ceiling, the normal voice
    beside the absurd one stays within 1 dB of playing alone; without the guard the limiter
    pumps it down by tens of dB (so this test can fail)."""
    inst = _absurd()
    gain = 0.2
    _, alone = _render(inst, _events(loud=False, normal=True), gain=gain)
    _, mixed = _render(inst, _events(loud=True, normal=True), gain=gain)
    _, unguarded = _render(inst, _events(loud=True, normal=True), gain=gain, guard=False)
    ref = _band_db(alone)
    assert abs(_band_db(mixed) - ref) <= 1.0
    assert _band_db(unguarded) - ref < -20.0
    for o in (mixed, unguarded):
        assert np.isfinite(o).all() and np.abs(o).max() <= 1.0


def test_default_gain_bounds_the_pumping(flute):
    """At the default gain (0.5) a voice at the limit can exceed the limiter's ceiling, so the
    normal voice beside it is pumped down, but by at most what the limit allows
    (20 log10(MAX_FRAME_LEVEL * gain / 0.98) dB), against tens of dB without the guard."""
    inst = _absurd()
    _, alone = _render(inst, _events(loud=False, normal=True))
    _, mixed = _render(inst, _events(loud=True, normal=True))
    ref = _band_db(alone)
    bound = max(0.0, 20 * np.log10(MAX_FRAME_LEVEL * 0.5 / 0.98)) + 1.0
    assert _band_db(mixed) - ref >= -bound


def test_v1_square_law_swell_is_bounded():
    """A shipped v1 model, unmodified: a velocity-1 note swelled by full channel pressure gets
    at most (127/32)**2 of its velocity-1 controls (the dynamics level's floor), not 127**2:
    below the guard's limit even without the guard."""
    from rtsynth.engine.frames import DYNAMICS_LEVEL_FLOOR

    inst = load_instrument("clarinet-lite")
    assert inst.n_features < 9                      # a v1 model: the engine applies dynamics
    ev = [(0, bytes((0x90, 60, 1))), (SR // 20, bytes((0xD0, 127))),
          (SR // 2, bytes((0x80, 60, 0)))]
    free, out = _render(inst, ev, guard=False)
    assert free.stats["clamped_frames"] == 0
    assert np.isfinite(out).all() and np.abs(out).max() <= 1.0
    assert free.top_level < MAX_FRAME_LEVEL
    assert abs(DYNAMICS_LEVEL_FLOOR * 127 - 32) < 1e-9


def test_rack_warns_per_instrument():
    """A rack of two instruments (the real one on channel 1, the absurd one on channel 2): the
    end-of-render warning names the absurd instrument only, with its own count."""
    from rtsynth.host.rack import Rack

    made = {}

    def make_engine(name):
        inst = _absurd() if name == "loud" else load_instrument(name)
        inst.name = name
        made[name] = Engine(inst, sample_rate=SR, block=256, n_slots=8, reverb=0.0,
                            master=False)
        return made[name]

    rack = Rack(make_engine, sample_rate=SR, block=256, reverb=0.0,
                channel_specs={0: "flute-lite", 1: "loud"})
    try:
        out = render_events(rack, _events(loud=True, normal=True), tail=0.3)
    finally:
        rack.close()
    assert np.isfinite(out).all() and np.abs(out).max() <= 1.0
    n = made["loud"].stats["clamped_frames"]
    assert n > 0 and made["flute-lite"].stats["clamped_frames"] == 0
    assert rack.stats["clamped_frames"] == n
    err = io.StringIO()
    report_faults(rack, file=err)
    lines = [ln for ln in err.getvalue().splitlines() if "level limit" in ln]
    assert lines == [f"rtsynth: warning: loud: {n} control frame(s) above the level limit "
                     f"were scaled down"]
