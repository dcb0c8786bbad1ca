"""The voice bank: every per-slot array of the engine in one structure, and the kernels that
start, release and end voices.

:class:`Voices` is a named tuple of NumPy arrays, one row per slot (``S = n_slots + n_fade``:
the extra slots play the fade-outs of stolen voices). :func:`make_voices` is its only
constructor (the engine and the tests use it); the kernels receive the bank whole (Numba passes
a tuple of arrays to a compiled function as one argument), so a new per-voice field is one line
in :data:`FIELDS` and the kernels that read it.

Shapes: ``S`` slots, ``K`` harmonics, ``B`` noise bands, ``R`` control frames one block can
start per voice, ``N`` the largest block (per-sample rows of one block).
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from ..jit import kernel, subkernel
from ..spec import FIRST_RAMP

BIG = np.iinfo(np.int64).max // 4
#: ``bend_settled`` of a note whose bend row a model's life (rtsynth.nn.life) smoothed and moved
#: itself this block: the smoother skips it, and the row is refilled with its target after
LIFE_HELD = BIG

#: name, dtype, shape, initial value. Shapes are made of S, K, B, R, N (see the module doc).
FIELDS = (
    # synthesis state
    ("active", np.int8, "S", 0),            # 1 while the slot sounds
    ("start_off", np.int32, "S", 0),        # block offset where a voice started this block
    ("chan", np.int32, "S", 0),             # MIDI channel 0..15
    ("note", np.float64, "S", 0.0),         # MIDI key (pitch before bend)
    ("vpos", np.int64, "S", 0),             # voice clock at the block's first sample
    ("theta", np.float64, "S", 0.0),        # fundamental phase
    ("inc", np.float64, "S", 0.0),          # phase increment (2 pi f0 / sr) now
    ("prev_harm", np.float32, "SK", 0.0),   # controls at the start of the current frame
    ("cur_harm", np.float32, "SK", 0.0),    # ... at its end
    ("prev_noise", np.float32, "SB", 0.0),
    ("cur_noise", np.float32, "SB", 0.0),
    ("new_harm", np.float32, "SRK", 0.0),   # the frames that start in this block, in order
    ("new_noise", np.float32, "SRB", 0.0),
    ("n_new", np.int32, "S", 0),
    ("frozen", np.int8, "S", 0),            # holds its controls (fade copy of a stolen voice)
    ("noise_off", np.int64, "S", 0),        # noise loop offset
    ("kill_start", np.int32, "S", -1),      # block offset where the kill fade starts, -1: none
    ("kill_pos", np.int32, "S", 0),         # samples of the fade done
    ("kill_len", np.int32, "S", 1),         # fade length
    ("bad", np.int8, "S", 0),               # its output was not finite this block
    # bookkeeping
    ("velocity", np.float32, "S", 0.0),     # note-on velocity
    ("key_down", np.bool_, "S", False),
    ("sustained", np.bool_, "S", False),    # key up, held by the pedal
    ("released_at", np.int64, "S", BIG),    # voice sample of the release, BIG: not released
    ("age", np.int64, "S", 0),              # note-on counter (steal the oldest)
    ("level", np.float32, "S", 0.0),        # sum of the last frame's amplitudes
    ("release_speed", np.float32, "S", 1.0),  # how fast its release runs (note-off velocity)
    # per-note expression (rtsynth.engine.expression): targets, and per-sample rows of this block
    ("pressure", np.float64, "S", 0.0),     # the note's pressure 0..1 (poly / channel / MPE)
    ("bend", np.float64, "S", 0.0),         # the note's own bend in semitones (MPE member)
    ("bend_state", np.float64, "S", 0.0),   # its smoother's state
    ("bend_touched", np.bool_, "S", False),  # an event wrote into bend_row this block
    ("bend_settled", np.int64, "S", 0),     # samples the smoother holds its target (0: moving)
    ("bend_row", np.float64, "SN", 0.0),    # per-note bend per sample, smoothed
    ("vib", np.float64, "S", 0.0),          # per-note vibrato depth (semitones) target
    ("dyn", np.float32, "S", 0.0),          # dynamics 0..1 (spec column 7) target
    ("bright", np.float32, "S", 0.0),       # brightness 0..1 (spec column 8) target
    ("expr_touched", np.bool_, "S", False),  # an event wrote into the rows below this block
    ("vib_row", np.float64, "SN", 0.0),
    ("dyn_row", np.float32, "SN", 0.0),
    ("bright_row", np.float32, "SN", 0.0),
)

Voices = namedtuple("Voices", [f[0] for f in FIELDS])
Voices.__doc__ = "Every per-slot array of the engine (see :data:`FIELDS`)."


def make_voices(n_slots: int, n_harmonics: int, n_noise_bands: int, rounds: int,
                block: int) -> Voices:
    """A bank of ``n_slots`` idle slots (all fields at their initial values)."""
    dims = {"S": n_slots, "K": n_harmonics, "B": n_noise_bands, "R": rounds, "N": block}
    arrays = []
    for _name, dtype, shape, init in FIELDS:
        arrays.append(np.full(tuple(dims[c] for c in shape), init, dtype))
    return Voices(*arrays)


# ------------------------------------------------------------------ per-note expression
# Sources of a per-note control (rows of the route table) and what they drive (its values).
SRC_PRESSURE, SRC_BREATH, SRC_TIMBRE, SRC_MODWHEEL, SRC_EXPRESSION = range(5)
DST_NONE, DST_DYNAMICS, DST_BRIGHTNESS, DST_VIBRATO = range(4)
#: vibrato depth (semitones) of a source at full scale routed to vibrato: the mod wheel's, and
#: the others' (channel pressure's before per-note expression)
VIBRATO_MAX_SEMITONES = 0.5
PRESSURE_VIBRATO = 0.35

# the channel controller values a note's controls follow (rtsynth.engine.channels.Channels.ctl)
ChannelControls = namedtuple("ChannelControls",
                             "pressure breath expression timbre mod note_bend")


@subkernel
def _targets(vs, v, ctl, routes, v2, default_bright):
    """The note's dynamics, brightness and extra vibrato from its sources (route table:
    ``routes[source] = destination``). Absolute sources first (breath sets the dynamics, CC74
    the brightness), then the swells (pressure, mod wheel: from there towards 1), then CC11
    scales the dynamics (v2 models only: for v1 it is the channel gain, as ever)."""
    ch = vs.chan[v]
    d0 = vs.velocity[v] / 127.0
    d = d0
    b = default_bright
    vib = 0.0
    if routes[SRC_BREATH] == DST_DYNAMICS and ctl.breath[ch] >= 0.0:
        d = ctl.breath[ch]
    if routes[SRC_TIMBRE] == DST_BRIGHTNESS:
        b = ctl.timbre[ch]
    for src in range(4):
        dst = routes[src]
        if src == SRC_PRESSURE:
            x = vs.pressure[v]
        elif src == SRC_BREATH:
            x = ctl.breath[ch]
            if x < 0.0:
                continue
        elif src == SRC_TIMBRE:
            x = ctl.timbre[ch]
        else:
            x = ctl.mod[ch]
        if dst == DST_DYNAMICS and src != SRC_BREATH:
            d = d + (1.0 - d) * x
        elif dst == DST_BRIGHTNESS and src != SRC_TIMBRE:
            b = b + (1.0 - b) * x
        elif dst == DST_VIBRATO and src != SRC_MODWHEEL:   # the wheel's is the channel's
            vib += x * (VIBRATO_MAX_SEMITONES if src == SRC_TIMBRE else PRESSURE_VIBRATO)
    if v2 and routes[SRC_EXPRESSION] == DST_DYNAMICS:
        d = d * ctl.expression[ch]
    vs.dyn[v] = np.float32(d)
    vs.bright[v] = np.float32(b)
    vs.vib[v] = vib


@subkernel
def _write_rows(vs, v, off, n):
    """The note's targets into its rows from block offset ``off`` to ``n``."""
    dy = vs.dyn[v]
    br = vs.bright[v]
    vb = vs.vib[v]
    for t in range(off, n):
        vs.dyn_row[v, t] = dy
        vs.bright_row[v, t] = br
        vs.vib_row[v, t] = vb
    vs.expr_touched[v] = True


# the per-note control events a block queues (Channels) and apply_notes applies, in order
OP_PRESSURE, OP_POLY, OP_BREATH, OP_TIMBRE, OP_MOD, OP_EXPRESSION, OP_NOTE_BEND = range(7)


@kernel
def apply_notes(vs, n_slots, m, kind, chan, key, offset, value, n, ctl, routes, v2,
                default_bright):
    """The queued per-note control events ``0 .. m-1``, in order, at their block offsets: each
    sets its channel controller (``ctl``) and updates the notes it addresses (pressure, breath,
    CC74, CC1, CC11 recompute their dynamics, brightness and vibrato; an MPE member's bend is
    its notes' bend). One call for a block's run of them: a Seaboard's stream of bends and
    pressures costs one kernel call, not one per message."""
    for i in range(m):
        k = kind[i]
        c = chan[i]
        x = value[i]
        off = offset[i]
        if k == OP_NOTE_BEND:
            ctl.note_bend[c] = x
            bend_notes(vs, n_slots, c, x, off, n)
            continue
        p = -1.0
        kk = -1
        if k == OP_PRESSURE:
            ctl.pressure[c] = x
            p = x
        elif k == OP_POLY:
            p = x
            kk = key[i]
        elif k == OP_BREATH:
            ctl.breath[c] = x
        elif k == OP_TIMBRE:
            ctl.timbre[c] = x
        elif k == OP_MOD:
            ctl.mod[c] = x
        elif k == OP_EXPRESSION:
            ctl.expression[c] = x
        express(vs, n_slots, c, kk, p, off, n, ctl, routes, v2, default_bright)


@subkernel
def express(vs, n_slots, ch, key, pressure, off, n, ctl, routes, v2, default_bright):
    """A control event at block offset ``off`` for the notes of channel ``ch`` (``key`` >= 0:
    only that key's): ``pressure`` >= 0 sets their pressure; their dynamics, brightness and
    vibrato are recomputed from it and the channel's controllers. Returns the notes touched."""
    m = 0
    for v in range(n_slots):
        if vs.active[v] == 0 or vs.chan[v] != ch:
            continue
        if key >= 0 and (vs.note[v] != key or vs.released_at[v] != BIG):
            continue
        if pressure >= 0.0:
            vs.pressure[v] = pressure
        _targets(vs, v, ctl, routes, v2, default_bright)
        _write_rows(vs, v, max(off, vs.start_off[v]), n)
        m += 1
    return m


@subkernel
def bend_notes(vs, n_slots, ch, semitones, off, n):
    """The per-note bend of the notes of channel ``ch`` (an MPE member) from offset ``off``."""
    for v in range(n_slots):
        if vs.active[v] == 0 or vs.chan[v] != ch:
            continue
        vs.bend[v] = semitones
        for t in range(max(off, vs.start_off[v]), n):
            vs.bend_row[v, t] = semitones
        vs.bend_touched[v] = True


@subkernel
def begin_rows(vs, n):
    """Before a block's events: each active note's rows hold its targets. A row no event wrote
    into last block still holds them (refills are whole rows), and a settled bend smoother
    holds its state: only those rows are written."""
    for v in range(vs.active.shape[0]):
        if vs.active[v] == 0:
            continue
        if vs.expr_touched[v]:
            _write_rows(vs, v, 0, n)
            vs.expr_touched[v] = False
        if vs.bend_touched[v] or vs.bend_settled[v] < n or vs.bend_settled[v] == LIFE_HELD:
            b = vs.bend[v]
            for t in range(n):
                vs.bend_row[v, t] = b
            vs.bend_touched[v] = False


@subkernel
def smooth_bends(vs, n, coef):
    """One-pole smoothing of each sounding note's bend row over ``start_off .. n`` (a 7-bit
    controller's steps become glides), carrying ``bend_state``; a row whose state has settled
    on its target and that no event wrote into is skipped (``bend_settled``)."""
    for v in range(vs.active.shape[0]):
        if vs.active[v] == 0:
            continue
        s = vs.bend_state[v]
        if not vs.bend_touched[v] and vs.bend_settled[v] >= n:
            continue
        t = vs.start_off[v]
        x0 = vs.bend_row[v, t] if t < n else s
        vs.bend_settled[v] = n if (not vs.bend_touched[v] and s + coef * (x0 - s) == s) else 0
        while t < n:
            x = vs.bend_row[v, t]
            ns = s + coef * (x - s)
            vs.bend_row[v, t] = ns
            t += 1
            if ns == s:
                while t < n and vs.bend_row[v, t] == x:
                    vs.bend_row[v, t] = s
                    t += 1
            s = ns
        vs.bend_state[v] = s


# ------------------------------------------------------------------ voice life
@kernel
def start_voices(m, offs, chs, notes, vels, slots_out, n_slots, hop, counter, steal_len,
                 noise_len, vs, n, ctl, routes, v2, default_bright):
    """Note-ons ``offs/chs/notes/vels[:m]``, in order: the same key still held on the same
    channel is released first; a slot is taken (a free one, else the quietest released voice,
    else the oldest held one); a stolen voice moves to a fade slot (frozen, fading out over
    ``steal_len`` from the note-on); the slot becomes a fresh voice, whose expression starts
    from its channel's state (an MPE member's bend and pressure sent before the note-on apply
    from its first sample). Slots to ``slots_out``; returns ``m`` + the number of steals."""
    S = vs.active.shape[0]
    K = vs.prev_harm.shape[1]
    B = vs.prev_noise.shape[1]
    N = vs.bend_row.shape[1]
    steals = 0
    for i in range(m):
        off = offs[i]
        ch = chs[i]
        nt = notes[i]
        vel = vels[i]
        for v in range(n_slots):
            if (vs.active[v] != 0 and vs.chan[v] == ch and vs.note[v] == nt
                    and vs.released_at[v] == BIG):
                vs.key_down[v] = False
                vs.sustained[v] = False
                vs.released_at[v] = max(vs.vpos[v] + (off - vs.start_off[v]), 0)
        s = -1
        for v in range(n_slots):
            if vs.active[v] == 0:
                s = v
                break
        if s < 0:
            best = np.inf
            for v in range(n_slots):
                if vs.released_at[v] != BIG and vs.level[v] < best:
                    best = vs.level[v]
                    s = v
        if s < 0:
            oldest = vs.age[0]
            s = 0
            for v in range(1, n_slots):
                if vs.age[v] < oldest:
                    oldest = vs.age[v]
                    s = v
        if vs.active[s] != 0:
            steals += 1
            if S > n_slots:
                _to_fade_slot(vs, s, _free_fade_slot(vs, n_slots, S), off, steal_len, hop, K, B, N)
        counter += 1
        vs.active[s] = 1
        vs.start_off[s] = off
        vs.chan[s] = ch
        vs.note[s] = nt
        vs.vpos[s] = 0
        vs.theta[s] = 0.0
        vs.inc[s] = 0.0
        for k in range(K):
            vs.prev_harm[s, k] = 0.0
            vs.cur_harm[s, k] = 0.0
        for b in range(B):
            vs.prev_noise[s, b] = 0.0
            vs.cur_noise[s, b] = 0.0
        vs.frozen[s] = 0
        vs.kill_start[s] = -1
        vs.kill_pos[s] = 0
        # noise phase from the key, not from history: the same events give the same samples
        # whatever was played before (live == offline render)
        vs.noise_off[s] = ((nt * 128 + vel) * 16 + ch) * 7919 % noise_len
        vs.velocity[s] = vel
        vs.key_down[s] = True
        vs.sustained[s] = False
        vs.released_at[s] = BIG
        vs.age[s] = counter
        vs.level[s] = 1.0
        vs.release_speed[s] = 1.0
        vs.pressure[s] = ctl.pressure[ch]
        nb = ctl.note_bend[ch]
        vs.bend[s] = nb
        vs.bend_state[s] = nb
        vs.bend_settled[s] = 0
        vs.bend_touched[s] = True
        for t in range(off, n):
            vs.bend_row[s, t] = nb
        _targets(vs, s, ctl, routes, v2, default_bright)
        _write_rows(vs, s, off, n)
        slots_out[i] = s
    return m + steals


@subkernel
def _free_fade_slot(vs, n_slots, S):
    """The fade slot a stolen voice goes to: a free one, else the one nearest its end."""
    for v in range(n_slots, S):
        if vs.active[v] == 0:
            return v
    f = n_slots
    for v in range(n_slots + 1, S):
        if vs.kill_pos[v] > vs.kill_pos[f]:
            f = v
    return f


@subkernel
def _to_fade_slot(vs, s, f, off, steal_len, hop, K, B, N):
    """Voice ``s`` continues in fade slot ``f``, frozen at its controls of now, fading out
    from block offset ``off``."""
    vs.active[f] = vs.active[s]
    vs.start_off[f] = vs.start_off[s]
    vs.chan[f] = vs.chan[s]
    vs.note[f] = vs.note[s]
    vs.vpos[f] = vs.vpos[s]
    vs.theta[f] = vs.theta[s]
    vs.inc[f] = vs.inc[s]
    vs.noise_off[f] = vs.noise_off[s]
    ph = np.float32((vs.vpos[s] % hop) / hop)
    if vs.vpos[s] < hop:                  # the first frame's ramp (spec.FIRST_RAMP)
        ph = np.float32(min(vs.vpos[s] / min(FIRST_RAMP, hop), 1.0))
    for k in range(K):
        c = vs.prev_harm[s, k] + ph * (vs.cur_harm[s, k] - vs.prev_harm[s, k])
        vs.prev_harm[f, k] = c
        vs.cur_harm[f, k] = c
    for b in range(B):
        c = vs.prev_noise[s, b] + ph * (vs.cur_noise[s, b] - vs.prev_noise[s, b])
        vs.prev_noise[f, b] = c
        vs.cur_noise[f, b] = c
    # its pitch keeps following its own bend and vibrato over the fade
    vs.bend[f] = vs.bend[s]
    vs.bend_state[f] = vs.bend_state[s]
    vs.bend_settled[f] = vs.bend_settled[s]
    vs.bend_touched[f] = True
    vs.vib[f] = vs.vib[s]
    vs.dyn[f] = vs.dyn[s]
    vs.bright[f] = vs.bright[s]
    for t in range(N):
        vs.bend_row[f, t] = vs.bend_row[s, t]
        vs.vib_row[f, t] = vs.vib_row[s, t]
    vs.expr_touched[f] = True
    vs.frozen[f] = 1
    vs.n_new[f] = 0
    vs.kill_start[f] = off
    vs.kill_pos[f] = 0
    vs.kill_len[f] = steal_len


@kernel
def steal_voice(vs, n_slots, ch, key, start, off, steal_len, hop):
    """The rack's voice pool takes the sounding voice of channel ``ch``, key ``key`` that
    started at block offset ``start`` (negative: in an earlier block), as :func:`start_voices`
    takes one: it moves to a fade slot (frozen, fading out over ``steal_len`` from block
    offset ``off``) and its slot is free. Returns 1, or 0 when no such voice sounds (it has
    ended)."""
    S = vs.active.shape[0]
    K = vs.prev_harm.shape[1]
    B = vs.prev_noise.shape[1]
    N = vs.bend_row.shape[1]
    s = -1
    for v in range(n_slots):
        if (vs.active[v] == 0 or vs.kill_start[v] >= 0 or vs.chan[v] != ch
                or vs.note[v] != key):
            continue
        if vs.start_off[v] - vs.vpos[v] == start:
            s = v
            break
    if s < 0:
        return 0
    if S > n_slots:
        _to_fade_slot(vs, s, _free_fade_slot(vs, n_slots, S), off, steal_len, hop, K, B, N)
    vs.active[s] = 0
    vs.kill_start[s] = -1
    vs.key_down[s] = False
    vs.sustained[s] = False
    vs.released_at[s] = BIG
    return 1


@kernel
def release_notes(vs, n_slots, ch, key, off, sustain, only_sustained, speed):
    """Key up at block offset ``off`` for the held notes of channel ``ch`` (``key`` >= 0: that
    key's only): held on by the pedal (``sustain``), else released; their release runs at
    ``speed`` (from the note-off velocity). ``only_sustained``: the pedal went up, release the
    notes it held. Returns how many."""
    m = 0
    for v in range(n_slots):
        if vs.active[v] == 0 or vs.chan[v] != ch:
            continue
        if only_sustained:
            if not vs.sustained[v]:
                continue
            vs.sustained[v] = False
        else:
            if not vs.key_down[v] or (key >= 0 and vs.note[v] != key):
                continue
            vs.key_down[v] = False
            vs.release_speed[v] = speed
            if sustain:
                vs.sustained[v] = True
                m += 1
                continue
        vs.released_at[v] = max(vs.vpos[v] + (off - vs.start_off[v]), 0)
        m += 1
    return m


@kernel
def kill_voices(vs, ch, off, fade_len):
    """Fade out every sounding voice (``ch`` >= 0: of that channel) from block offset ``off``
    over ``fade_len`` samples; a voice already fading keeps its fade."""
    for v in range(vs.active.shape[0]):
        if vs.active[v] == 0 or (ch >= 0 and vs.chan[v] != ch) or vs.kill_start[v] >= 0:
            continue
        vs.kill_start[v] = off
        vs.kill_pos[v] = 0
        vs.kill_len[v] = fade_len
        vs.key_down[v] = False
        vs.sustained[v] = False


@kernel
def end_block(vs, upto, freed, block):
    """After a block: free the slots whose fade ended or whose output was not finite (the
    freed slots below ``upto``, the instrument's, into ``freed``), and fill the sounding
    notes' rows for the next block (:func:`begin_rows`, for up to ``block`` samples). Returns
    (freed count, bad count). One call: each bank argument costs ~4 us to hand over."""
    m = 0
    nbad = 0
    for v in range(vs.active.shape[0]):
        bad = vs.bad[v] != 0
        if bad:
            nbad += 1
            vs.bad[v] = 0
        elif not (vs.active[v] == 0 and vs.kill_start[v] >= 0):
            continue
        vs.active[v] = 0
        vs.kill_start[v] = -1
        vs.key_down[v] = False
        vs.sustained[v] = False
        vs.released_at[v] = BIG
        if v < upto:
            freed[m] = v
            m += 1
    begin_rows(vs, block)
    return m, nbad


@kernel
def count_active(vs, upto):
    m = 0
    for v in range(upto):
        if vs.active[v] != 0:
            m += 1
    return m
