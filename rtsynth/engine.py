"""The synthesis engine: MIDI events in, stereo audio blocks out.

One :class:`Engine` renders one block at a time, the same way live (from the generator thread)
and offline (from :mod:`rtsynth.render`)::

    events (sample-stamped) -> voices (allocate, steal, sustain) -> per-channel controls
    (bend, vibrato, volume) -> instrument.step (all voices that start a frame, one batch)
    -> render_voices (Numba) -> master chain (reverb, DC block, limiter, safety clip)

Events take effect at their sample inside the block. Each voice has its own sample clock, and
all synthesis follows it, so the output does not depend on the block size.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from . import spec
from .dsp.effects import MasterState, safety_clip
from .dsp.synth import noise_layout, render_voices
from .instruments.base import StreamingInstrument
from .jit import kernel
from .midi.messages import parse_message

BIG = np.iinfo(np.int64).max // 4
VIBRATO_HZ = 5.5
VIBRATO_MAX_SEMITONES = 0.5   # mod wheel at 127
AFTERTOUCH_VIBRATO = 0.35     # channel pressure at 127 adds this many semitones of vibrato
STEAL_FADE_S = 0.004
KILL_FADE_S = 0.005
SILENT_LEVEL = 2e-5           # a released voice below this (-94 dBFS) for a frame ends


@kernel
def _smooth_rows(target, state, coef, n, touched, settled):
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
def _plan_frames(n, hop, sr, n_slots, active, kill_start, vpos, start_off, note, chan, velocity,
                 released_at, bend_arr, vib_arr, lfo_w, tau_fast, tau_slow,
                 p_slots, p_feat, p_nf, p_toff, p_rel, counts, n_new):
    """List the control frames that start in this block, per round; returns the round count.

    Features per :mod:`rtsynth.spec`, from the voice's state at the frame's first sample (pitch
    as the oscillator computes it there: note + bend + key-synced vibrato). A voice being killed
    gets the frames that start before its kill sample (none once its fade has begun), whatever
    the block size.
    """
    for r in range(counts.shape[0]):
        counts[r] = 0
    for v in range(n_new.shape[0]):
        n_new[v] = 0
    rounds = 0
    for v in range(n_slots):
        if active[v] == 0:
            continue
        n0 = vpos[v]
        so = start_off[v]
        end = n0 + n - so
        if kill_start[v] >= 0:
            end = min(end, n0 + kill_start[v] - so)
        nf = ((n0 + hop - 1) // hop) * hop
        ch = chan[v]
        r = 0
        while nf < end:
            m = counts[r]
            toff = so + nf - n0
            pitch = note[v] + bend_arr[ch, toff] + vib_arr[ch, toff] * math.sin(lfo_w * nf)
            f = p_feat[r, m]
            f[0] = (pitch - 60.0) / 24.0
            f[1] = velocity[v] / 127.0
            t_on = nf / sr
            f[3] = math.exp(-t_on / tau_fast)
            f[4] = math.exp(-t_on / tau_slow)
            rel = released_at[v]
            if rel <= nf:
                t_off = (nf - rel) / sr
                f[2] = 0.0
                f[5] = math.exp(-t_off / tau_fast)
                f[6] = math.exp(-t_off / tau_slow)
            else:
                f[2] = 1.0
                f[5] = 0.0
                f[6] = 0.0
            p_slots[r, m] = v
            p_nf[r, m] = nf
            p_toff[r, m] = toff
            p_rel[r, m] = rel
            counts[r] = m + 1
            r += 1
            nf += hop
        if r > rounds:
            rounds = r
    return rounds


@kernel
def _store_rounds(r0, r1, counts, p_slots, p_nf, p_rel, p_toff, oh, og, new_h, new_g, n_new,
                  level, hop, max_release, silent, len_silent, len_long, kill_start, kill_pos,
                  kill_len, key_down, sustained):
    """File the controls of rounds ``r0 .. r1-1`` (rows of ``oh/og`` in round order) per voice.
    A released voice ends at its first silent frame after the release (a ``len_silent`` fade)
    or ``max_release`` after it (``len_long``): decided on the voice's own frame grid, so it does
    not depend on the block size. A frame that starts at or after its voice's kill (decided in
    an earlier round of this block) is dropped, as a smaller block would not have computed it.
    """
    o = 0
    for r in range(r0, r1):
        m = counts[r]
        for i in range(m):
            v = p_slots[r, i]
            row = o + i
            toff = p_toff[r, i]
            if kill_start[v] >= 0 and toff >= kill_start[v]:
                continue
            lvl = 0.0
            for k in range(oh.shape[1]):
                new_h[v, r, k] = oh[row, k]
                lvl += oh[row, k]
            for b in range(og.shape[1]):
                new_g[v, r, b] = og[row, b]
                lvl += og[row, b]
            n_new[v] = r + 1
            level[v] = lvl
            rel = p_rel[r, i]
            nf = p_nf[r, i]
            if rel <= nf:
                since = nf - rel
                fade = 0
                if since > hop and lvl < silent:
                    fade = len_silent
                elif since > max_release:
                    fade = len_long
                if fade and kill_start[v] < 0:
                    kill_start[v] = toff
                    kill_pos[v] = 0
                    kill_len[v] = fade
                    key_down[v] = False
                    sustained[v] = False
        o += m


@kernel
def _start_voices(m, offs, chs, notes, vels, slots_out, n_slots, hop, counter, steal_len,
                  noise_len, active, start_off, chan, note, vpos, theta, inc, prev_h, cur_h,
                  prev_g, cur_g, frozen, n_new, kill_start, kill_pos, kill_len, noise_off,
                  velocity, key_down, sustained, released_at, age, level):
    """Note-ons ``offs/chs/notes/vels[:m]``, in order: the same key still held on the same
    channel is released first; a slot is taken (a free one, else the quietest released voice,
    else the oldest held one); a stolen voice moves to a fade slot (frozen, fading out over
    ``steal_len`` from the note-on); the slot becomes a fresh voice. Slots to ``slots_out``;
    returns ``m`` + the number of steals."""
    S = active.shape[0]
    K = prev_h.shape[1]
    B = prev_g.shape[1]
    steals = 0
    for i in range(m):
        off = offs[i]
        ch = chs[i]
        nt = notes[i]
        vel = vels[i]
        for v in range(n_slots):
            if active[v] != 0 and chan[v] == ch and note[v] == nt and released_at[v] == BIG:
                key_down[v] = False
                sustained[v] = False
                released_at[v] = max(vpos[v] + (off - start_off[v]), 0)
        s = -1
        for v in range(n_slots):
            if active[v] == 0:
                s = v
                break
        if s < 0:
            best = np.inf
            for v in range(n_slots):
                if released_at[v] != BIG and level[v] < best:
                    best = level[v]
                    s = v
        if s < 0:
            oldest = age[0]
            s = 0
            for v in range(1, n_slots):
                if age[v] < oldest:
                    oldest = age[v]
                    s = v
        if active[s] != 0:
            steals += 1
            if S > n_slots:
                f = -1
                for v in range(n_slots, S):
                    if active[v] == 0:
                        f = v
                        break
                if f < 0:
                    f = n_slots
                    for v in range(n_slots + 1, S):
                        if kill_pos[v] > kill_pos[f]:
                            f = v
                active[f] = active[s]
                start_off[f] = start_off[s]
                chan[f] = chan[s]
                note[f] = note[s]
                vpos[f] = vpos[s]
                theta[f] = theta[s]
                inc[f] = inc[s]
                noise_off[f] = noise_off[s]
                ph = np.float32((vpos[s] % hop) / hop)
                for k in range(K):
                    c = prev_h[s, k] + ph * (cur_h[s, k] - prev_h[s, k])
                    prev_h[f, k] = c
                    cur_h[f, k] = c
                for b in range(B):
                    c = prev_g[s, b] + ph * (cur_g[s, b] - prev_g[s, b])
                    prev_g[f, b] = c
                    cur_g[f, b] = c
                frozen[f] = 1
                n_new[f] = 0
                kill_start[f] = off
                kill_pos[f] = 0
                kill_len[f] = steal_len
        counter += 1
        active[s] = 1
        start_off[s] = off
        chan[s] = ch
        note[s] = nt
        vpos[s] = 0
        theta[s] = 0.0
        inc[s] = 0.0
        for k in range(K):
            prev_h[s, k] = 0.0
            cur_h[s, k] = 0.0
        for b in range(B):
            prev_g[s, b] = 0.0
            cur_g[s, b] = 0.0
        frozen[s] = 0
        kill_start[s] = -1
        kill_pos[s] = 0
        # noise phase from the key, not from history: the same events give the same samples
        # whatever was played before (live == offline render)
        noise_off[s] = ((nt * 128 + vel) * 16 + ch) * 7919 % noise_len
        velocity[s] = vel
        key_down[s] = True
        sustained[s] = False
        released_at[s] = BIG
        age[s] = counter
        level[s] = 1.0
        slots_out[i] = s
    return m + steals


class Engine:
    """Polyphonic engine around one :class:`StreamingInstrument`.

    Parameters
    ----------
    instrument: the control generator (neural or basic).
    sample_rate, block: audio rate and the largest block :meth:`render` is asked for.
    n_slots: voice slots (polyphony); ``n_fade`` extra slots play the fade-outs of stolen voices.
    gain: master gain (linear) before the limiter. reverb: reverb send, 0 for dry.
    master: False skips reverb, DC blocker and limiter (analysis renders); the final safety
    stage (no NaN, never above full scale) always runs.
    max_rows: the most rows of one ``instrument.step`` call when a multi-frame instrument gets
    the rounds of a block together (default ``n_slots``; offline, as many as a block holds, if
    the instrument can take them: it has ``allocate(n_slots, max_rows=)``).
    """

    def __init__(self, instrument: StreamingInstrument, sample_rate: int = spec.SAMPLE_RATE,
                 block: int = 128, n_slots: int = 32, gain: float = 0.5, reverb: float = 0.12,
                 n_fade: int = 8, max_release: float = 6.0, timbre_cc: int | None = None,
                 master: bool = True, max_rows: int | None = None):
        if sample_rate != instrument.sample_rate:
            raise ValueError(f"instrument {instrument.name!r} runs at {instrument.sample_rate} Hz, "
                             f"not {sample_rate} Hz")
        self.inst = instrument
        self.sr = int(sample_rate)
        self.block = int(block)
        self.n_slots = int(n_slots)
        self.gain = float(gain)
        self.max_release = int(max_release * self.sr)
        self.hop = instrument.hop
        # With a timbre latent, the mod wheel moves the timbre by default.
        if timbre_cc is None and instrument.has_timbre:
            timbre_cc = 1
        self.timbre_cc = timbre_cc
        inst = instrument
        S = self.n_slots + int(n_fade)
        K, B = inst.n_harmonics, inst.n_noise_bands
        self.S, self.K, self.B = S, K, B
        self.R = self.block // self.hop + 2
        self._want_rows = min(max(self.n_slots, int(max_rows or 0)), self.R * self.n_slots)
        self._allocate_instrument()
        f32 = np.float32
        # synthesis state, per slot
        self.active = np.zeros(S, np.int8)
        self.start_off = np.zeros(S, np.int32)
        self.chan = np.zeros(S, np.int32)
        self.note = np.zeros(S, np.float64)
        self.vpos = np.zeros(S, np.int64)
        self.theta = np.zeros(S, np.float64)
        self.inc = np.zeros(S, np.float64)
        self.prev_h = np.zeros((S, K), f32)
        self.cur_h = np.zeros((S, K), f32)
        self.prev_g = np.zeros((S, B), f32)
        self.cur_g = np.zeros((S, B), f32)
        self.new_h = np.zeros((S, self.R, K), f32)
        self.new_g = np.zeros((S, self.R, B), f32)
        self.n_new = np.zeros(S, np.int32)
        self.frozen = np.zeros(S, np.int8)
        self.noise_off = np.zeros(S, np.int64)
        self.kill_start = np.full(S, -1, np.int32)
        self.kill_pos = np.zeros(S, np.int32)
        self.kill_len = np.ones(S, np.int32)
        self.bad = np.zeros(S, np.int8)
        loops = spec.noise_tables(self.sr, B)                     # [B, L]
        self.noise_len = loops.shape[1]
        self.tables = noise_layout(loops)                        # [B, L + pad]
        # voice bookkeeping, per slot
        self.velocity = np.zeros(S, np.float32)
        self.key_down = np.zeros(S, bool)
        self.sustained = np.zeros(S, bool)
        self.released_at = np.full(S, BIG, np.int64)
        self.age = np.zeros(S, np.int64)
        self.level = np.zeros(S, np.float32)
        self._counter = 0
        # channel state
        self.bend = np.zeros(16)              # -1 .. 1
        self.bend_range = np.full(16, 2.0)    # semitones (RPN 0)
        self.rpn = np.full((16, 2), 127, np.int64)
        self.mod = np.zeros(16)
        self.pressure = np.zeros(16)
        self.volume = np.full(16, 100.0)
        self.expression = np.full(16, 127.0)
        self.sustain = np.zeros(16, bool)
        self.pan = np.full(16, 64.0)
        self.pan_l = np.zeros(16, np.float32)
        self.pan_r = np.zeros(16, np.float32)
        self._update_pan()
        self.chan_gain = np.zeros((16, self.block), np.float64)
        self._bend_arr = np.zeros((16, self.block))
        self._vib_arr = np.zeros((16, self.block))
        self._gain_state = self._target_gain().astype(np.float64)
        self._gain_coef = 1.0 - math.exp(-1.0 / (0.005 * self.sr))
        # rows of _bend_arr, _vib_arr, chan_gain an event wrote into during the last block (the
        # others still hold their channel's value: not refilled), and how long each gain row
        # holds its settled state (see _smooth_rows)
        self._touched = np.ones((3, 16), bool)
        self._settled = np.zeros(16, np.int64)
        self.lfo_w = 2 * math.pi * VIBRATO_HZ / self.sr
        # buffers
        self.scratch = np.zeros(self.block, np.float64)
        self.out = np.zeros((self.block, 2), np.float32)
        R = self.R
        self._p_slots = np.zeros((R, S), np.int64)
        self._p_feat = np.zeros((R, S, inst.n_features), np.float32)
        self._p_nf = np.zeros((R, S), np.int64)
        self._p_toff = np.zeros((R, S), np.int64)
        self._p_rel = np.zeros((R, S), np.int64)
        self._p_count = np.zeros(R, np.int64)
        ON = 256                           # note-ons started per kernel call
        self._on_off = np.zeros(ON, np.int64)
        self._on_ch = np.zeros(ON, np.int64)
        self._on_note = np.zeros(ON, np.int64)
        self._on_vel = np.zeros(ON, np.int64)
        self._on_slot = np.zeros(ON, np.int64)
        # the fades of a released voice that ended: silent, or held past max_release
        self._fade_silent = max(1, int(0.001 * self.sr))
        self._fade_long = max(1, int(0.05 * self.sr))
        M = self.max_rows
        self._oh = np.zeros((max(S, M), K), np.float32)
        self._og = np.zeros((max(S, M), B), np.float32)
        self._mf = np.zeros((M, inst.n_features), np.float32)   # multi-frame rows
        self._ms = np.zeros(M, np.int64)
        #: the instrument takes several frames of a voice per call (set False to compare)
        self._multi_frame = bool(getattr(inst, "multi_frame", False))
        self.master = MasterState(self.sr, reverb=reverb)
        self.use_master = bool(master)
        #: render() leaves the master chain to the caller (:meth:`master_block`): a file
        #: render runs it beside the next block (``OfflineEngine.beside``)
        self.defer_master = False
        self.events: deque = deque()
        self.time = 0                      # absolute sample index of the next block's first sample
        self.stats = {"events": 0, "bad_messages": 0, "late_events": 0, "steals": 0,
                      "nan_voices": 0}

    def _allocate_instrument(self) -> None:
        """Allocate the instrument's slots; :attr:`max_rows`: the rows one step may get."""
        inst = self.inst
        if self._want_rows > self.n_slots and hasattr(inst, "max_rows"):
            inst.allocate(self.n_slots, max_rows=self._want_rows)
            self.max_rows = max(self.n_slots, min(self._want_rows, int(inst.max_rows)))
        else:
            inst.allocate(self.n_slots)
            self.max_rows = self.n_slots

    # ------------------------------------------------------------------ input
    def push(self, when: int, message) -> None:
        """Queue a raw MIDI message to take effect at absolute sample ``when``.

        Thread-safe for one producer and the rendering consumer (``deque.append`` is atomic).
        Malformed messages are counted and dropped.
        """
        msg = parse_message(message)
        if msg is None:
            self.stats["bad_messages"] += 1
            return
        self.events.append((int(when), msg[0], msg[1], msg[2]))

    # ----------------------------------------------------------------- render
    def render(self, nframes: int | None = None) -> np.ndarray:
        """Render the next block; returns a ``[nframes, 2]`` float32 view of an internal buffer."""
        n = self.block if nframes is None else int(nframes)
        if n > self.block:
            raise ValueError(f"block of {n} frames is larger than the engine's {self.block}")
        t0 = self.time
        end = t0 + n
        self._begin_channel_arrays(n)
        # take the events of this block, in time order
        evs = []
        q = self.events
        while q and q[0][0] < end:
            evs.append(q.popleft())
        if len(evs) > 1:
            evs.sort(key=lambda e: e[0])
        m = 0               # note-ons queued: a run of them (a chord) starts in one call
        for when, st, d1, d2 in evs:
            off = when - t0
            if off < 0:
                self.stats["late_events"] += 1
                off = 0
            if st & 0xF0 == 0x90:
                self._on_off[m], self._on_ch[m], self._on_note[m], self._on_vel[m] = (
                    off, st & 0x0F, d1, d2)
                m += 1
                if m == len(self._on_off):
                    self._note_ons(m)
                    m = 0
                continue
            if m:
                self._note_ons(m)
                m = 0
            self._apply(off, st, d1, d2, n)
        if m:
            self._note_ons(m)
        self.stats["events"] += len(evs)
        self._finish_channel_arrays(n)
        self._compute_frames(n)
        out = self.out[:n]
        self._synthesize(n, out)
        if self.bad.any():
            bad = np.flatnonzero(self.bad)
            self.stats["nan_voices"] += len(bad)
            self._free(bad)
        self._end_voices()
        if self.use_master:
            if not self.defer_master:
                self.master.process(out, self.gain)
        else:
            safety_clip(out, self.gain, self.master.counters)
        self.time = end
        return out

    def master_block(self, out: np.ndarray) -> None:
        """The master chain on a block ``render()`` returned with :attr:`defer_master` set, in
        place; blocks in the order they were rendered."""
        if self.use_master:
            self.master.process(out, self.gain)

    def _synthesize(self, n: int, out: np.ndarray) -> None:
        """Every voice's next ``n`` samples into ``out`` (zeroed here); ``bad`` flags voices
        whose output was not finite."""
        out[:] = 0.0
        self.bad[:] = 0
        self._render_slots(0, self.S, n, out, self.scratch)

    def _render_slots(self, a: int, b: int, n: int, out: np.ndarray, scratch: np.ndarray) -> None:
        """Synthesis of slots ``a:b`` (views of the per-slot arrays), added into ``out``."""
        render_voices(n, float(self.sr), self.hop, self.active[a:b], self.start_off[a:b],
                      self.chan[a:b], self.note[a:b], self.vpos[a:b], self.theta[a:b],
                      self.inc[a:b], self.prev_h[a:b], self.cur_h[a:b], self.prev_g[a:b],
                      self.cur_g[a:b], self.new_h[a:b], self.new_g[a:b], self.n_new[a:b],
                      self.frozen[a:b], self.noise_off[a:b], self.tables, self.kill_start[a:b],
                      self.kill_pos[a:b], self.kill_len[a:b], self._bend_arr, self._vib_arr,
                      self.lfo_w, self.chan_gain, self.pan_l, self.pan_r, scratch, out,
                      self.bad[a:b])

    # --------------------------------------------------------------- channels
    def _target_gain(self) -> np.ndarray:
        return (self.volume / 127.0) ** 2 * (self.expression / 127.0) ** 2

    def _update_pan(self) -> None:
        p = np.clip((self.pan - 64.0) / 63.0, -1.0, 1.0)
        ang = (p + 1.0) * math.pi / 4.0
        # constant power, normalised so the centre is 1.0 on both sides
        self.pan_l[:] = np.cos(ang) * math.sqrt(2.0)
        self.pan_r[:] = np.sin(ang) * math.sqrt(2.0)

    def _vib_depth(self) -> np.ndarray:
        if self.timbre_cc == 1:
            d = np.zeros(16)
        else:
            d = self.mod / 127.0 * VIBRATO_MAX_SEMITONES
        return d + self.pressure / 127.0 * AFTERTOUCH_VIBRATO

    def _begin_channel_arrays(self, n: int) -> None:
        """Per channel and sample, before this block's events: bend, vibrato depth and gain
        target hold the channel's value. Only rows that changed are written: an event writes
        from its sample to the end of the block, so a row no event wrote into last block
        already holds its value (over the whole block, as refills are whole rows); a gain row
        whose state has settled holds that state, which smooths to itself (``_smooth_rows``)."""
        t = self._touched
        if t[0].any():
            r = np.flatnonzero(t[0])
            self._bend_arr[r] = (self.bend * self.bend_range)[r, None]
        if t[1].any():
            r = np.flatnonzero(t[1])
            self._vib_arr[r] = self._vib_depth()[r, None]
        t[:2] = False
        r = np.flatnonzero(self._settled < n)
        if len(r):
            self.chan_gain[r, :n] = self._target_gain()[r, None]
        t[2] = False

    def _finish_channel_arrays(self, n: int) -> None:
        _smooth_rows(self.chan_gain, self._gain_state, self._gain_coef, n, self._touched[2],
                     self._settled)

    def _set_bend(self, ch: int, off: int, n: int) -> None:
        self._bend_arr[ch, off:n] = self.bend[ch] * self.bend_range[ch]
        self._touched[0, ch] = True

    def _set_vib(self, ch: int, off: int, n: int) -> None:
        self._vib_arr[ch, off:n] = self._vib_depth()[ch]
        self._touched[1, ch] = True

    def _set_gain(self, ch: int, off: int, n: int) -> None:
        self.chan_gain[ch, off:n] = self._target_gain()[ch]
        self._touched[2, ch] = True

    # ----------------------------------------------------------------- events
    def _apply(self, off: int, st: int, d1: int, d2: int, n: int) -> None:
        kind = st & 0xF0
        ch = st & 0x0F
        if kind == 0x80:
            self._note_off(off, ch, d1)
        elif kind == 0xE0:
            self.bend[ch] = (((d2 << 7) | d1) - 8192) / 8192.0
            self._set_bend(ch, off, n)
        elif kind == 0xB0:
            self._control(off, ch, d1, d2, n)
        elif kind == 0xD0:
            self.pressure[ch] = d1
            self._set_vib(ch, off, n)
        # poly aftertouch and program change: accepted, no effect on a single instrument

    def _control(self, off: int, ch: int, cc: int, val: int, n: int) -> None:
        if self.timbre_cc is not None and cc == self.timbre_cc:
            self.inst.set_timbre(val / 127.0)
            if cc != 1:
                return
        if cc == 1:
            self.mod[ch] = val
            self._set_vib(ch, off, n)
        elif cc == 7:
            self.volume[ch] = val
            self._set_gain(ch, off, n)
        elif cc == 11:
            self.expression[ch] = val
            self._set_gain(ch, off, n)
        elif cc == 10:
            self.pan[ch] = val
            self._update_pan()
        elif cc == 64:
            down = val >= 64
            if self.sustain[ch] and not down:
                held = np.flatnonzero(self.sustained[: self.n_slots] & (self.chan[: self.n_slots] == ch)
                                      & (self.active[: self.n_slots] != 0))
                self.sustained[held] = False
                self._release(held, off)
            self.sustain[ch] = down
        elif cc == 101:
            self.rpn[ch, 0] = val
        elif cc == 100:
            self.rpn[ch, 1] = val
        elif cc == 6 or cc == 38:
            if self.rpn[ch, 0] == 0 and self.rpn[ch, 1] == 0:
                semis = math.floor(self.bend_range[ch])
                cents = round((self.bend_range[ch] - semis) * 100)
                if cc == 6:
                    semis = val
                else:
                    cents = min(val, 99)
                self.bend_range[ch] = semis + cents / 100.0
                self._set_bend(ch, off, n)
        elif cc == 120:                       # all sound off
            v = np.flatnonzero((self.active != 0) & (self.chan == ch))
            self._kill(v, off, KILL_FADE_S)
        elif cc == 123:                       # all notes off
            v = np.flatnonzero(self.key_down[: self.n_slots] & (self.chan[: self.n_slots] == ch))
            self.key_down[v] = False
            if self.sustain[ch]:
                self.sustained[v] = True
            else:
                self._release(v, off)
        elif cc == 121:                       # reset all controllers
            self.bend[ch] = 0.0
            self._set_bend(ch, off, n)
            self.mod[ch] = 0
            self.pressure[ch] = 0
            self._set_vib(ch, off, n)
            self.expression[ch] = 127
            self._set_gain(ch, off, n)
            self.rpn[ch] = 127
            if self.sustain[ch]:
                self._control(off, ch, 64, 0, n)

    def _voice_sample(self, v: np.ndarray, off: int) -> np.ndarray:
        """Voice-clock sample of block offset ``off`` for slots ``v``."""
        return self.vpos[v] + (off - self.start_off[v])

    def _release(self, v: np.ndarray, off: int) -> None:
        if len(v):
            self.released_at[v] = np.maximum(self._voice_sample(v, off), 0)

    def _note_off(self, off: int, ch: int, note: int) -> None:
        ns = self.n_slots
        v = np.flatnonzero(self.key_down[:ns] & (self.chan[:ns] == ch) & (self.note[:ns] == note)
                           & (self.active[:ns] != 0))
        if not len(v):
            return
        self.key_down[v] = False
        if self.sustain[ch]:
            self.sustained[v] = True
        else:
            self._release(v, off)

    def _note_ons(self, m: int) -> None:
        """Start the ``m`` voices queued in ``_on_*`` (in order), in one kernel call: a chord
        of 64 note-ons costs about what one did in Python."""
        r = _start_voices(m, self._on_off, self._on_ch, self._on_note, self._on_vel,
                          self._on_slot, self.n_slots, self.hop, self._counter,
                          max(1, int(STEAL_FADE_S * self.sr)), self.noise_len,
                          self.active, self.start_off, self.chan, self.note, self.vpos,
                          self.theta, self.inc, self.prev_h, self.cur_h, self.prev_g,
                          self.cur_g, self.frozen, self.n_new, self.kill_start, self.kill_pos,
                          self.kill_len, self.noise_off, self.velocity, self.key_down,
                          self.sustained, self.released_at, self.age, self.level)
        self.stats["steals"] += r - m
        self._counter += m
        self.inst.reset(self._on_slot[:m])

    def _kill(self, v: np.ndarray, off: int, seconds: float) -> None:
        if not len(v):
            return
        fresh = self.kill_start[v] < 0
        v = v[fresh]
        self.kill_start[v] = off
        self.kill_pos[v] = 0
        self.kill_len[v] = max(1, int(seconds * self.sr))
        self.key_down[v] = False
        self.sustained[v] = False

    def _free(self, v: np.ndarray) -> None:
        self.active[v] = 0
        self.kill_start[v] = -1
        self.key_down[v] = False
        self.sustained[v] = False
        self.released_at[v] = BIG
        inst_slots = v[v < self.n_slots]
        if len(inst_slots):
            self.inst.reset(inst_slots.astype(np.int64))

    # ----------------------------------------------------------------- frames
    def _compute_frames(self, n: int) -> None:
        """Run the instrument for every control frame that starts in this block, batched.

        A Numba pass lists, per round ``r``, the voices whose ``r``-th frame in this block starts
        here, with their features; each round is one ``instrument.step`` call.
        """
        rounds = self._plan(n)
        multi = rounds > 1 and self._multi_frame
        r = 0
        while r < rounds:
            # rounds r .. q-1 go through the instrument in one call: one round, or (a
            # multi-frame instrument: several frames of a voice in one call, in order) as many
            # whole rounds as fit in max_rows rows. Kills do not touch the instrument, so the
            # output is the same either way.
            q, rows = r + 1, int(self._p_count[r])
            if multi:
                while q < rounds and rows + int(self._p_count[q]) <= self.max_rows:
                    rows += int(self._p_count[q])
                    q += 1
            if q == r + 1:
                self.inst.step(self._p_feat[r, :rows], self._p_slots[r, :rows], self._oh[:rows],
                               self._og[:rows])
            else:
                o = 0
                for i in range(r, q):
                    m = int(self._p_count[i])
                    self._mf[o:o + m] = self._p_feat[i, :m]
                    self._ms[o:o + m] = self._p_slots[i, :m]
                    o += m
                self.inst.step(self._mf[:rows], self._ms[:rows], self._oh[:rows],
                               self._og[:rows])
            self._store(r, q)
            r = q

    def _plan(self, n: int) -> int:
        """List this block's control frames per round (``_p_*``); returns the round count."""
        return _plan_frames(n, self.hop, float(self.sr), self.n_slots, self.active,
                            self.kill_start, self.vpos, self.start_off, self.note, self.chan,
                            self.velocity, self.released_at, self._bend_arr, self._vib_arr,
                            self.lfo_w, spec.TAU_FAST, spec.TAU_SLOW, self._p_slots,
                            self._p_feat, self._p_nf, self._p_toff, self._p_rel,
                            self._p_count, self.n_new)

    def _store(self, r: int, q: int) -> None:
        """File rounds ``r .. q-1``, whose controls are in ``_oh/_og`` in round order."""
        _store_rounds(r, q, self._p_count, self._p_slots, self._p_nf, self._p_rel, self._p_toff,
                      self._oh, self._og, self.new_h, self.new_g, self.n_new, self.level,
                      self.hop, self.max_release, SILENT_LEVEL, self._fade_silent,
                      self._fade_long, self.kill_start, self.kill_pos, self.kill_len,
                      self.key_down, self.sustained)

    def _end_voices(self) -> None:
        """Free the slots of voices whose fade-out ended in this block."""
        done = np.flatnonzero((self.active == 0) & (self.kill_start >= 0))
        if len(done):
            self._free(done)

    # ------------------------------------------------------------------ misc
    @property
    def active_voices(self) -> int:
        return int(np.count_nonzero(self.active[: self.n_slots]))

    def all_sound_off(self, off: int = 0, seconds: float = 0.03) -> None:
        """Fade every voice out (used on Ctrl-C and at the end of a render)."""
        self._kill(np.flatnonzero(self.active != 0), off, seconds)

    def reset(self) -> None:
        """Silence and reset everything (voices, controllers, effects); keeps the clock."""
        self._free(np.arange(self.S))
        self.active[:] = 0
        self.kill_start[:] = -1
        self.events.clear()
        self.bend[:] = 0
        self.bend_range[:] = 2.0
        self.mod[:] = 0
        self.pressure[:] = 0
        self.volume[:] = 100
        self.expression[:] = 127
        self.sustain[:] = False
        self.pan[:] = 64
        self._update_pan()
        self._gain_state[:] = self._target_gain()
        self._touched[:] = True
        self._settled[:] = 0
        self.master.reset()
        for k in self.stats:
            self.stats[k] = 0

    def warmup(self) -> None:
        """Compile and exercise every path (notes, bend, steal, fade, effects), then reset."""
        self.inst.warmup()
        self._allocate_instrument()
        t = self.time
        for i in range(self.n_slots + 2):
            self.push(t + (i * 7) % self.block, (0x90, 40 + i % 40, 100))
        self.push(t + 5, (0xE0, 0, 80))
        self.push(t + 6, (0xB0, 1, 90))
        for _ in range(4):
            self.render()
        self.push(self.time, (0xB0, 64, 127))
        self.push(self.time + 1, (0xB0, 123, 0))
        self.push(self.time + 2, (0xB0, 64, 0))
        for _ in range(3):
            self.render()
        self.all_sound_off()
        self.render()
        self.reset()
        self.time = t


@kernel
def _split_rows(rounds, counts, p_slots, p_feat, split, f0, s0, f1, s1, where):
    """The rows of rounds ``0..rounds-1`` (round order) into two batches: slots below
    ``split`` into ``f0, s0``, the others into ``f1, s1``; ``where[i]`` = row ``i``'s place
    (``j`` in batch 0, ``-1 - j`` in batch 1). Returns the two row counts."""
    n0 = 0
    n1 = 0
    i = 0
    for r in range(rounds):
        for m in range(counts[r]):
            v = p_slots[r, m]
            if v < split:
                s0[n0] = v
                f0[n0] = p_feat[r, m]
                where[i] = n0
                n0 += 1
            else:
                s1[n1] = v
                f1[n1] = p_feat[r, m]
                where[i] = -1 - n1
                n1 += 1
            i += 1
    return n0, n1


@kernel
def _join_rows(n, where, h0, g0, h1, g1, oh, og):
    """The two batches' controls back into round order (inverse of :func:`_split_rows`)."""
    for i in range(n):
        j = where[i]
        if j >= 0:
            oh[i] = h0[j]
            og[i] = g0[j]
        else:
            oh[i] = h1[-1 - j]
            og[i] = g1[-1 - j]


@kernel
def _add_into(out, other, n):
    for t in range(n):
        out[t, 0] += other[t, 0]
        out[t, 1] += other[t, 1]


class OfflineEngine(Engine):
    """The engine for offline rendering: the same samples as :class:`Engine` (to float32
    rounding), computed with large batches and two threads.

    - a multi-frame instrument gets every frame of a block in one call (``max_rows`` as large
      as a block needs), so large blocks make large matrix products;
    - with ``threads=2``, the voices are split in two slot ranges with about as many active
      voices each: the instrument steps each range in its own thread (when it offers
      ``steppers(2)``: state shared, work buffers apart) and ``render_voices`` synthesises each
      range in its own thread into its own buffer; the two are added in a fixed order, so a
      render is deterministic.

    Not for live use: the worker thread and per-block hand-offs cost more than a small block.
    """

    def __init__(self, instrument: StreamingInstrument, *, block: int = 8192, threads: int = 2,
                 **kw):
        kw.setdefault("max_rows", 1 << 30)
        super().__init__(instrument, block=block, **kw)
        self.threads = max(1, min(2, int(threads)))
        self._pool = None
        self._steppers = None
        self._beside = None
        self._solo_model = False
        if self.threads > 1:
            from concurrent.futures import ThreadPoolExecutor
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="rtsynth-render")
            self._out1 = np.zeros_like(self.out)
            self._scratch1 = np.zeros_like(self.scratch)
            self._make_steppers()

    def _make_steppers(self) -> None:
        inst = self.inst
        self._steppers = None
        if self._multi_frame and hasattr(inst, "steppers"):
            self._steppers = inst.steppers(2)
            if len(self._steppers) < 2:
                self._steppers = None
                return
            M = self.max_rows
            F = inst.n_features
            self._bf = [np.zeros((M, F), np.float32) for _ in range(2)]
            self._bs = [np.zeros(M, np.int64) for _ in range(2)]
            self._bh = [np.zeros((M, self.K), np.float32) for _ in range(2)]
            self._bg = [np.zeros((M, self.B), np.float32) for _ in range(2)]
            self._where = np.zeros(M, np.int64)

    def _allocate_instrument(self) -> None:
        super()._allocate_instrument()
        if getattr(self, "_pool", None) is not None:
            self._make_steppers()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    #: the worker's share of the model's voices while it also runs a :meth:`beside` task
    #: (a file render's master chain and writing, ~0.3 ms a block): a third (measured on the
    #: bench's 187 s file: cello-lite 2.17 s, against 2.27 s for none and 2.3 s for half)
    BESIDE_SHARE = 1.0 / 3.0

    def beside(self, task) -> None:
        """``task()`` runs during the next :meth:`render`, on the worker thread, which then
        steps the model for a third of the voices (:attr:`BESIDE_SHARE`), while this one steps
        the rest (two model steps at once contend for the GIL: their many short calls each
        take it); then both threads synthesise. ``render`` returns once the task is done and
        raises what it raised. Without a worker the task runs first, on this thread. A file render gives it the
        master chain, the end detection and the writing of the block before."""
        self._beside = task

    def render(self, nframes: int | None = None) -> np.ndarray:
        task, self._beside = self._beside, None
        if task is None:
            return super().render(nframes)
        if self._pool is None:
            task()
            return super().render(nframes)
        fut = self._pool.submit(task)
        self._solo_model = True
        try:
            out = super().render(nframes)
        finally:
            self._solo_model = False
            err = fut.exception()
        if err is not None:
            raise err
        return out

    def _split_point(self, upto: int, other: float = 0.5) -> int:
        """A slot index that leaves about the share ``other`` of the active voices of ``0:upto``
        above it (the worker's), the rest below (this thread's)."""
        act = np.flatnonzero(self.active[:upto])
        if len(act) < 2:
            return upto if len(act) == 0 else int(act[0]) + 1
        mine = max(1, min(len(act), int(math.ceil(len(act) * (1.0 - other)))))
        return int(act[mine - 1]) + 1

    def _synthesize(self, n: int, out: np.ndarray) -> None:
        a = self._split_point(self.S) if self._pool is not None else self.S
        if a >= self.S or a <= 0:
            return super()._synthesize(n, out)
        out[:] = 0.0
        self.bad[:] = 0
        out1 = self._out1[:n]
        out1[:] = 0.0
        fut = self._pool.submit(self._render_slots, a, self.S, n, out1, self._scratch1)
        self._render_slots(0, a, n, out, self.scratch)
        fut.result()
        _add_into(out, out1, n)

    def _compute_frames(self, n: int) -> None:
        if self._steppers is None:
            return super()._compute_frames(n)
        rounds = self._plan(n)
        if rounds == 0:
            return
        rows = int(self._p_count[:rounds].sum())
        split = self._split_point(self.n_slots, self.BESIDE_SHARE if self._solo_model else 0.5)
        bf, bs, bh, bg = self._bf, self._bs, self._bh, self._bg
        n0, n1 = _split_rows(rounds, self._p_count, self._p_slots, self._p_feat, split,
                             bf[0], bs[0], bf[1], bs[1], self._where)
        step0, step1 = self._steppers
        fut = None
        if n1 and n0:
            fut = self._pool.submit(step1, bf[1][:n1], bs[1][:n1], bh[1][:n1], bg[1][:n1])
        elif n1:
            step0(bf[1][:n1], bs[1][:n1], bh[1][:n1], bg[1][:n1])
        if n0:
            step0(bf[0][:n0], bs[0][:n0], bh[0][:n0], bg[0][:n0])
        if fut is not None:
            fut.result()
        _join_rows(rows, self._where, bh[0], bg[0], bh[1], bg[1], self._oh, self._og)
        self._store(0, rounds)
