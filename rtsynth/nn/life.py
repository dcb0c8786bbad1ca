"""The life of the source at play time: each note's own pitch movement (issue 12.4).

A model trained with the source's tracked pitch as its pitch input (``rtsynth train
--source-f0``) carries in its ``config.json`` a ``life`` table, fitted from the training notes
by :func:`rtsynth.dataset.life.fit_life`: per training pitch, the source's pitch curve as

    cents(t) = offset + settle * exp(-t / settle_tau)
               + scale * depth * env(t) * sin(2 pi rate t + phase)
               + scale * drift * exp(-t / drift_tau)

``t`` seconds of the voice's own clock since its note-on, ``env`` a smoothstep from 0 at
``delay`` to 1 at ``delay + ramp``: the attack's pitch settling, the tuning of the source's
sample, the vibrato's onset, rate, depth and phase (FluidR3 replays each sample from its start
at every note-on, so the phase of its vibrato is the same at every note of that sample), and
the drift: the sample's slow wander over its first second (:func:`rtsynth.dataset.life.fit_drift`;
after it FluidR3's samples loop and their pitch curve repeats exactly). Optional columns (a
table without them plays none): ``drift``, ``drift_tau``, and the level's tremolo ``trem``,
``trem_phase`` (the dynamics row, :func:`_rows`).

A note between two training pitches takes the parameters of its neighbours: linearly
interpolated where the two look like one sample (their phases within 0.6 rad and their rates in
the ratio of their pitches within 4 %: a sample played higher runs its vibrato faster), else the
nearer one's (the lower one on a tie) with its rate scaled by the pitch ratio. Outside the table
the end's parameters, the rate scaled likewise.

Deterministic: a function of the note, the voice clock and the player's controls only, so the
same MIDI gives the same samples live and offline, whatever the block size.

The player scales the vibrato depth (never the settling or the tuning): ``scale = life * (1 +
WHEEL_GAIN * v / VIBRATO_MAX_SEMITONES)`` where ``v`` is the vibrato the control map asks for
(the mod wheel CC1 by default: ``v`` = 0.5 semitone at CC1 127; pressure or another control
mapped to ``vibrato``, 0.35 at full), per sample, and ``life`` the engine's ``life`` option
(default 1). So a plain keyboard (no wheel) gets the source's natural amount; the wheel at 127
gives ``1 + WHEEL_GAIN`` = 3x the natural depth; ``life=0`` draws the old static lines. The
engine's own sine LFO is off for such a model (its depth rows feed this scale instead).

The movement enters the engine as each voice's own bend (``bend_row``, which the oscillator
and the feature planner both read), held over 16 voice samples for the first 0.1 s (the
attack's settling) and over 64 after (:func:`_rows`: it smooths the note's bend target
itself, as the engine's bend smoother would, and adds the movement after, unsmoothed).
"""

from __future__ import annotations

import math

import numpy as np

from ..jit import kernel, subkernel
from ..engine.bank import LIFE_HELD

#: the wheel at full scale multiplies the natural vibrato depth by 1 + this
WHEEL_GAIN = 2.0
#: parameter columns of a table row; the last two (the level's tremolo with the vibrato, in
#: dynamics units, and its phase against the vibrato's: :func:`rtsynth.dataset.life.fit_tremolo`)
#: are optional (0: a table fitted before them plays no level movement)
COLS = ("offset", "settle", "settle_tau", "delay", "ramp", "rate", "depth", "phase", "trem",
        "trem_phase", "drift", "drift_tau", "trem_db", "zone")
#: the drift (:func:`rtsynth.dataset.life.fit_drift`): the source sample's slow pitch wander
#: over its first second, ``drift * exp(-t / drift_tau)`` cents, scaled as the vibrato is
#: (after it FluidR3's samples loop: their pitch curve repeats exactly, nothing drifts)
OPTIONAL = ("trem", "trem_phase", "drift", "drift_tau", "trem_db", "zone")
#: ``zone``: the lowest key of the source sample that plays the row's pitch (the SoundFont's
#: instrument zone, :func:`rtsynth.dataset.life.sf2_zones`; the lowest zone's written as 1; 0:
#: unknown). A note between two rows of one zone takes their interpolation (one sample); between
#: two zones, the row of its own zone: the upper one's from its ``zone`` key up, else the lower
#: one's (FluidR3's flute: key 66 is played by the sample of 66-68, not by 65's)
#: ``trem_db``: the level's tremolo in dB (:func:`rtsynth.dataset.life.fit_tremolo` with
#: ``db=True``), played as a factor on the dynamics row: a dataset's calibration has the level
#: ~ 40 log10(dynamics) dB (FluidR3 flute: within 0.3 dB from velocity 24 to 127), so the
#: factor ``10 ** (x / DB_PER_DECADE)`` moves the level x dB at any dynamics (the additive
#: ``trem`` moves a soft note's level 2-4x more dB than a loud one's)
DB_PER_DECADE = 40.0
#: a term ``a * exp(-t / tau)`` is left out once ``t / tau`` exceeds this (exp(-40) = 4e-18)
EXP_CUT = 40.0
N_COLS = len(COLS)
SUB = 16
#: the movement is held over SUB samples for its first FINE_S (the attack's settling), over
#: HOLD after (a 0.8 cent step of an 18 cent, 5.5 Hz vibrato: inaudible; the oscillator
#: recomputes its f0 once per step)
HOLD = 64
FINE_S = 0.1
#: the attack's settling is clamped to this many cents (a tracker's onset estimate beyond it
#: is not a pitch)
MAX_SETTLE_CENTS = 120.0
#: what a table may hold, per column (a real player's pitch stays well inside): beyond it the
#: file is refused, not played (an absurd depth was non-finite audio, an absurd offset silence)
COL_LIMITS = {"offset": (-100.0, 100.0), "settle": (-1e4, 1e4), "settle_tau": (0.0, 10.0),
              "delay": (0.0, 60.0), "ramp": (0.0, 60.0), "rate": (0.0, 20.0),
              "depth": (0.0, 200.0), "phase": (-1e3, 1e3), "trem": (0.0, 0.5),
              "trem_phase": (-1e3, 1e3), "drift": (-60.0, 60.0), "drift_tau": (0.0, 10.0),
              "trem_db": (0.0, 6.0), "zone": (0.0, 127.0)}


def table_from_config(life: dict) -> tuple[np.ndarray, np.ndarray]:
    """``(pitches [P], params [P, N_COLS])`` float64 from a config's ``life`` object."""
    def column(k):
        v = life.get(k) if isinstance(life, dict) else None
        if not isinstance(v, list) or not all(isinstance(x, (int, float)) for x in v):
            raise ValueError(f"life: '{k}' must be a list of numbers, one per pitch")
        return np.asarray(v, np.float64)
    p = column("pitch")
    if len(p) == 0 or not np.all(np.diff(p) > 0):
        raise ValueError("life: 'pitch' must be increasing")
    cols = [column(k) if k not in OPTIONAL or k in life else np.zeros(len(p)) for k in COLS]
    if any(len(c) != len(p) for c in cols):
        raise ValueError("life: every column needs one finite value per pitch")
    t = np.stack(cols, axis=1)
    if not np.isfinite(t).all():
        bad = COLS[int(np.flatnonzero(~np.isfinite(t).all(axis=0))[0])]
        raise ValueError(f"life: '{bad}' needs one finite value per pitch")
    for j, k in enumerate(COLS):
        lo, hi = COL_LIMITS[k]
        if not ((t[:, j] >= lo) & (t[:, j] <= hi)).all():
            raise ValueError(f"life: '{k}' must lie in {lo:g}..{hi:g}")
    t[:, 1] = np.clip(t[:, 1], -MAX_SETTLE_CENTS, MAX_SETTLE_CENTS)
    t[:, 2] = np.maximum(t[:, 2], 1e-3)
    t[:, 4] = np.maximum(t[:, 4], 1e-3)
    t[:, 11] = np.maximum(t[:, 11], 1e-3)
    return p, t


def note_params(pitches: np.ndarray, table: np.ndarray, note: float) -> np.ndarray:
    """The parameters ``[N_COLS]`` of a note (see the module docstring): NumPy reference of
    :func:`_params` (the kernel's, run as Python)."""
    out = np.zeros(N_COLS)
    _params_py(pitches, table, float(note), out)
    return out


#: the kernels' Numba options
_OPT = dict(error_model="numpy", boundscheck=False)


@subkernel(**_OPT)
def _params(pitches, table, note, out):
    P = pitches.shape[0]
    if note <= pitches[0] or P == 1:
        j, ref = 0, pitches[0]
        for c in range(N_COLS):
            out[c] = table[j, c]
        out[5] = table[j, 5] * 2.0 ** ((note - ref) / 12.0)
        return
    if note >= pitches[P - 1]:
        j, ref = P - 1, pitches[P - 1]
        for c in range(N_COLS):
            out[c] = table[j, c]
        out[5] = table[j, 5] * 2.0 ** ((note - ref) / 12.0)
        return
    i = 0
    while pitches[i + 1] < note:
        i += 1
    a, b = pitches[i], pitches[i + 1]
    if note == a or note == b:
        j = i if note == a else i + 1
        for c in range(N_COLS):
            out[c] = table[j, c]
        return
    w = (note - a) / (b - a)
    ratio = table[i + 1, 5] / table[i, 5]
    dph = table[i + 1, 7] - table[i, 7]
    dph = (dph + math.pi) % (2 * math.pi) - math.pi
    za, zb = table[i, 13], table[i + 1, 13]
    if za > 0.0 and zb > 0.0:
        # the source's zones known: one sample interpolates, else the note's own zone's row
        same = za == zb
        if not same:
            w = 1.0 if note >= zb else 0.0
    else:
        same = abs(dph) < 0.6 and abs(ratio / 2.0 ** ((b - a) / 12.0) - 1.0) < 0.04
    if same:
        for c in range(N_COLS):
            out[c] = (1 - w) * table[i, c] + w * table[i + 1, c]
        out[5] = table[i, 5] * 2.0 ** ((note - a) / 12.0) * (
            ratio / 2.0 ** ((b - a) / 12.0)) ** w
        out[7] = table[i, 7] + w * dph
    else:
        j = i if w <= 0.5 else i + 1
        for c in range(N_COLS):
            out[c] = table[j, c]
        out[5] = table[j, 5] * 2.0 ** ((note - pitches[j]) / 12.0)


@subkernel(**_OPT)
def _curve(prm, t, scale):
    x = (t - prm[3]) / prm[4]
    x = min(max(x, 0.0), 1.0)
    env = x * x * (3.0 - 2.0 * x)
    c = prm[0] + scale * prm[6] * env * math.sin(2.0 * math.pi * prm[5] * t + prm[7])
    u = t / prm[2]
    if u < EXP_CUT:
        c += prm[1] * math.exp(-u)
    u = t / prm[11]
    if prm[10] != 0.0 and u < EXP_CUT:
        c += scale * prm[10] * math.exp(-u)
    return c


@subkernel(**_OPT)
def _tremolo(prm, t, scale):
    x = (t - prm[3]) / prm[4]
    x = min(max(x, 0.0), 1.0)
    env = x * x * (3.0 - 2.0 * x)
    return scale * prm[8] * env * math.sin(2.0 * math.pi * prm[5] * t + prm[7] + prm[9])


@subkernel(**_OPT)
def _tremolo_shape(prm, t):
    """``env(t) * sin(2 pi rate t + phase + trem_phase)``: what both tremolo forms scale."""
    x = (t - prm[3]) / prm[4]
    x = min(max(x, 0.0), 1.0)
    env = x * x * (3.0 - 2.0 * x)
    return env * math.sin(2.0 * math.pi * prm[5] * t + prm[7] + prm[9])


#: ln(10) / DB_PER_DECADE: a dB value times this is the log of its factor on the dynamics
_DB_LOG = math.log(10.0) / DB_PER_DECADE

#: the kernel's per-voice cache (:func:`_rows`), past the parameters and their note: the HOLD
#: steps' recurrence (the vibrato's sin and cos, the two exp terms at the last step ``_KK``)
#: and what it multiplies by each HOLD step (the rotation by 2 pi rate HOLD / sr, the exp terms'
#: decay over HOLD samples), the tremolo phase's cos and sin
_KK, _SN, _CS, _E1, _E2 = N_COLS + 1, N_COLS + 2, N_COLS + 3, N_COLS + 4, N_COLS + 5
_CD, _SD, _R1, _R2, _TC, _TS = (N_COLS + 6, N_COLS + 7, N_COLS + 8, N_COLS + 9, N_COLS + 10,
                                N_COLS + 11)
CACHE_W = N_COLS + 12


@subkernel(**_OPT)
def _note_cache(prm, sr):
    """A voice's cache row after its parameters are loaded: the recurrence's factors, no step."""
    d = 2.0 * math.pi * prm[5] * HOLD / sr
    prm[_CD] = math.cos(d)
    prm[_SD] = math.sin(d)
    prm[_R1] = math.exp(-HOLD / sr / prm[2])
    prm[_R2] = math.exp(-HOLD / sr / prm[11])
    prm[_TC] = math.cos(prm[9])
    prm[_TS] = math.sin(prm[9])
    prm[_KK] = math.nan


@subkernel(**_OPT)
def _hold_step(prm, kk, sr):
    """The recurrence's state at HOLD step ``kk`` (voice samples): from the state one HOLD
    before by the rotation and decays (4 multiply-adds for the sin and cos, 2 products),
    kept where it is already at ``kk`` (a step across two blocks), else (the first HOLD step,
    a voice's clock that jumped) evaluated directly. ``sin``/``cos``/``exp`` of a step's own
    time otherwise: 2-3 calls of ~10-20 ns each, per voice and step."""
    if prm[_KK] == kk:
        return
    if prm[_KK] == kk - HOLD:
        s, c = prm[_SN], prm[_CS]
        prm[_SN] = s * prm[_CD] + c * prm[_SD]
        prm[_CS] = c * prm[_CD] - s * prm[_SD]
        prm[_E1] *= prm[_R1]
        prm[_E2] *= prm[_R2]
    else:
        t = kk / sr
        th = 2.0 * math.pi * prm[5] * t + prm[7]
        prm[_SN] = math.sin(th)
        prm[_CS] = math.cos(th)
        prm[_E1] = math.exp(-t / prm[2])
        prm[_E2] = math.exp(-t / prm[11])
    t = kk / sr
    # the exp terms left out past EXP_CUT time constants (as _curve: no denormals either)
    if t > EXP_CUT * prm[2]:
        prm[_E1] = 0.0
    if t > EXP_CUT * prm[11]:
        prm[_E2] = 0.0
    prm[_KK] = kk


@subkernel(**_OPT)
def _tremolo_gain(prm, t, scale):
    x = (t - prm[3]) / prm[4]
    x = min(max(x, 0.0), 1.0)
    env = x * x * (3.0 - 2.0 * x)
    db = scale * prm[12] * env * math.sin(2.0 * math.pi * prm[5] * t + prm[7] + prm[9])
    return math.exp(db * (math.log(10.0) / DB_PER_DECADE))


@kernel(**_OPT)
def _rows(n, b, coef, life, vib_full, wheel_gain, sr):
    """Each active voice's movement (semitones) into its bend row over ``start_off .. n``,
    held over ``SUB`` voice samples for the first ``FINE_S`` (the settling) and ``HOLD`` after.

    The note's bend target row (its events) is smoothed here, with the engine's bend smoother's
    recurrence and state (``bend_state``: the target's alone), and the movement added after:
    the row is marked ``LIFE_HELD``, so the smoother skips it and the row is refilled with the
    target after the block. So the pitch moves only at the hold steps and the oscillator
    recomputes its f0 no more often (when the smoother smoothed the movement too, its state
    never settled and the f0 moved every 16 samples: 27% of the engine block at 32 voices).

    A table with a tremolo (``trem`` or ``trem_db`` > 0) also moves the voice's dynamics row,
    to ``row * 10 ** (scale * trem_db * m / DB_PER_DECADE) + scale * trem * m``, ``m = env *
    sin(2 pi rate t + phase + trem_phase)``, at the same steps (clamped to
    0..1), the level's breathing with the vibrato, scaled as the vibrato is; the row is marked
    touched, so the next block starts again from the note's targets.

    ``b``: the arrays it reads and writes, one bundle (:meth:`Life.block`: one check of its
    identity per call, not one per array): the voices' ``active, note, vpos, start_off, chan,
    bend_row, bend_settled, bend_touched, bend_state, vib_row, dyn_row, expr_touched``, the
    channels' ``vib`` row, the table's ``pitches`` and ``table``, and ``cache``: per voice its
    parameters (``:N_COLS``) and the note they are for (column ``N_COLS``; NaN: none yet), a
    function of the note alone, looked up again only when the voice's note changes, then the
    HOLD steps' recurrence (:func:`_hold_step`: after the first ``FINE_S`` the curve's sin, cos
    and exp terms from the previous step's by a rotation and decays, not by sin/cos/exp; the
    tremolo's sin from the same sin and cos)."""
    (active, note, vpos, start_off, chan, bend_row, bend_settled, bend_touched, bend_state,
     vib_row, dyn_row, expr_touched, chan_vib, pitches, table, cache) = b
    fine = int(FINE_S * sr)
    fine_next = (fine + HOLD - 1) // HOLD * HOLD    # the first HOLD step at or after fine
    for v in range(active.shape[0]):
        if active[v] == 0:
            continue
        prm = cache[v]
        nv = note[v]
        if prm[N_COLS] != nv:
            _params(pitches, table, nv, prm)
            prm[N_COLS] = nv
            _note_cache(prm, sr)
        ch = chan[v]
        t0 = start_off[v]
        pos = vpos[v]
        s = bend_state[v]
        xp = math.nan
        held = False
        # no event this block: the row holds the target (refilled after the last block); a
        # smoother settled on it holds its state (what the recurrence gives, sample by sample)
        rest = (not bend_touched[v]) and t0 < n and s + coef * (bend_row[v, t0] - s) == s
        val = 0.0
        trem = prm[8] > 0.0 or prm[12] > 0.0
        dv = 0.0
        g = 1.0
        t = t0
        while t < n:
            # a step: its value from its first sample (or the block's), held to the next one
            k = pos + (t - t0)
            step = SUB if k < fine else HOLD
            kk = k - k % step
            sc = life * (1.0 + wheel_gain * (chan_vib[ch, t] + vib_row[v, t]) / vib_full)
            if k < fine:
                val = _curve(prm, kk / sr, sc) / 100.0
                m = _tremolo_shape(prm, kk / sr) if trem else 0.0
                prm[_KK] = math.nan
            else:
                # a HOLD step: the curve's sin, cos and exp terms by recurrence from the last
                # step (the same steps live and offline: a function of the voice clock alone)
                _hold_step(prm, kk, sr)
                x = (kk / sr - prm[3]) / prm[4]
                x = min(max(x, 0.0), 1.0)
                env = x * x * (3.0 - 2.0 * x)
                val = (prm[0] + sc * prm[6] * env * prm[_SN]
                       + prm[1] * prm[_E1] + sc * prm[10] * prm[_E2]) / 100.0
                m = env * (prm[_SN] * prm[_TC] + prm[_CS] * prm[_TS]) if trem else 0.0
            if trem:
                dv = sc * prm[8] * m
                g = math.exp(sc * prm[12] * m * _DB_LOG) if prm[12] > 0.0 else 1.0
            nk = kk + step
            if k < fine and nk >= fine:
                nk = fine_next
            te = min(n, t + (nk - k))
            # (the rows' loops index them by an unsigned sample: no negative index to wrap,
            # so they vectorise; a signed one cost the tremolo's ~2 ns a sample)
            if rest:
                brow = bend_row[v]
                sv = s + val
                for tt in range(np.uint64(t), np.uint64(te)):
                    brow[tt] = sv
            else:
                for tt in range(t, te):
                    x = bend_row[v, tt]
                    if x != xp or not held:    # (held on x: the recurrence gives s again)
                        ns = s + coef * (x - s)
                        held = ns == s
                        s = ns
                        xp = x
                    bend_row[v, tt] = s + val
            if trem:
                drow = dyn_row[v]
                for tt in range(np.uint64(t), np.uint64(te)):
                    y = drow[tt] * g + dv
                    y = y if y > 0.0 else 0.0
                    drow[tt] = y if y < 1.0 else 1.0
            t = te
        if trem:
            expr_touched[v] = True
        bend_state[v] = s
        bend_settled[v] = LIFE_HELD
        bend_touched[v] = False


def _python(f):
    """A kernel's Python function (a reference, and what Python-side helpers call)."""
    return getattr(f, "py_func", None) or getattr(f, "__wrapped__", None) or f


_params_py = _python(_params)
_curve_py = _python(_curve)
_tremolo_py = _python(_tremolo)
_tremolo_gain_py = _python(_tremolo_gain)
#: :func:`_rows` as Python (``Life(jit=False)``; it calls the kernels' ``_params``/``_curve``)
_rows_py = _python(_rows)


class Life:
    """One engine's life of the source (see the module docstring): :meth:`block` once a block,
    after the channels' events and before the frames are planned. Real-time: allocates
    nothing."""

    def __init__(self, life_cfg: dict, sample_rate: int, scale: float = 1.0,
                 vib_full: float = 0.5, wheel_gain: float = WHEEL_GAIN, jit: bool = True,
                 bend_coef: float = 0.0):
        self.pitches, self.table = table_from_config(life_cfg)
        self.sr = float(sample_rate)
        self.scale = float(scale)
        self.vib_full = float(vib_full)
        self.wheel_gain = float(wheel_gain)
        #: the engine's bend smoother coefficient (its settled test)
        self.coef = float(bend_coef)
        #: the kernel's bundle of arrays (:func:`_rows`), made at the first block and again
        #: only for another engine's voices or rows
        self._bundle = None
        self._for = (None, None)
        self._jit = bool(jit)

    def block(self, n: int, vs, rows) -> None:
        if self._for[0] is not vs or self._for[1] is not rows:
            cache = np.full((vs.active.shape[0], CACHE_W), np.nan)
            self._bundle = (vs.active, vs.note, vs.vpos, vs.start_off, vs.chan, vs.bend_row,
                            vs.bend_settled, vs.bend_touched, vs.bend_state, vs.vib_row,
                            vs.dyn_row, vs.expr_touched, rows.vib, self.pitches, self.table,
                            cache)
            self._for = (vs, rows)
        # the module's kernel looked up per call: a switch to the JIT rebinds it
        (_rows if self._jit else _rows_py)(n, self._bundle, self.coef, self.scale,
                                           self.vib_full, self.wheel_gain, self.sr)

    def curve(self, note: float, n_samples: int, vib: float = 0.0) -> np.ndarray:
        """Cents per sample of a held note as :meth:`block` plays it (before the smoother),
        with a constant vibrato request ``vib`` semitones (the wheel's: 0.5 at CC1 127)."""
        prm = note_params(self.pitches, self.table, note)
        sc = self.scale * (1.0 + self.wheel_gain * vib / self.vib_full)
        k = np.arange(n_samples)
        step = np.where(k < int(FINE_S * self.sr), SUB, HOLD)
        kk = (k - k % step) / self.sr
        return np.array([_curve_py(prm, x, sc) for x in kk])


def for_instrument(instrument, sample_rate: int, scale: float = 1.0, vib_full: float = 0.5,
                   bend_coef: float = 0.0):
    """The :class:`Life` of an instrument whose config has a ``life`` table, else None."""
    cfg = getattr(instrument, "config", None)
    if not isinstance(cfg, dict) or not cfg.get("life"):
        return None
    return Life(cfg["life"], sample_rate, scale=scale, vib_full=vib_full, bend_coef=bend_coef)
