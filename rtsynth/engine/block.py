"""The block loop: MIDI events in, stereo audio blocks out.

One :class:`Engine` renders one block at a time, the same way live (from the generator thread,
or the JACK callback under ``--sync``) and offline (from :mod:`rtsynth.render`)::

    events (sample-stamped) -> voices (allocate, steal, sustain) and channels (bend, vibrato,
    volume, per-note expression) -> instrument.step (all voices that start a frame, one batch)
    -> render_voices (Numba) -> master chain (reverb, DC block, limiter, safety clip)

Events take effect at their sample inside the block. Each voice has its own sample clock, and
all synthesis follows it, so the output does not depend on the block size.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from .. import spec
from ..dsp.effects import MasterState, safety_clip
from ..dsp.synth import make_work, noise_layout, render_voices
from ..jit import kernel
from ..midi.messages import parse_message
from .bank import (BIG, FIELDS, count_active, end_block, kill_voices,
                   make_voices, start_voices, steal_voice)
from .channels import Channels
from .expression import control_map
from .frames import MAX_FRAME_LEVEL, make_plan, plan_frames, store_rounds

try:
    from ..instruments.base import StreamingInstrument
except ImportError:                  # before the instruments package existed
    from ..instrument import StreamingInstrument

VIBRATO_HZ = 5.5
STEAL_FADE_S = 0.004
SILENT_LEVEL = 2e-5           # a released voice below this (-94 dBFS) for a frame ends
BEND_SMOOTH_S = 0.002         # one-pole time constant of a note's own bend (MPE)
NOTE_ONS = 256                # note-ons started per kernel call
EVENTS = 4096                 # events one block takes without allocating
_STATS = ("events", "bad_messages", "late_events", "steals", "nan_voices", "clamped_frames")


@kernel
def gather_rounds(r0, r1, plan, features, slots):
    """The rows of rounds ``r0 .. r1-1`` into ``features``/``slots`` in round order; returns
    their number (a multi-frame instrument steps them in one call)."""
    o = 0
    for r in range(r0, r1):
        for m in range(plan.count[r]):
            features[o] = plan.features[r, m]
            slots[o] = plan.slot[r, m]
            o += 1
    return o


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
    mpe: ``auto`` (follow the MPE Configuration Message), ``lower``, ``upper``, ``both``, ``off``.
    control_map: what pressure, breath, CC74, CC1, CC11 drive (:mod:`rtsynth.engine.expression`).
    life: the scale of a model's own pitch movement (its ``life`` table, :mod:`rtsynth.nn.life`:
    1 the source's natural amount, 0 none); the vibrato the control map asks for deepens it.

    The per-slot state is :attr:`voices` (:class:`rtsynth.engine.bank.Voices`); its fields are
    also readable as attributes of the engine (``engine.active``, ``engine.note``...).
    """

    def __init__(self, instrument: StreamingInstrument, sample_rate: int = spec.SAMPLE_RATE,
                 block: int = 128, n_slots: int = 32, gain: float = 0.5, reverb: float = 0.12,
                 n_fade: int = 8, max_release: float = 6.0, timbre_cc: int | None = None,
                 master: bool = True, max_rows: int | None = None, mpe: str = "auto",
                 control_map=None, life: float = 1.0):
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
        #: the model takes dynamics and brightness (contract version 2)
        self.v2 = inst.n_features >= spec.N_FEATURES_V2
        self._want_rows = min(max(self.n_slots, int(max_rows or 0)), self.R * self.n_slots)
        self._allocate_instrument()
        self.voices = make_voices(S, K, B, self.R, self.block)
        self.routes = _routes(control_map)
        self.channels = Channels(self.sr, self.block, self.voices, self.n_slots, inst,
                                 timbre_cc, self.routes, self.v2, mpe)
        loops = spec.noise_tables(self.sr, B)                     # [B, L]
        self.noise_len = loops.shape[1]
        self.tables = noise_layout(loops)                        # [B, L + pad]
        self._counter = 0
        self.lfo_w = 2 * math.pi * VIBRATO_HZ / self.sr
        #: the source's own pitch movement (a model with a ``life`` table: rtsynth.nn.life);
        #: its vibrato replaces the sine LFO, whose depth rows scale it
        self.life = _life(instrument, self.sr, life)
        if self.life is not None:
            self.lfo_w = 0.0
        self.bend_coef = 1.0 - math.exp(-1.0 / (BEND_SMOOTH_S * self.sr))
        self.work = make_work(self.block, self.hop, K, B)
        self.out = np.zeros((self.block, 2), np.float32)
        self.plan = make_plan(self.R, S, inst.n_features)
        self._on_off = np.zeros(NOTE_ONS, np.int64)
        self._on_ch = np.zeros(NOTE_ONS, np.int64)
        self._on_note = np.zeros(NOTE_ONS, np.int64)
        self._on_vel = np.zeros(NOTE_ONS, np.int64)
        self._on_slot = np.zeros(NOTE_ONS, np.int64)
        self._freed = np.zeros(S, np.int64)
        self._steal_len = max(1, int(STEAL_FADE_S * self.sr))
        # the fades of a released voice that ended: silent, or held past max_release
        self._fade_silent = max(1, int(0.001 * self.sr))
        self._fade_long = max(1, int(0.05 * self.sr))
        M = self.max_rows
        self._harm_out = np.zeros((max(S, M), K), np.float32)
        self._noise_out = np.zeros((max(S, M), B), np.float32)
        self._rows_features = np.zeros((M, inst.n_features), np.float32)   # multi-frame rows
        self._rows_slots = np.zeros(M, np.int64)
        #: the instrument takes several frames of a voice per call (set False to compare)
        self._multi_frame = bool(getattr(inst, "multi_frame", False))
        self._make_views()
        self.master = MasterState(self.sr, reverb=reverb)
        self.use_master = bool(master)
        #: render() leaves the master chain to the caller (:meth:`master_block`): a file
        #: render runs it beside the next block (``OfflineEngine.beside``)
        self.defer_master = False
        self.events: deque = deque()
        self._evbuf: list = [None] * EVENTS
        self.time = 0                      # absolute sample index of the next block's first sample
        self._counts = [0] * len(_STATS)
        #: the level guard's limit on a control frame (see ``MAX_FRAME_LEVEL``)
        self.max_level = float(MAX_FRAME_LEVEL)

    def _allocate_instrument(self) -> None:
        """Allocate the instrument's slots; :attr:`max_rows`: the rows one step may get."""
        inst = self.inst
        if self._want_rows > self.n_slots and hasattr(inst, "max_rows"):
            inst.allocate(self.n_slots, max_rows=self._want_rows)
            self.max_rows = max(self.n_slots, min(self._want_rows, int(inst.max_rows)))
        else:
            inst.allocate(self.n_slots)
            self.max_rows = self.n_slots

    def _make_views(self) -> None:
        """The array views the block loop hands to the instrument, made once (a slice is an
        allocation): per row count, for a live-sized engine; a large offline one slices."""
        self._views = None
        S, R, M = self.S, self.R, self.max_rows
        self._on_views = [self._on_slot[:m] for m in range(NOTE_ONS + 1)]
        self._freed_views = [self._freed[:m] for m in range(S + 1)]
        if R * S > 4096 or M > 4096:
            return
        p = self.plan
        self._views = (
            [[p.features[r, :m] for m in range(S + 1)] for r in range(R)],
            [[p.slot[r, :m] for m in range(S + 1)] for r in range(R)],
            [self._harm_out[:m] for m in range(max(S, M) + 1)],
            [self._noise_out[:m] for m in range(max(S, M) + 1)],
            [self._rows_features[:m] for m in range(M + 1)],
            [self._rows_slots[:m] for m in range(M + 1)],
        )

    def __getattr__(self, name):
        # the voice bank's fields, read through the engine (only when not found otherwise)
        if name != "voices" and name in _VOICE_FIELDS:
            return getattr(self.voices, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def stats(self) -> dict:
        """Counters: events, bad_messages, late_events, steals, nan_voices, clamped_frames
        (control frames the level guard scaled down, see ``frames.MAX_FRAME_LEVEL``)."""
        return dict(zip(_STATS, self._counts))

    # ------------------------------------------------------------------ input
    def push(self, when: int, message) -> None:
        """Queue a raw MIDI message to take effect at absolute sample ``when``.

        Thread-safe for one producer and the rendering consumer (``deque.append`` is atomic).
        Malformed messages are counted and dropped.
        """
        msg = parse_message(message)
        if msg is None:
            self._counts[1] += 1
            return
        self.events.append((int(when), msg[0], msg[1], msg[2]))

    def steal(self, when: int, ch: int, key: int, started: int) -> None:
        """Queue the voice pool's steal (:mod:`rtsynth.host.pool`): at absolute sample
        ``when``, the sounding voice of channel ``ch``, key ``key`` that started at absolute
        sample ``started`` fades out as a stolen voice does (nothing if it has ended). An
        event like the pushed messages (its status negative), so it takes effect in order."""
        self.events.append((int(when), -1 - int(ch), int(key), int(started)))

    def set_expression_map(self, mapping) -> None:
        """What the expressive controls drive, e.g. ``{"pressure": "vibrato"}`` (a preset's
        ``[controllers]`` table); see :mod:`rtsynth.engine.expression`. Not real-time."""
        self.routes[:] = control_map(mapping)
        self.channels.reset()

    # ----------------------------------------------------------------- render
    def render(self, nframes: int | None = None) -> np.ndarray:
        """Render the next block; returns a ``[nframes, 2]`` float32 view of an internal buffer.

        Real-time contract (it runs in the generator thread, or in the JACK process callback
        under ``--sync``): after :meth:`warmup`, a block of :attr:`block` frames allocates
        nothing (preallocated event buffer, voice bank, work arrays and views; more than
        ``EVENTS`` events in one block grow the buffer once), takes no lock, does no I/O.
        """
        n = self.block if nframes is None else int(nframes)
        if n > self.block:
            raise ValueError(f"block of {n} frames is larger than the engine's {self.block}")
        t0 = self.time
        end = t0 + n
        vs = self.voices
        self.channels.begin(n)          # (the notes' rows: end_block of the block before)
        m_ev = self._take_events(end)
        buf = self._evbuf
        channels = self.channels
        apply = channels.apply
        m = 0               # note-ons queued: a run of them (a chord) starts in one call
        for i in range(m_ev):
            when, st, d1, d2 = buf[i]
            buf[i] = None
            off = when - t0
            if off < 0:
                self._counts[2] += 1
                off = 0
            if st & 0xF0 == 0x90:
                if channels.n_ops:
                    channels.flush(n)       # per-note controls sent before the note-on
                self._on_off[m] = off
                self._on_ch[m] = st & 0x0F
                self._on_note[m] = d1
                self._on_vel[m] = d2
                m += 1
                if m == NOTE_ONS:
                    self._note_ons(m, n)
                    m = 0
                continue
            if m:
                self._note_ons(m, n)
                m = 0
            if st < 0:                      # the voice pool's steal (:meth:`steal`)
                if channels.n_ops:
                    channels.flush(n)
                self._counts[3] += steal_voice(vs, self.n_slots, -1 - st, d1, d2 - t0, off,
                                               self._steal_len, self.hop)
                continue
            apply(off, st, d1, d2, n)
        if m:
            self._note_ons(m, n)
        channels.flush(n)
        self._counts[0] += m_ev
        self.channels.finish(n)
        if self.life is not None:
            self.life.block(n, vs, self.channels.rows)
        self._compute_frames(n)
        out = self.out if n == self.block else self.out[:n]
        self._synthesize(n, out)
        freed, bad = end_block(vs, self.n_slots, self._freed, self.block)
        if bad:
            self._counts[4] += bad
        if freed:
            self.inst.reset(self._freed_views[freed])
        if self.use_master:
            if not self.defer_master:
                self.master.process(out, self.gain)
        else:
            safety_clip(out, self.gain, self.master.counters)
        self.time = end
        return out

    def _take_events(self, end: int) -> int:
        """This block's events (before ``end``) into the event buffer, in time order (a
        stable insertion sort: they usually come in order); returns how many."""
        q = self.events
        buf = self._evbuf
        m = 0
        while q and q[0][0] < end:
            if m == len(buf):
                buf.extend([None] * len(buf))
            buf[m] = q.popleft()
            m += 1
        for i in range(1, m):
            e = buf[i]
            w = e[0]
            j = i - 1
            if buf[j][0] <= w:
                continue
            while j >= 0 and buf[j][0] > w:
                buf[j + 1] = buf[j]
                j -= 1
            buf[j + 1] = e
        return m

    def master_block(self, out: np.ndarray) -> None:
        """The master chain on a block ``render()`` returned with :attr:`defer_master` set, in
        place; blocks in the order they were rendered."""
        if self.use_master:
            self.master.process(out, self.gain)

    def _synthesize(self, n: int, out: np.ndarray) -> None:
        """Every voice's next ``n`` samples into ``out`` (zeroed here); ``voices.bad`` flags
        voices whose output was not finite."""
        out.fill(0.0)
        self._render_slots(0, self.S, n, out, self.work)

    def _render_slots(self, a: int, b: int, n: int, out: np.ndarray, work) -> None:
        """Synthesis of slots ``a:b``, added into ``out``."""
        render_voices(n, float(self.sr), self.hop, a, b, self.voices, self.channels.rows,
                      self.tables, self.lfo_w, work, out)

    def _note_ons(self, m: int, n: int) -> None:
        """Start the ``m`` voices queued in ``_on_*`` (in order), in one kernel call: a chord
        of 64 note-ons costs about what one did in Python."""
        c = self.channels
        r = start_voices(m, self._on_off, self._on_ch, self._on_note, self._on_vel,
                         self._on_slot, self.n_slots, self.hop, self._counter,
                         self._steal_len, self.noise_len, self.voices, n,
                         c.ctl, self.routes, self.v2, spec.DEFAULT_BRIGHTNESS)
        self._counts[3] += r - m
        self._counter += m
        self.inst.reset(self._on_views[m])

    def _kill(self, v: np.ndarray, off: int, seconds: float) -> None:
        """Fade the voices ``v`` out over ``seconds`` from block offset ``off`` (a voice already
        fading keeps its fade). Not real-time (index arrays): the player's overload relief."""
        vs = self.voices
        v = np.asarray(v, np.int64)
        v = v[vs.kill_start[v] < 0]
        vs.kill_start[v] = off
        vs.kill_pos[v] = 0
        vs.kill_len[v] = max(1, int(seconds * self.sr))
        vs.key_down[v] = False
        vs.sustained[v] = False

    # ----------------------------------------------------------------- frames
    def _compute_frames(self, n: int) -> None:
        """Run the instrument for every control frame that starts in this block, batched.

        A Numba pass lists, per round ``r``, the voices whose ``r``-th frame in this block starts
        here, with their features; each round is one ``instrument.step`` call.
        """
        rounds = self._plan(n)
        multi = rounds > 1 and self._multi_frame
        count = self.plan.count
        views = self._views
        r = 0
        while r < rounds:
            # rounds r .. q-1 go through the instrument in one call: one round, or (a
            # multi-frame instrument: several frames of a voice in one call, in order) as many
            # whole rounds as fit in max_rows rows. Kills do not touch the instrument, so the
            # output is the same either way.
            q, rows = r + 1, count.item(r)
            if multi:
                while q < rounds and rows + count.item(q) <= self.max_rows:
                    rows += count.item(q)
                    q += 1
            if q == r + 1:
                if views is not None:
                    self.inst.step(views[0][r][rows], views[1][r][rows], views[2][rows],
                                   views[3][rows])
                else:
                    self.inst.step(self.plan.features[r, :rows], self.plan.slot[r, :rows],
                                   self._harm_out[:rows], self._noise_out[:rows])
            else:
                gather_rounds(r, q, self.plan, self._rows_features, self._rows_slots)
                if views is not None:
                    self.inst.step(views[4][rows], views[5][rows], views[2][rows],
                                   views[3][rows])
                else:
                    self.inst.step(self._rows_features[:rows], self._rows_slots[:rows],
                                   self._harm_out[:rows], self._noise_out[:rows])
            self._store(r, q)
            r = q

    def _plan(self, n: int) -> int:
        """List this block's control frames per round (:attr:`plan`); returns the round count."""
        return plan_frames(n, self.hop, float(self.sr), self.n_slots, self.voices,
                           self.channels.rows, self.lfo_w, self.plan, self.v2,
                           spec.DEFAULT_BRIGHTNESS, self.bend_coef)

    def _store(self, r: int, q: int) -> None:
        """File rounds ``r .. q-1``, whose controls are in the output rows in round order."""
        c = store_rounds(r, q, self.plan, self._harm_out, self._noise_out, self.voices,
                         self.hop, self.max_release, SILENT_LEVEL, self._fade_silent,
                         self._fade_long, self.max_level)
        if c:
            self._counts[5] += c

    # ------------------------------------------------------------------ misc
    @property
    def active_voices(self) -> int:
        return count_active(self.voices, self.n_slots)

    def all_sound_off(self, off: int = 0, seconds: float = 0.03) -> None:
        """Fade every voice out (used on Ctrl-C and at the end of a render)."""
        kill_voices(self.voices, -1, off, max(1, int(seconds * self.sr)))

    def reset(self) -> None:
        """Silence and reset everything (voices, controllers, effects); keeps the clock."""
        for a, (_name, _dtype, _shape, init) in zip(self.voices, FIELDS):
            a.fill(init)
        self.inst.reset(np.arange(self.n_slots, dtype=np.int64))
        self.events.clear()
        self.channels.reset()
        self.master.reset()
        for k in range(len(self._counts)):
            self._counts[k] = 0

    def warmup(self) -> None:
        """Compile and exercise every path (notes, bend, expression, MPE, steal, fade, effects),
        then reset."""
        self.inst.warmup()
        if (getattr(self.inst, "n_slots", self.n_slots) != self.n_slots
                or getattr(self.inst, "max_rows", self.max_rows) != self.max_rows):
            self._allocate_instrument()     # its warm-up allocated slots of its own (a few)
            self._make_views()
        t = self.time
        for i in range(self.n_slots + 2):
            self.push(t + (i * 7) % self.block, (0x90, 40 + i % 40, 100))
        self.push(t + 5, (0xE0, 0, 80))
        self.push(t + 6, (0xB0, 1, 90))
        self.push(t + 7, (0xD0, 50))
        self.push(t + 8, (0xA0, 41, 70))
        self.push(t + 9, (0xB0, 2, 60))
        self.push(t + 10, (0xB0, 74, 90))
        self.push(t + 11, (0xB0, 11, 100))
        for j, m in enumerate(((0xB0, 101, 0), (0xB0, 100, 6), (0xB0, 6, 1), (0xE1, 0, 90),
                               (0xD1, 40), (0x91, 70, 90), (0xE0, 0, 30), (0xB0, 7, 110))):
            self.push(t + 12 + j, m)            # an MPE zone, a member's note and bend
        self.steal(t + 20, 0, 40, t)            # the voice pool's steal (a rack's)
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
        # the warm-up's notes are not the player's: a model's range note (nn.guard) is about
        # what is played from here on
        guard = getattr(self.inst, "guard", None)
        if guard is not None:
            guard.out_of_range = 0


_VOICE_FIELDS = frozenset(f[0] for f in FIELDS)


def _life(instrument, sr: int, scale: float):
    """The instrument's life of the source (rtsynth.nn.life), or None (none, or scale 0)."""
    cfg = getattr(instrument, "config", None)
    if not scale or not isinstance(cfg, dict) or not cfg.get("life"):
        return None
    from ..nn.life import for_instrument
    from .bank import VIBRATO_MAX_SEMITONES
    return for_instrument(instrument, sr, scale=scale, vib_full=VIBRATO_MAX_SEMITONES,
                          bend_coef=1.0 - math.exp(-1.0 / (BEND_SMOOTH_S * sr)))


def _routes(mapping):
    return control_map(mapping) if not isinstance(mapping, np.ndarray) else mapping.copy()


__all__ = ["BIG", "Engine", "gather_rounds"]
