"""MIDI channels: controller state, the message and controller tables, MPE zones, and the
per-sample channel rows the synthesis reads.

Events are applied at their sample inside the block: each one writes its channel's rows from
its offset to the end of the block (bend, vibrato depth, gain target), or goes to the notes it
addresses through the voice bank's kernels (release, kill, per-note expression). The handlers
are tables (:attr:`Channels.kinds` by status nibble, :attr:`Channels.controllers` by CC
number), in the spirit of mido's message specs.

Real-time: every handler runs in the block loop (the generator thread, or the JACK callback
under ``--sync``): it allocates nothing (state in preallocated arrays and Python lists of
floats; row writes in kernels), takes no lock, does no I/O.
"""

from __future__ import annotations

import math
from collections import namedtuple

import numpy as np

from .. import spec
from ..jit import kernel
from .bank import (DST_DYNAMICS, DST_VIBRATO, OP_BREATH, OP_EXPRESSION, OP_MOD, OP_NOTE_BEND,
                   OP_POLY, OP_PRESSURE, OP_TIMBRE, SRC_EXPRESSION, SRC_MODWHEEL,
                   VIBRATO_MAX_SEMITONES, ChannelControls, apply_notes, kill_voices,
                   release_notes)

KILL_FADE_S = 0.005
GAIN_SMOOTH_S = 0.005          # one-pole time constant of CC7/CC11 changes
MPE_MEMBER_RANGE = 48.0        # MPE 1.0 default bend ranges
MPE_MASTER_RANGE = 2.0
LOWER, UPPER = 0, 1
NOTE_OPS = 1024                # per-note control events queued before a kernel call

#: per channel and sample of one block: bend and vibrato depth (semitones), gain; per channel
#: the pan gains
ChannelRows = namedtuple("ChannelRows", "bend vib gain pan_l pan_r")


@kernel
def smooth_rows(target, state, coef, n, touched, settled):
    """One-pole smoothing of ``target[c, :n]`` in place, per row, carrying ``state[c]``.

    Once a step leaves the state where it was (it reached the target, or within the last
    rounding step of it), the following samples of the same target are that state again: they
    are filled without the recurrence (the same numbers, most channels cost a comparison).

    A row no event wrote into (``touched[c]`` false) whose state had settled on its target
    holds that state throughout: ``settled[c]`` = the length it holds it over (0: not
    settled). Such a row is skipped while ``settled[c] >= n`` (it would come out the same)."""
    for c in range(target.shape[0]):
        s = state[c]
        if not touched[c] and settled[c] >= n:
            continue
        x0 = target[c, 0]
        settled[c] = n if (not touched[c] and s + coef * (x0 - s) == s) else 0
        t = 0
        while t < n:
            x = target[c, t]
            ns = s + coef * (x - s)
            target[c, t] = ns
            t += 1
            if ns == s:
                while t < n and target[c, t] == x:
                    target[c, t] = s
                    t += 1
            s = ns
        state[c] = s


@kernel
def begin_rows(rows, n, touched, settled, bend, vib, gain):
    """Before a block's events: each channel's rows hold its values. Only rows that changed
    are written: an event writes from its sample to the end of the block, so a row no event
    wrote into last block already holds its value (refills are whole rows); a gain row whose
    state has settled holds that state, which smooths to itself (:func:`smooth_rows`)."""
    for c in range(16):
        if touched[0, c]:
            for t in range(n):
                rows.bend[c, t] = bend[c]
            touched[0, c] = False
        if touched[1, c]:
            for t in range(n):
                rows.vib[c, t] = vib[c]
            touched[1, c] = False
        if settled[c] < n:
            for t in range(n):
                rows.gain[c, t] = gain[c]
        touched[2, c] = False


@kernel
def fill_row(row, c, off, n, value):
    for t in range(off, n):
        row[c, t] = value


class Channels:
    """The 16 channels' state and what their messages do (see the module docstring).

    ``vs``/``n_slots``: the voice bank and the instrument's slots; ``instrument``: for its timbre
    latent (``timbre_cc``); ``routes``: the control map (:mod:`rtsynth.engine.expression`);
    ``v2``: the model takes dynamics and brightness as inputs; ``mpe``: one of
    :data:`rtsynth.engine.expression.MPE_MODES`.
    """

    def __init__(self, sample_rate: int, block: int, vs, n_slots: int, instrument,
                 timbre_cc: int | None, routes: np.ndarray, v2: bool, mpe: str = "auto"):
        self.sr = int(sample_rate)
        self.vs = vs
        self.n_slots = int(n_slots)
        self.inst = instrument
        self.timbre_cc = timbre_cc
        self.routes = routes
        self.v2 = bool(v2)
        self.mpe = mpe
        #: the instrument's release follows the note-off velocity
        self.release_velocity = bool(getattr(instrument, "release_velocity", False))
        self.kill_len = max(1, int(KILL_FADE_S * self.sr))
        self.gain_coef = 1.0 - math.exp(-1.0 / (GAIN_SMOOTH_S * self.sr))
        N = int(block)
        self.rows = ChannelRows(np.zeros((16, N)), np.zeros((16, N)), np.zeros((16, N)),
                                np.zeros(16, np.float32), np.zeros(16, np.float32))
        self.ctl = ChannelControls(*(np.zeros(16) for _ in ChannelControls._fields))
        # what the rows hold between events, per channel (kernel inputs)
        self.bend_value = np.zeros(16)
        self.vib_value = np.zeros(16)
        self.gain_target = np.zeros(16)
        self.gain_state = np.zeros(16)
        # rows of bend, vib, gain an event wrote into during this block; how long each gain
        # row holds its settled state (see smooth_rows)
        self.touched = np.ones((3, 16), bool)
        self.settled = np.zeros(16, np.int64)
        # per-note control events of this block, applied in order in one kernel call (before
        # any other event and any note-on: :meth:`flush`)
        self.op_kind = np.zeros(NOTE_OPS, np.int64)
        self.op_chan = np.zeros(NOTE_OPS, np.int64)
        self.op_key = np.zeros(NOTE_OPS, np.int64)
        self.op_off = np.zeros(NOTE_OPS, np.int64)
        self.op_value = np.zeros(NOTE_OPS)
        self.n_ops = 0
        self.queued = frozenset((0xA0, 0xD0, 0xE0))    # kinds whose handlers queue or flush
        self.kinds = {0x80: self._note_off, 0xA0: self._poly_pressure, 0xB0: self.control,
                      0xD0: self._pressure, 0xE0: self._bend}
        self.controllers = {1: self._mod, 2: self._breath, 6: self._data_entry,
                            38: self._data_entry_fine, 7: self._volume, 10: self._pan,
                            11: self._expression, 64: self._sustain, 74: self._timbre,
                            100: self._rpn_lsb, 101: self._rpn_msb, 120: self._sound_off,
                            121: self._reset_controllers, 123: self._notes_off}
        #: controllers the master channel of an MPE zone applies to all of the zone
        self.zone_wide = (1, 7, 11, 64)
        #: controllers whose handlers queue or flush themselves
        self.queued_cc = frozenset((1, 2, 11, 74))
        self.reset()

    # ---------------------------------------------------------------- state
    def reset(self) -> None:
        """Every controller to its power-on value; MPE zones as the mode says."""
        self.bend = [0.0] * 16              # -1 .. 1
        self.bend_range = [2.0] * 16        # semitones (RPN 0)
        self.rpn = [[127, 127] for _ in range(16)]
        self.mod = [0.0] * 16
        self.pressure = [0.0] * 16
        self.volume = [100.0] * 16
        self.expression = [127.0] * 16
        self.sustain = [False] * 16
        self.pan = [64.0] * 16
        c = self.ctl
        c.pressure[:] = 0.0
        c.breath[:] = -1.0                  # not sent yet: breath does not act
        c.expression[:] = 1.0
        c.timbre[:] = spec.DEFAULT_BRIGHTNESS
        c.mod[:] = 0.0
        c.note_bend[:] = 0.0
        self.members = [0, 0]               # member channels of the lower and upper zone
        self.zone_of = [-1] * 16            # member channel -> its zone
        self.master_of = list(range(16))    # whose bend a channel's row carries
        forced = {"lower": (15, 0), "upper": (0, 15), "both": (7, 7)}.get(self.mpe)
        if forced:
            self._configure(*forced)
        for ch in range(16):
            self._update_pan(ch)
            self.bend_value[ch] = self.bend[ch] * self.bend_range[ch]
            self.vib_value[ch] = self._vib_depth(ch)
            self.gain_target[ch] = self._target_gain(ch)
        self.gain_state[:] = self.gain_target
        self.touched[:] = True
        self.settled[:] = 0
        self.n_ops = 0

    def reset_gains(self) -> None:
        """The gain rows at their targets now, without smoothing (after setting state)."""
        for ch in range(16):
            self.gain_target[ch] = self._target_gain(ch)
        self.gain_state[:] = self.gain_target
        self.touched[2] = True
        self.settled[:] = 0

    def begin(self, n: int) -> None:
        begin_rows(self.rows, n, self.touched, self.settled, self.bend_value, self.vib_value,
                   self.gain_target)

    def finish(self, n: int) -> None:
        smooth_rows(self.rows.gain, self.gain_state, self.gain_coef, n, self.touched[2],
                    self.settled)

    def _target_gain(self, ch: int) -> float:
        v = self.volume[ch] / 127.0
        g = v * v
        if not self.v2 and self.routes[SRC_EXPRESSION] == DST_DYNAMICS:
            e = self.expression[ch] / 127.0      # dynamics as level: the CC11 square law
            g = g * (e * e)
        return g

    def _vib_depth(self, ch: int) -> float:
        if self.timbre_cc == 1 or self.routes[SRC_MODWHEEL] != DST_VIBRATO:
            return 0.0
        return self.mod[ch] / 127.0 * VIBRATO_MAX_SEMITONES

    def _update_pan(self, ch: int) -> None:
        p = min(max((self.pan[ch] - 64.0) / 63.0, -1.0), 1.0)
        ang = (p + 1.0) * math.pi / 4.0
        # constant power, normalised so the centre is 1.0 on both sides
        self.rows.pan_l[ch] = math.cos(ang) * math.sqrt(2.0)
        self.rows.pan_r[ch] = math.sin(ang) * math.sqrt(2.0)

    # --------------------------------------------------------------- rows
    def _set_bend_row(self, ch: int, off: int, n: int) -> None:
        m = self.master_of[ch]
        value = self.bend[m] * self.bend_range[m]
        self.bend_value[ch] = value
        fill_row(self.rows.bend, ch, off, n, value)
        self.touched[0, ch] = True

    def _set_vib(self, ch: int, off: int, n: int) -> None:
        self.vib_value[ch] = self._vib_depth(ch)
        fill_row(self.rows.vib, ch, off, n, self.vib_value[ch])
        self.touched[1, ch] = True

    def _set_gain(self, ch: int, off: int, n: int) -> None:
        self.gain_target[ch] = self._target_gain(ch)
        fill_row(self.rows.gain, ch, off, n, self.gain_target[ch])
        self.touched[2, ch] = True

    def _queue(self, kind: int, off: int, ch: int, key: int, value: float, n: int) -> None:
        m = self.n_ops
        if m == NOTE_OPS:
            self.flush(n)
            m = 0
        self.op_kind[m] = kind
        self.op_chan[m] = ch
        self.op_key[m] = key
        self.op_off[m] = off
        self.op_value[m] = value
        self.n_ops = m + 1

    def flush(self, n: int) -> None:
        """Apply the queued per-note control events (before the next other event)."""
        if self.n_ops:
            apply_notes(self.vs, self.n_slots, self.n_ops, self.op_kind, self.op_chan,
                        self.op_key, self.op_off, self.op_value, n, self.ctl, self.routes,
                        self.v2, spec.DEFAULT_BRIGHTNESS)
            self.n_ops = 0

    def _refresh_bend(self, ch: int, off: int, n: int) -> None:
        """A channel's bend after its value, range or zone changed: a member's goes to its
        notes; any other's into its row and the rows of the members it is master of."""
        if self.zone_of[ch] >= 0:
            self._queue(OP_NOTE_BEND, off, ch, -1, self.bend[ch] * self.bend_range[ch], n)
            return
        for c in range(16):
            if self.master_of[c] == ch:
                self._set_bend_row(c, off, n)

    # ------------------------------------------------------------- messages
    def apply(self, off: int, st: int, d1: int, d2: int, n: int) -> None:
        """A channel message other than note-on at block offset ``off`` of an ``n`` block."""
        kind = st & 0xF0
        h = self.kinds.get(kind)
        if h is not None:
            if self.n_ops and kind not in self.queued:
                self.flush(n)               # (a bend or CC handler queues or flushes itself)
            h(off, st & 0x0F, d1, d2, n)
        # program change: accepted, no effect on a single instrument

    def _note_off(self, off, ch, key, vel, n):
        release_notes(self.vs, self.n_slots, ch, key, off, self.sustain[ch], False,
                      self._release_speed(vel))

    def _release_speed(self, velocity: int) -> float:
        """Note-off velocity -> the speed of the release (its envelope features' clock), for
        an instrument that asks for it (``release_velocity``): 64 (and 0, what a keyboard
        that does not measure it sends) as recorded, 127 four times as fast, 1 a quarter."""
        if not self.release_velocity or velocity == 0 or velocity == 64:
            return 1.0
        return 2.0 ** ((velocity - 64) / 31.5)

    def _bend(self, off, ch, lsb, msb, n):
        self.bend[ch] = (((msb << 7) | lsb) - 8192) / 8192.0
        if self.zone_of[ch] >= 0:         # a member's: its notes' (queued)
            self._queue(OP_NOTE_BEND, off, ch, -1, self.bend[ch] * self.bend_range[ch], n)
            return
        if self.n_ops:
            self.flush(n)
        self._refresh_bend(ch, off, n)

    def _pressure(self, off, ch, value, _, n):
        p = value / 127.0
        self.pressure[ch] = p
        self._queue(OP_PRESSURE, off, ch, -1, p, n)

    def _poly_pressure(self, off, ch, key, value, n):
        self._queue(OP_POLY, off, ch, key, value / 127.0, n)

    def control(self, off: int, ch: int, cc: int, val: int, n: int) -> None:
        if self.timbre_cc is not None and cc == self.timbre_cc:
            self.inst.set_timbre(val / 127.0)
            if cc != 1:
                return
        h = self.controllers.get(cc)
        if h is None:
            return
        if self.n_ops and cc not in self.queued_cc:
            self.flush(n)
        h(off, ch, val, n)
        if self.members[LOWER] or self.members[UPPER]:
            if cc in self.zone_wide and self.zone_of[ch] < 0 and self._is_master(ch):
                z = LOWER if ch == 0 else UPPER
                for c in range(16):
                    if self.zone_of[c] == z:
                        h(off, c, val, n)

    def _is_master(self, ch: int) -> bool:
        return (ch == 0 and self.members[LOWER] > 0) or (ch == 15 and self.members[UPPER] > 0)

    def _mod(self, off, ch, val, n):
        self.mod[ch] = val
        if self.routes[SRC_MODWHEEL] != DST_VIBRATO:
            self._queue(OP_MOD, off, ch, -1, val / 127.0, n)
        else:
            if self.n_ops:
                self.flush(n)
            self.ctl.mod[ch] = val / 127.0
            self._set_vib(ch, off, n)

    def _breath(self, off, ch, val, n):
        self._queue(OP_BREATH, off, ch, -1, val / 127.0, n)

    def _timbre(self, off, ch, val, n):
        self._queue(OP_TIMBRE, off, ch, -1, val / 127.0, n)

    def _volume(self, off, ch, val, n):
        self.volume[ch] = val
        self._set_gain(ch, off, n)

    def _expression(self, off, ch, val, n):
        self.expression[ch] = val
        self._set_gain(ch, off, n)
        if self.v2:
            self._queue(OP_EXPRESSION, off, ch, -1, val / 127.0, n)
        else:
            self.ctl.expression[ch] = val / 127.0

    def _pan(self, off, ch, val, n):
        self.pan[ch] = val
        self._update_pan(ch)

    def _sustain(self, off, ch, val, n):
        down = val >= 64
        if self.sustain[ch] and not down:
            release_notes(self.vs, self.n_slots, ch, -1, off, False, True, 1.0)
        self.sustain[ch] = down

    def _rpn_msb(self, off, ch, val, n):
        self.rpn[ch][0] = val

    def _rpn_lsb(self, off, ch, val, n):
        self.rpn[ch][1] = val

    def _data_entry_fine(self, off, ch, val, n):
        self._data_entry(off, ch, val, n, True)

    def _data_entry(self, off, ch, val, n, lsb=False):
        rpn = self.rpn[ch]
        if rpn[0] != 0:
            return
        if rpn[1] == 0:                      # pitch bend range
            r = self.bend_range[ch]
            semis = math.floor(r)
            cents = round((r - semis) * 100)
            if lsb:
                cents = min(val, 99)
            else:
                semis = val
            r = semis + cents / 100.0
            z = self.zone_of[ch]
            if z >= 0:                       # a member: the range of all the zone's members
                for c in range(16):
                    if self.zone_of[c] == z:
                        self.bend_range[c] = r
                        self._refresh_bend(c, off, n)
            else:
                self.bend_range[ch] = r
                self._refresh_bend(ch, off, n)
        elif rpn[1] == 6 and not lsb and self.mpe == "auto" and ch in (0, 15):
            lower, upper = self.members
            if ch == 0:
                lower = min(val, 15)
                upper = min(upper, 15 - lower)
            else:
                upper = min(val, 15)
                lower = min(lower, 15 - upper)
            self._configure(lower, upper)
            for c in range(16):
                self._refresh_bend(c, off, n)

    def _configure(self, lower: int, upper: int) -> None:
        """MPE zones of ``lower`` and ``upper`` member channels (0: none); the bend ranges of
        the channels they include go to the MPE defaults."""
        self.members = [lower, upper]
        for c in range(16):
            self.zone_of[c] = -1
            self.master_of[c] = c
            self.ctl.note_bend[c] = 0.0
        for c in range(1, 1 + lower):
            self.zone_of[c] = LOWER
            self.master_of[c] = 0
            self.bend_range[c] = MPE_MEMBER_RANGE
        for c in range(15 - upper, 15):
            self.zone_of[c] = UPPER
            self.master_of[c] = 15
            self.bend_range[c] = MPE_MEMBER_RANGE
        if lower:
            self.bend_range[0] = MPE_MASTER_RANGE
        if upper:
            self.bend_range[15] = MPE_MASTER_RANGE
        for c in range(16):
            if self.zone_of[c] >= 0:
                self.ctl.note_bend[c] = self.bend[c] * self.bend_range[c]

    def _sound_off(self, off, ch, val, n):
        kill_voices(self.vs, ch, off, self.kill_len)

    def _notes_off(self, off, ch, val, n):
        release_notes(self.vs, self.n_slots, ch, -1, off, self.sustain[ch], False, 1.0)

    def _reset_controllers(self, off, ch, val, n):
        self.bend[ch] = 0.0
        self._refresh_bend(ch, off, n)
        self.mod[ch] = 0
        self.ctl.mod[ch] = 0.0
        self.pressure[ch] = 0.0
        self._set_vib(ch, off, n)
        self.expression[ch] = 127
        self.ctl.expression[ch] = 1.0
        self._set_gain(ch, off, n)
        self._queue(OP_BREATH, off, ch, -1, -1.0, n)
        self._queue(OP_PRESSURE, off, ch, -1, 0.0, n)   # and the notes' from the others
        self.flush(n)
        self.rpn[ch][0] = self.rpn[ch][1] = 127
        if self.sustain[ch]:
            self._sustain(off, ch, 0, n)
