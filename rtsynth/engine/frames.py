"""Frame planning: which control frames start in a block, their features, and the filing of the
instrument's controls per voice.

A block's frames come in rounds: round ``r`` holds, for every voice, its ``r``-th frame that
starts in this block; one ``instrument.step`` call runs a round (or several, for a multi-frame
instrument). Features follow :mod:`rtsynth.spec`, from the voice's state at the frame's first
sample; dynamics and brightness (contract v2) go to a model that takes them, and onto the
controls of one that does not (see :mod:`rtsynth.engine.expression`).
"""

from __future__ import annotations

import math
from collections import namedtuple

import numpy as np

from ..jit import kernel, subkernel
from ..spec import frame_features
from .bank import smooth_bends

#: the level guard: the most a control frame's level (sum of its harmonic amplitudes and noise
#: gains, after dynamics and tilt) may be before :func:`store_rounds` scales it down. Measured
#: over every shipped model (the largest per-frame level in the demo, the bench's bwv66_6.mid,
#: and notes 36..96 at velocity 127 with full pressure and CC74 plus an 8-note chord): 1.08
#: (clarinet-lite, velocity 127; 0.43 in the demo, 0.77 in bwv66_6; basic: 0.34); the limit is
#: about 4x that. A v1 model's square-law dynamics can exceed it (a velocity-1 note swelled to
#: full by pressure asks for 127**2 times its controls): held here too.
MAX_FRAME_LEVEL = 4.5

#: the frames of one block, per round ``r`` and row ``m < count[r]``: the voice slot, the
#: features, the voice-clock sample where it starts, its block offset, the voice's release
#: sample, and for a version-1 model the level and tilt slope of its dynamics and brightness
FramePlan = namedtuple("FramePlan", "slot features start offset release count level tilt")


def make_plan(rounds: int, n_slots: int, n_features: int) -> FramePlan:
    R, S = rounds, n_slots
    return FramePlan(np.zeros((R, S), np.int64), np.zeros((R, S, n_features), np.float32),
                     np.zeros((R, S), np.int64), np.zeros((R, S), np.int64),
                     np.zeros((R, S), np.int64), np.zeros(R, np.int64),
                     np.ones((R, S), np.float32), np.zeros((R, S), np.float32))


@kernel
def plan_frames(n, hop, sr, n_slots, vs, rows, lfo_w, plan, v2,
                default_bright, bend_coef):
    """Smooth the notes' bend rows of this block (:func:`rtsynth.engine.bank.smooth_bends`,
    here: one call), then list the control frames that start in it, per round; returns the
    round count.

    Features per :mod:`rtsynth.spec`, from the voice's state at the frame's first sample (pitch
    as the oscillator computes it there: note + channel and note bend + key-synced vibrato). A
    voice being killed gets the frames that start before its kill sample (none once its fade
    has begun), whatever the block size.
    """
    smooth_bends(vs, n, bend_coef)
    for r in range(plan.count.shape[0]):
        plan.count[r] = 0
    for v in range(vs.n_new.shape[0]):
        vs.n_new[v] = 0
    rounds = 0
    for v in range(n_slots):
        if vs.active[v] == 0:
            continue
        n0 = vs.vpos[v]
        so = vs.start_off[v]
        end = n0 + n - so
        if vs.kill_start[v] >= 0:
            end = min(end, n0 + vs.kill_start[v] - so)
        nf = ((n0 + hop - 1) // hop) * hop
        ch = vs.chan[v]
        r = 0
        while nf < end:
            m = plan.count[r]
            toff = so + nf - n0
            vib = rows.vib[ch, toff] + vs.vib_row[v, toff]
            pitch = (vs.note[v] + rows.bend[ch, toff] + vs.bend_row[v, toff]
                     + vib * math.sin(lfo_w * nf))
            f = plan.features[r, m]
            rel = vs.released_at[v]
            frame_features(f, pitch, vs.velocity[v], nf, rel, sr, vs.release_speed[v])
            dyn = vs.dyn_row[v, toff]
            bright = vs.bright_row[v, toff]
            if v2:
                f[7] = dyn
                f[8] = bright
                plan.level[r, m] = 1.0
                plan.tilt[r, m] = 0.0
            else:
                plan.level[r, m] = dynamics_level(dyn, vs.velocity[v])
                plan.tilt[r, m] = tilt_slope(bright, default_bright)
            plan.slot[r, m] = v
            plan.start[r, m] = nf
            plan.offset[r, m] = toff
            plan.release[r, m] = rel
            plan.count[r] = m + 1
            r += 1
            nf += hop
        if r > rounds:
            rounds = r
    return rounds


#: dynamics below this (velocity 32) count as this in a v1 model's level: a soft note swelled
#: to full gets at most (127/32)**2 = +24 dB, not 127**2 (+84 dB) of its velocity-1 controls,
#: far above anything the model plays at velocity 127
DYNAMICS_LEVEL_FLOOR = 32.0 / 127.0


@subkernel
def dynamics_level(dyn, velocity):
    """A v1 model's level for dynamics ``dyn`` against the velocity it plays: the square law
    of CC7/CC11 between the two, each at least :data:`DYNAMICS_LEVEL_FLOOR`; 1 where they
    agree."""
    d0 = np.float32(velocity / 127.0)
    if dyn == d0 or d0 <= 0.0:
        return 1.0
    x = max(dyn, DYNAMICS_LEVEL_FLOOR) / max(d0, DYNAMICS_LEVEL_FLOOR)
    return x * x


@subkernel
def tilt_slope(bright, default_bright):
    """Spectral tilt exponent for brightness: -1 at 0, 0 at the default, +1 at 1."""
    b0 = np.float32(default_bright)
    if bright == b0:
        return 0.0
    if bright > b0:
        return (bright - b0) / (1.0 - b0)
    return (bright - b0) / b0


@kernel
def store_rounds(r0, r1, plan, harm, noise, vs, hop, max_release, silent, len_silent,
                 len_long, max_level):
    """File the controls of rounds ``r0 .. r1-1`` (rows of ``harm/noise`` in round order) per
    voice, with a v1 model's dynamics level and brightness tilt applied (harmonics ``h**s``
    at the same RMS). A released voice ends at its first silent frame after the release (a
    ``len_silent`` fade) or ``max_release`` after it (``len_long``): decided on the voice's own
    frame grid, so it does not depend on the block size. A frame that starts at or after its
    voice's kill (decided in an earlier round of this block) is dropped, as a smaller block
    would not have computed it.

    Level guard: a frame whose level (the sum of its harmonic amplitudes and noise gains, in
    magnitude, after dynamics and tilt) exceeds ``max_level`` is scaled down to it (a model
    gone absurd but finite stays one loud voice, and does not pump everything else down
    through the limiter). Returns the number of frames scaled; a frame at or below the limit
    is filed unchanged, bit for bit.
    """
    clamped = 0
    o = 0
    K = harm.shape[1]
    B = noise.shape[1]
    for r in range(r0, r1):
        m = plan.count[r]
        for i in range(m):
            v = plan.slot[r, i]
            row = o + i
            toff = plan.offset[r, i]
            if vs.kill_start[v] >= 0 and toff >= vs.kill_start[v]:
                continue
            g = plan.level[r, i]
            s = plan.tilt[r, i]
            if s != 0.0:
                e0 = 0.0
                e1 = 0.0
                for k in range(K):
                    a = harm[row, k]
                    b = a * math.exp(s * math.log(k + 1.0))
                    e0 += a * a
                    e1 += b * b
                    harm[row, k] = b
                if e1 > 0.0:
                    g = g * math.sqrt(e0 / e1)
            if g != 1.0:
                for k in range(K):
                    harm[row, k] = harm[row, k] * g
                for b in range(B):
                    noise[row, b] = noise[row, b] * g
            mag = 0.0
            for k in range(K):
                mag += abs(harm[row, k])
            for b in range(B):
                mag += abs(noise[row, b])
            if mag > max_level and mag < np.inf:
                c = np.float32(max_level / mag)
                for k in range(K):
                    harm[row, k] = harm[row, k] * c
                for b in range(B):
                    noise[row, b] = noise[row, b] * c
                clamped += 1
            lvl = 0.0
            for k in range(K):
                vs.new_harm[v, r, k] = harm[row, k]
                lvl += harm[row, k]
            for b in range(B):
                vs.new_noise[v, r, b] = noise[row, b]
                lvl += noise[row, b]
            vs.n_new[v] = r + 1
            vs.level[v] = lvl
            rel = plan.release[r, i]
            nf = plan.start[r, i]
            if rel <= nf:
                since = nf - rel
                fade = 0
                if since > hop and lvl < silent:
                    fade = len_silent
                elif since > max_release:
                    fade = len_long
                if fade and vs.kill_start[v] < 0:
                    vs.kill_start[v] = toff
                    vs.kill_pos[v] = 0
                    vs.kill_len[v] = fade
                    vs.key_down[v] = False
                    vs.sustained[v] = False
        o += m
    return clamped
