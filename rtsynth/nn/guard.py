"""A neural instrument's output guard: a model whose controls are not finite, or absurd, is
muted (its voices silent) with one warning, instead of playing garbage or silence unexplained.

Two checks, both on the controls where they come out of the model (not on the engine's mix):

- :func:`probe`, at load: one voice through the first frames of a held note and of its release. A
  model whose controls are not finite (weights x1e30 overflow), or do not depend on its input
  at all (all-zero weights: the same loud tone for every note, held or released, -0.2 dBFS),
  is faulty. (A model that is merely untrained, or that rings on after a release, is not
  judged here: that is quality, not a fault.)
- :meth:`OutputGuard.check`, on every step: rows the real-time step found non-finite (it resets
  them) mute the instrument. This runs on the real-time path: it sets a flag and zeroes, prints
  nothing; :func:`report` prints the one warning from an ordinary thread.
"""

from __future__ import annotations

import sys

import numpy as np

from .. import spec

#: the least change of the controls over a note's life (held, attack, release) a model must show
SENSITIVITY_MIN = 1e-6


def probe_features(n_features: int, held: int = 100, after: int = 500) -> np.ndarray:
    """One voice, A4 at velocity 100: ``held`` frames down, then ``after`` frames released."""
    n = held + after
    f7 = spec.note_features(n, np.full(n, 69.0), 100.0, held * spec.HOP)
    f = np.zeros((n, n_features), np.float32)
    f[:, :f7.shape[1]] = f7[:, :n_features]
    if n_features > 7:
        f[:, 7] = 100 / 127                                    # dynamics: the velocity's
    if n_features > 8:
        f[:, 8] = getattr(spec, "DEFAULT_BRIGHTNESS", 64 / 127)
    return f


def probe(step, n_features: int, n_harmonics: int, n_noise: int,
          held: int = 8, after: int = 8) -> str | None:
    """Run ``step(features [1, F], out_harm [1, K], out_noise [1, B]) -> bad`` (a fresh voice)
    through :func:`probe_features`; returns why the model is faulty, or None."""
    f = probe_features(n_features, held, after)
    h = np.zeros((len(f), n_harmonics), np.float32)
    g = np.zeros((len(f), n_noise), np.float32)
    with np.errstate(all="ignore"):
        for t in range(len(f)):
            bad = step(f[t:t + 1], h[t:t + 1], g[t:t + 1])
            if (bad is not None and np.any(bad)) or not (np.isfinite(h[t]).all()
                                                         and np.isfinite(g[t]).all()):
                return f"its controls are not finite (frame {t} of a probe note)"
    level = h.sum(1) + g.sum(1)
    if float(np.max(np.abs(np.diff(np.concatenate([h, g], 1), axis=0)))) < SENSITIVITY_MIN:
        return (f"its controls do not depend on its input (the same {level[0]:.3g} for a "
                f"held and a released note)")
    return None


class OutputGuard:
    """The mute state of one instrument. ``fault``: why it is muted (None: it plays)."""

    def __init__(self, name: str):
        self.name = name
        self.fault: str | None = None
        self.reported = False
        self.bad_rows = 0
        #: steps that held a note or bend beyond the model's trained pitch range (tapered,
        #: rtsynth.nn.neural); reported once by :func:`report`
        self.out_of_range = 0
        self.range_reported = False
        self.range_text = ""

    def mute(self, why: str) -> None:
        if self.fault is None:
            self.fault = why

    def check(self, bad: np.ndarray, n: int, out_harm: np.ndarray,
              out_noise: np.ndarray) -> None:
        """After a step of ``n`` rows (real-time path: no I/O, no allocation)."""
        if bad.any():
            self.bad_rows += 1
            self.mute("its controls became non-finite while playing")
        if self.fault is not None:
            out_harm[:n] = 0.0
            out_noise[:n] = 0.0


def report(inst, file=None) -> bool:
    """Print the one warning for a muted instrument (once); True when it is muted."""
    g = getattr(inst, "guard", None)
    if g is not None and g.out_of_range and not g.range_reported:
        g.range_reported = True
        print(f"rtsynth: note: instrument {g.name!r}: notes or bends beyond its trained range "
              f"({g.range_text or 'see its model card'}) play at the edge's timbre, faded "
              f"12 dB per octave beyond it", file=file or sys.stderr, flush=True)
    if g is None or g.fault is None:
        return False
    if not g.reported:
        g.reported = True
        print(f"rtsynth: warning: instrument {g.name!r} is muted: {g.fault}",
              file=file or sys.stderr, flush=True)
    return True
