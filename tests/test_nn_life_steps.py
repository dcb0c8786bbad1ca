"""The life's pitch movement reaches the oscillator at its hold steps only (rtsynth.nn.life):
the bend smoother smooths the note's target, not the movement, so a held note's pitch changes
once per ``HOLD`` samples (the oscillators' f0 is recomputed no more often: when the smoother
smoothed the movement too, its state never settled and the pitch moved every 16 samples, a
quarter of the engine block at 32 voices)."""

import numpy as np

from rtsynth.engine import Engine
from rtsynth.engine.bank import LIFE_HELD
from rtsynth.instruments import load_instrument
from rtsynth.nn import life as nl


def test_held_life_notes_move_at_the_hold_steps_only():
    eng = Engine(load_instrument("flute-life"), block=128, n_slots=4, reverb=0.0)
    for k, p in enumerate((60, 67, 72, 79)):
        eng.push(0, (0x90, p, 90))
    vs = eng.voices
    seen = {}
    orig = eng._synthesize

    def synth(n, out):      # the rows render_voices reads, per block
        for v in range(4):
            if vs.active[v]:
                seen.setdefault(v, []).append((int(vs.vpos[v]), vs.bend_row[v, :n].copy(),
                                               int(vs.bend_settled[v])))
        return orig(n, out)

    eng._synthesize = synth
    for _ in range(80):     # 0.21 s: past the settling's 16-sample steps
        eng.render()
    assert len(seen) == 4
    fine = int(nl.FINE_S * eng.sr)
    for v, blocks in seen.items():
        moving = 0
        for pos, row, settled in blocks[1:]:
            assert settled == LIFE_HELD            # the smoother skipped it
            k = pos + np.arange(len(row))
            change = np.flatnonzero(row[1:] != row[:-1]) + 1
            # every change of the pitch is at a step of the movement
            step = np.where(k[change] < fine, nl.SUB, nl.HOLD)
            assert np.all(k[change] % step == 0), (v, pos, k[change])
            moving += len(change)
        assert moving > 20                          # the vibrato is there: it moves
