"""Live playing: a generator thread renders ahead into a ring; the audio callback copies from it.

Real-time rules (docs/TEAM.md, 'Real-time path'), as they apply here:

- The audio callback (:meth:`Player.pull`) copies from the preallocated ring and does nothing
  else: no allocation of buffers, no locks, no logging, no torch, no MIDI parsing. It counts
  underruns in plain integers and wakes the generator through a non-blocking pipe write.
- MIDI that arrives with the audio (JACK) is stamped in the callback with its exact frame and
  handed over through a deque; the generator parses it. MIDI from other APIs is stamped with
  the host clock and mapped onto the stream's frames through the last callback's time.
- The generator keeps ``(1 + ahead)`` blocks rendered beyond what the device has taken. An event
  received at frame ``F`` is scheduled at ``F + latency``, ``latency = (1 + ahead) * block``:
  constant latency, no jitter. ``ahead = 0`` (latency one block: the generator renders the next
  block while the device plays this one, with a whole period for it) is the lowest latency a
  thread apart from the callback can give.
- A callback that finds the ring short (an underrun) plays silence and takes nothing: the stream
  pauses and goes on where it was. Latency stays the same (MIDI is placed relative to what the
  device has taken) and the generator never has to render blocks that were already due, so one
  slow block costs one gap, not a chase. Cycles the server skips (its xruns) pause it the same way.
- After a gap (a ring underrun, or a late block in sync mode) the next block fades in over
  ``GAP_FADE`` frames, and an underrun fades the last sample out instead of dropping to zero at
  once: no step, so no click. The engine's safety clip already turns non-finite samples into 0.

Latency policy (no ratchet). An underrun is *rtsynth's own* when no sign of the whole graph
being late lies within ``SERVER_GRACE`` cycles of it; the signs are the server's xrun callback,
cycles it skipped (its frame clock jumped) and a callback that came less than half a period
after the previous one (the server catching up); nor is one in the first ``STARTUP_GRACE_S``
after the client started (being wired up). Only rtsynth's own underruns render more
blocks ahead, one for each callback they left short (``--ahead auto``, up to ``ahead_max``).
After ``lower_after`` seconds (default :data:`LOWER_AFTER_S`) with no underrun of its own, one
block of latency is given back: the
callback skips one block of the ring with a ``GAP_FADE``-frame crossfade (MIDI keeps its place,
``r + latency`` does not move), and so on, one block per stable period, down to where it began.

Sync mode (JACK's default, ``--sync``) renders in the process callback: latency 0. A heavy
callback is one whose thread's CPU time (not the wall clock) was over :data:`SYNC_LOW` of the
period, and the callback over :data:`SYNC_HIGH` of it, or over SYNC_LOW and ended after it (a
late block, counted as an underrun). When the next block would be heavy too (another heavy
block within :data:`SYNC_REPEAT_S`, or the typical block over :data:`SYNC_LOAD` of the
period) the next blocks come from the ring (``ahead = 0``, latency one
block, rendered by the generator thread; further ahead after underruns there, as above). A block
late while its thread used little CPU (descheduled: a VM's stall; or late only because the graph
began the cycle late) is the machine's or the server's: counted, and rendering stays in the
callback, since the next block is no heavier. Under a steady load (the typical block over
:data:`SYNC_RING_LOAD` of the period, :data:`SYNC_RING_VOICES` voices or more) the ring takes
over before any block is late: a block in the callback is exposed to every stall of the
machine, a ring block has the whole period (``load_fallbacks``). Once the ring's blocks of :data:`SYNC_RETURN_S`
have fitted (1% at most over SYNC_LOW of a period, one in :data:`SYNC_SPIKES` over SYNC_HIGH),
the load is light again (:data:`SYNC_RING_BACK`, or fewer voices), with no underrun of its own, the ring is drained (the generator stops, the callback plays what
is left, MIDI keeps its place) and rendering returns into the callback: straight from however
far ahead the ring had gone, not one block per stable period first. A fallback within
``lower_after`` of the last return doubles the period the ring must fit for (up to
``lower_after``: a machine too slow for the callback does not flap every half second); a
``lower_after`` in the callback without one sets it back to SYNC_RETURN_S. Events never change
order across a switch (:meth:`midi_at_frame` keeps their times non-decreasing).

Overload: when the generator's time per block stays above :data:`SHED_HIGH` of the period
(an exponential average over about ten blocks), the quietest voices are faded out over 10 ms
(released voices first, then held ones), as many as should bring a block to
:data:`SHED_TARGET` of the period, before the overload costs more blocks (``shed_voices``).

``RTSYNTH_TEST_STALL=EVERY:MS[:UNTIL]`` (tests only) sleeps MS milliseconds every EVERY-th
block where the block is rendered (generator thread, or the callback in sync mode), to force
underruns; with UNTIL, only in the first UNTIL blocks. ``RTSYNTH_TEST_VOICE_US=US`` sleeps US
microseconds per sounding voice per block (a simulated heavy instrument, for overload tests).
"""

from __future__ import annotations

import os
import select
import sys
import threading
import time
from collections import deque

import numpy as np

from ..engine import Engine


#: SCHED_FIFO priority of the generator thread (and the engine's worker): below the JACK clients'
#: process threads (5: the server's 10 less 5), never equal. At 5 the generator and the worker,
#: on both cores, kept every client's process thread waiting (FIFO threads of one priority do
#: not preempt each other): xruns blamed on rtsynth even while its callback only copied
GENERATOR_RT_PRIORITY = 4
GAP_FADE = 64      # frames of fade in/out around a gap
from .drivers import LOWER_AFTER_S  # noqa: E402  (--lower-after's default; see there)
#: cycles either side of a sign of a server-wide xrun within which an underrun is the server's
SERVER_GRACE = 8
#: the first callbacks after the client starts run while it is being wired up (ports connected,
#: the main thread holding the GIL for the banner): lateness there (seen on a loaded VM in the
#: first 40 ms) says nothing about whether blocks fit. For this long after the first callback an
#: underrun or a late block is not rtsynth's own: it raises no latency and, in sync mode, does not
#: send the blocks to the ring (counted in ``server_underruns``)
STARTUP_GRACE_S = 0.5
#: sync mode: a block that took more than this fraction of the period goes to the ring
SYNC_HIGH = 0.85
#: ... and rendering returns into the callback after a stable period in which at most 1% of
#: the blocks took more than SYNC_LOW of a period and at most one in SYNC_SPIKES more than
#: SYNC_HIGH: a machine that stalls now and then (a VM) would otherwise never return, and such
#: a stall costs the ring (one block ahead) a gap too
SYNC_LOW = 0.5
SYNC_SPIKES = 2000
#: ... after this many seconds of ring blocks that fit (doubled each time it falls back again
#: within ``lower_after`` of a return, up to ``lower_after``; back to this once a ``lower_after``
#: in the callback passes without a fallback). A block that took long while its thread used
#: little CPU (under SYNC_LOW of the period: the machine took the CPU away, a VM's stall, or
#: the graph was late; not a heavy block) is the machine's lateness, not rtsynth's own: the
#: next block is no heavier, so rendering stays in the callback
SYNC_RETURN_S = 0.5
#: ... and a heavy block sends the next ones to the ring only when the next would be late
#: too: another heavy block came within SYNC_REPEAT_S before it, or the typical block (an
#: average of block times each counted at most as one period, so one spike moves it by a
#: tenth) takes more than SYNC_LOAD of the period. A one-off spike (measured on this VM: 7-11
#: ms of thread CPU time in a one-voice block, every few seconds under load; the kernel
#: charges interrupts to the thread that was running) has cost its dropout already: the ring,
#: a block ahead, would not have absorbed it, and would cost a block of latency for a while
SYNC_REPEAT_S = 0.25
SYNC_LOAD = 0.5
#: ... and, before any block is late, the ring takes over under a steady load: when the
#: typical block (an average over about ten blocks, each counted at most as twice this)
#: takes more than SYNC_RING_LOAD of the period with at least SYNC_RING_VOICES sounding.
#: Rendering in the callback puts the whole block under the server's deadline: every stall
#: of the machine during it (a VM's, several a minute here) is an xrun the server blames on
#: rtsynth, and the longer the block the more of them land in it (32 held voices in the
#: callback: DSP 23% against FluidSynth's 9%, 3 blamed xruns in 60 s against 0). From the
#: ring the callback only copies, and the generator has the whole period. Rendering comes
#: back into the callback (as after a fallback) once the ring's typical block is under
#: SYNC_RING_BACK or fewer voices sound: light playing (a melody, a few voices) keeps the
#: callback's latency 0
SYNC_RING_LOAD = 0.06
SYNC_RING_BACK = 0.04
SYNC_RING_VOICES = 12
#: blocks rendered ahead when the ring takes over from a typical block over SYNC_LOAD (a heavy
#: load: 192 held voices; with none in hand, a stall of half a period was a gap)
SYNC_HEAVY_AHEAD = 1
#: shed voices when the generator's average time per block is above this fraction of a period
SHED_HIGH = 0.9
SHED_EMA = 0.1     # weight of one block in that average (about 10 blocks, 27 ms at 128)
#: ... each block counted at most as this many periods: one spike is not an overload (a 20 ms
#: block at 128 frames, 7.4 periods, lifted the average over SHED_HIGH alone and shed 120 of 160
#: held voices); five blocks in a row over it are
SHED_CLAMP = 2.0
#: ... and shed as many as should bring a block down to this fraction
SHED_TARGET = 0.7
SHED_FADE_S = 0.01  # a shed voice's fade-out

MODE_SYNC, MODE_RING, MODE_DRAIN = 0, 1, 2
#: the policy's trace (Player.stats()["policy_trace"]): what each row holds; ``what`` is one of
#: TRACE_WHAT's keys; own/used/cpu in periods; ``xrun_cbs``: callbacks since the last sign of a
#: server-wide xrun; ``clock``: the server's frame clock at the cycle's start (JACK; else -1)
TRACE_FIELDS = ("cb", "what", "own", "used", "cpu", "start", "xrun_cbs", "mode", "clock")
TRACE_WHAT = {1: "slow", 2: "late", 3: "fallback", 4: "return", 5: "own_underrun",
              6: "server_underrun", 7: "drain", 8: "gc", 9: "ring_slow", 10: "late_own",
              11: "load_fallback"}
TRACE_ROWS = 512
MODE_NAMES = {MODE_SYNC: "sync", MODE_RING: "ring", MODE_DRAIN: "drain"}
#: the cycle log (``Player.cycle_log``): one row per audio callback, the last CYCLE_ROWS kept
#: (~175 s at 128 frames, 48 kHz): what the device played where, exactly
CYCLE_ROWS = 1 << 16
CYCLE_FIELDS = ("clock", "stream", "latency", "out", "flags", "frames", "midi")
#: flags: the block was faded in (GAP_FADE frames of the ramp), silence (an underrun: the
#: stream did not advance), a block of latency given back (crossfaded over GAP_FADE frames)
CYCLE_FADE, CYCLE_SILENT, CYCLE_LOWER = 1, 2, 4


from .sched import MAIN_RT_PRIORITY, ordinary_thread, realtime_thread  # noqa: E402,F401


def _test_stall() -> tuple[int, float, int]:
    v = os.environ.get("RTSYNTH_TEST_STALL", "")
    try:
        parts = v.split(":")
        until = int(parts[2]) if len(parts) > 2 else 0
        return max(int(parts[0]), 0), float(parts[1]) / 1e3, until
    except (ValueError, IndexError):
        return 0, 0.0, 0


def _test_voice_s() -> float:
    try:
        return max(float(os.environ.get("RTSYNTH_TEST_VOICE_US", "0")), 0.0) / 1e6
    except ValueError:
        return 0.0


def shed_quietest(engine: Engine, n: int = 1, seconds: float = 0.01) -> np.ndarray:
    """Fade out the ``n`` quietest sounding voices over ``seconds``: released ones first
    (quietest first), then held ones; returns their slots. Generator thread (it changes voice
    state); it allocates (small index arrays), so it runs only when the load is too high."""
    own = getattr(engine, "shed_quietest", None)      # a rack: across all its instruments
    if own is not None:
        return np.zeros(int(own(n, seconds)), np.int64)
    ns = engine.n_slots
    act = (engine.active[:ns] != 0) & (engine.kill_start[:ns] < 0)
    held = engine.key_down[:ns] | engine.sustained[:ns]
    # order: released before held, then by level
    key = engine.level[:ns].astype(np.float64) + np.where(held, 1e6, 0.0)
    cand = np.flatnonzero(act)
    v = cand[np.argsort(key[cand], kind="stable")[:max(0, int(n))]]
    if len(v):
        engine._kill(v.astype(np.int64), 0, seconds)
    return v


class Player:
    """Owns the ring, the generator thread and the counters of one live stream."""

    def __init__(self, engine: Engine, ahead: int = 1, host_margin: int = 0,
                 stats_capacity: int = 1 << 20, sync: bool = False,
                 ahead_max: int | None = None, lower_after: float = LOWER_AFTER_S,
                 shed: bool = True):
        self.engine = engine
        self.block = engine.block
        #: the sync mode was asked for: rendering happens in the callback whenever it fits
        self.sync = bool(sync)
        self.mode = MODE_SYNC if self.sync else MODE_RING
        self.ahead = 0 if self.sync else int(ahead)
        #: adaptive: each underrun of rtsynth's own renders one block more ahead, up to
        #: ``ahead_max``; given back one block per ``lower_after`` stable seconds
        self.ahead_max = max(self.ahead, int(ahead_max if ahead_max is not None else ahead))
        self._ahead0 = self.ahead
        #: MIDI is placed this far after its frame, and the ring is kept this full: in sync
        #: mode 0, else ``(1 + ahead)`` blocks
        self.latency_frames = 0 if self.sync else (1 + self.ahead) * self.block
        self.latency_start = self.latency_frames
        #: events from host-clock sources get this many frames more, for the clock's uncertainty
        self.host_margin = int(host_margin)
        cap = 1
        while cap < (1 + self.ahead_max) * self.block + 4 * self.block:
            cap <<= 1
        self.cap = cap
        self.ring = np.zeros((2, cap), np.float32)
        self.w = 0                 # frames written (engine time of the next block to render)
        self.r = 0                 # frames taken by the device
        self.underruns = 0         # callbacks that found too little audio (or late sync blocks)
        self.underrun_frames = 0
        self.own_underruns = 0     # ... of them rtsynth's own lateness
        self.server_underruns = 0  # ... of them next to a server-wide xrun
        self.callbacks = 0
        self.xruns = 0             # reported by the audio server (JACK)
        self.latency_raises = 0
        self.latency_lowers = 0
        self.sync_fallbacks = 0    # sync -> ring
        self.sync_returns = 0      # ring -> sync
        self.shed_voices = 0
        self.notes_released = 0    # all-notes-off sent for a source that went away
        self._cycle_clock: int | None = None     # server clock at this cycle's first frame
        self._next_clock: int | None = None      # ... and where the next cycle should start
        self.skipped_frames = 0    # frames the server skipped (its xruns); the ring pauses
        self.midi_in: deque = deque()        # (engine sample, bytes) from any thread
        self._last_when = 0        # the latest time given to a callback MIDI event
        self.last_cb_time = 0.0    # host clock at the last callback
        self.last_cb_frame = 0     # its first frame, in engine time
        self.gen_ms = np.zeros(stats_capacity, np.float32)
        self.blocks = 0
        self._rfd, self._wfd = os.pipe()
        os.set_blocking(self._wfd, False)
        os.set_blocking(self._rfd, False)
        self._stop = False
        self._fade_at: int | None = None     # engine time where the final fade starts
        self._fade_len = int(0.08 * engine.sr)
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.realtime = False      # the generator thread got real-time scheduling
        self.late_blocks = 0       # sync mode: blocks that ended after their period
        self.own_late_blocks = 0   # ... of them rtsynth's own lateness (in own_underruns too)
        self._cycle_used = 0.0     # seconds of the period gone when the callback began
        self._budget = self.block / engine.sr
        n = min(GAP_FADE, self.block)
        self._ramp_up = ((np.arange(n) + 1) / (n + 1)).astype(np.float32)
        self._ramp_down = self._ramp_up[::-1].copy()
        self._xf = np.zeros(n, np.float32)
        self._gap = False          # the last callback left a gap: fade the next block in
        self._last = np.zeros(2, np.float32)     # the last sample sent, per channel
        # the policy's clocks, in callbacks
        per_s = engine.sr / self.block
        self.lower_after = float(lower_after)
        self._lower_cbs = max(1, int(round(self.lower_after * per_s)))
        #: ring blocks that must fit before sync returns (SYNC_RETURN_S, doubled on flapping)
        self._return_base = min(self._lower_cbs, max(1, int(round(SYNC_RETURN_S * per_s))))
        self._return_cbs = self._return_base
        self._returned_cb = -(1 << 40)  # the last return into the callback
        self._repeat_cbs = max(1, int(round(SYNC_REPEAT_S * per_s)))
        self._heavy_cb = -(1 << 40)     # the last heavy sync block
        self._typ = 0.0                 # the typical block's share of the period (SYNC_LOAD)
        self._steady = 0.0              # ... each block counted at most 2 * SYNC_RING_LOAD
        self._voices = 0                # voices sounding after the last block
        self.load_fallbacks = 0         # sync -> ring under a steady load (of sync_fallbacks)
        self._startup_cbs = int(round(STARTUP_GRACE_S * per_s))
        self._server_late_cb = -(1 << 40)   # the last sign of a server-wide xrun
        self._pending_cb = 0       # an underrun not yet classified (its callback number)
        self._pending_n = 0        # underruns since then (classified with it)
        self._last_own_cb = 0      # the last underrun of rtsynth's own
        self._last_change_cb = 0   # the last latency or mode change
        # ring blocks since the window began, of them over SYNC_LOW and over SYNC_HIGH of a
        # period (counted by the generator, reset by the callback)
        self._win_n = self._win_low = self._win_high = 0
        self._gen_busy = False     # the generator is inside a block (see _run)
        self.shed = bool(shed)
        self._load = 0.0           # average generator time per block / period
        self._last_load = 0.0      # the last block's
        self._shed_hold = 0        # no shedding before this block (the last shed still fades)
        self._shed_fade_blocks = int(SHED_FADE_S * engine.sr / self.block) + 1
        self._stall_every, self._stall_s, self._stall_until = _test_stall()
        self._voice_s = _test_voice_s()
        #: the policy's trace: one row per slow or late sync block, fallback, return and
        #: classified ring underrun (``TRACE_FIELDS``), the first ``TRACE_ROWS`` kept
        self._trace = np.zeros((TRACE_ROWS, len(TRACE_FIELDS)), np.float64)
        self._trace_n = 0
        #: one row per callback (CYCLE_FIELDS): the server's clock at its first frame (-1
        #: without one), the stream frame its MIDI was placed from and the latency added, the
        #: stream frame its output began at (-1: silence) and what was done to it
        self._cycles = np.zeros((CYCLE_ROWS, len(CYCLE_FIELDS)), np.int64)
        self._cycles_n = 0
        self._cyc = np.zeros(len(CYCLE_FIELDS), np.int64)     # this callback's row so far

    # ----------------------------------------------------------- audio thread
    def begin_cycle(self, clock: int | None = None, used_frames: int = 0) -> None:
        """Start of an audio cycle, before its MIDI is read. Audio callback only.

        ``clock``: the server's frame counter at this cycle's first frame (JACK). Cycles the
        server skipped (its xruns) are counted in ``skipped_frames``; the ring does not skip
        them: the stream pauses and goes on where it was (faded in), as after an underrun, so
        the generator never has to catch up with blocks that were already due. Latency stays
        what it was: MIDI is placed relative to what the device has taken (``r``), not to the
        server's clock. ``used_frames``: how much of the period was gone when the callback
        began (sync mode's deadline).
        """
        self._cycle_used = used_frames / self.engine.sr
        cb = self.callbacks + 1            # this cycle's number (pull/render_now count it)
        if clock is not None:
            if self._next_clock is not None:
                gap = (clock - self._next_clock) & 0xFFFFFFFF
                if 0 < gap < (1 << 30):
                    self.skipped_frames += gap
                    self._gap = True
                    self._server_late_cb = cb
            self._cycle_clock = clock
        now = time.perf_counter()
        if self.callbacks and now - self.last_cb_time < 0.5 * self._budget:
            self._server_late_cb = cb      # back to back: the server catching up
        if (self.mode == MODE_DRAIN and self.w <= self.r and not self._gen_busy):
            # the ring is empty and the generator idle: render in the callback from here on
            # (straight from however far ahead the ring had gone: its blocks are given back)
            self.mode = MODE_SYNC
            self._returned_cb = cb
            self.latency_lowers += self.ahead
            self.ahead = 0
            self.latency_frames = 0
            self.sync_returns += 1
            self._last_change_cb = cb
            self._note(4)
        self.last_cb_frame = self.r
        self.last_cb_time = now
        row = self._cyc
        row[0] = -1 if clock is None else clock
        row[1] = self.r
        row[2] = self.latency_frames
        row[4] = 0
        row[6] = 0

    def cycle(self, left: np.ndarray, right: np.ndarray, frames: int) -> None:
        """This cycle's audio: rendered here (sync) or copied from the ring."""
        if self.mode == MODE_SYNC:
            self.render_now(left, right, frames)
        else:
            self.pull(left, right, frames)
        row = self._cyc
        row[5] = frames
        self._cycles[self._cycles_n % CYCLE_ROWS] = row
        self._cycles_n += 1

    def cycle_log(self) -> np.ndarray:
        """The last :data:`CYCLE_ROWS` callbacks, oldest first: ``[n, 7]`` int64 rows of
        :data:`CYCLE_FIELDS` (any thread; a row being written may be torn: the newest is left
        out). A take recorded from the server's ports maps onto the stream through it: frame
        ``clock + i`` of a callback is stream frame ``out + i`` (faded in or crossfaded over
        its first ``GAP_FADE`` frames as its flags say; silence where ``out`` is -1), and a
        MIDI event at ``clock + i`` was placed at stream frame ``stream + i + latency``
        (never before the one placed before it); ``midi``: the messages that callback got.
        Frames in no callback's rows are frames the server skipped for this client: its MIDI
        there never reached it."""
        n = self._cycles_n - 1
        k = min(n, CYCLE_ROWS - 1)
        idx = np.arange(n - k, n) % CYCLE_ROWS
        return self._cycles[idx].copy()

    def _ring_read(self, dst: np.ndarray, ch: int, pos: int, n: int) -> None:
        i = pos & (self.cap - 1)
        k = min(n, self.cap - i)                   # frames before the ring wraps
        dst[:k] = self.ring[ch, i:i + k]
        dst[k:n] = self.ring[ch, : n - k]

    def _classify(self, cb: int) -> None:
        """An underrun at callback ``cb``, once ``SERVER_GRACE`` cycles have passed."""
        n, self._pending_n = self._pending_n, 0
        if abs(cb - self._server_late_cb) <= SERVER_GRACE or cb <= self._startup_cbs:
            self.server_underruns += n
            self._note(6, float(n))
            return
        self._note(5, float(n))
        self.own_underruns += n
        self._last_own_cb = cb
        self._win_n = self._win_low = self._win_high = 0     # the stable period starts again
        # a stall that emptied the ring at k callbacks needed k blocks more in hand
        k = min(n, self.ahead_max - self.ahead) if self.mode == MODE_RING else 0
        if k > 0:
            self.ahead += k
            self.latency_frames += k * self.block
            self.latency_raises += k
            self._last_change_cb = cb

    def pull(self, left: np.ndarray, right: np.ndarray, frames: int) -> None:
        """Copy ``frames`` frames into the two output buffers, then wake the generator.

        Call :meth:`begin_cycle` and hand over this cycle's MIDI first: the generator may start
        on the next block the moment it is woken. Audio callback only.
        """
        r = self.r
        self.callbacks += 1
        cb = self.callbacks
        if self._cycle_clock is not None:
            self._next_clock = (self._cycle_clock + frames) & 0xFFFFFFFF
        if self._pending_cb and cb - self._pending_cb > SERVER_GRACE:
            self._classify(self._pending_cb)
            self._pending_cb = 0
        if (self.sync and self.mode == MODE_RING and self._typ > SYNC_LOAD
                and self.ahead < min(SYNC_HEAVY_AHEAD, self.ahead_max)):
            # a heavy load in the ring (the typical block over SYNC_LOAD): a block in hand
            self.ahead += 1
            self.latency_frames += self.block
            self.latency_raises += 1
            self._last_change_cb = cb
        avail = self.w - r
        stable = (cb - self._last_own_cb >= self._lower_cbs
                  and cb - self._last_change_cb >= self._lower_cbs and not self._pending_cb)
        if (stable and self.mode == MODE_RING and self.ahead > self._ahead0 and not self.sync
                and avail >= frames + self.block and not self._gap):
            # give one block of latency back: skip it, crossfaded; r + latency stays put
            n = len(self._xf)
            for ch, out in ((0, left), (1, right)):
                self._ring_read(out, ch, r + self.block, frames)
                self._ring_read(self._xf, ch, r, n)
                out[:n] *= self._ramp_up
                self._xf *= self._ramp_down
                out[:n] += self._xf
            self._cyc[3] = r + self.block
            self._cyc[4] = CYCLE_LOWER
            self.r = r + self.block + frames
            self.ahead -= 1
            self.latency_frames -= self.block
            self.latency_lowers += 1
            self._last_change_cb = cb
        elif avail >= frames:
            self._ring_read(left, 0, r, frames)
            self._ring_read(right, 1, r, frames)
            self.r = r + frames
            self._cyc[3] = r
            if self._gap:
                self._cyc[4] = CYCLE_FADE
                self._fade_in(left, right)
            need = self._return_cbs
            if (self.mode == MODE_RING and self.sync and not self._pending_cb
                    and cb - self._last_own_cb >= need and cb - self._last_change_cb >= need):
                n = self._win_n
                light = self._steady <= SYNC_RING_BACK or self._voices < SYNC_RING_VOICES
                if light and self._win_high * SYNC_SPIKES <= n and self._win_low * 100 <= n:
                    self.mode = MODE_DRAIN     # back into the callback once the ring is empty
                    self._note(7)
                else:
                    self._win_n = self._win_low = self._win_high = 0  # still too slow: watch
                    self._last_change_cb = cb                         # another period
        else:
            # silence, reached through a short ramp from the last sample sent (no step)
            n = min(len(self._ramp_down), frames)
            for ch, out in ((0, left), (1, right)):
                out.fill(0.0)
                out[:n] = self._ramp_down[:n]
                out[:n] *= self._last[ch]
            self._gap = True
            self._cyc[3] = -1
            self._cyc[4] = CYCLE_SILENT
            if not self._stop:      # after stop() the ring runs dry on purpose: not counted
                self.underruns += 1
                self.underrun_frames += frames
                if not self._pending_cb:
                    self._pending_cb = cb
                self._pending_n += 1
        self._last[0] = left[frames - 1]
        self._last[1] = right[frames - 1]
        try:
            os.write(self._wfd, b"\0")
        except (BlockingIOError, OSError):
            pass

    def render_now(self, left: np.ndarray, right: np.ndarray, frames: int) -> None:
        """Sync mode: render this cycle's block here, its MIDI applied at the exact frames.

        The whole generator runs in the audio thread: the block must be done within the period.
        A block that took more than ``SYNC_HIGH`` of it sends the next ones to the ring.
        Audio callback only.
        """
        eng = self.engine
        q = self.midi_in
        t = time.perf_counter()
        c = time.thread_time()
        self.callbacks += 1
        if self._cycle_clock is not None:
            self._next_clock = (self._cycle_clock + frames) & 0xFFFFFFFF
        while q:
            when, data = q.popleft()
            eng.push(when, data)
        self._before_block()
        out = eng.render(frames)
        if self._fade_at is not None:
            self._apply_fade(out)
        work = self._test_delay()
        left[:] = out[:, 0]
        right[:] = out[:, 1]
        self._cyc[3] = self.w
        if self._gap:
            self._cyc[4] = CYCLE_FADE
            self._fade_in(left, right)
        t1 = time.perf_counter()
        cpu = (time.thread_time() - c + work) / self._budget    # what the block's work took
        self._after_block(t1 - t)
        self.w += frames
        self.r = self.w
        own = (t1 - self.last_cb_time) / self._budget      # this callback's share
        used = own + self._cycle_used / self._budget       # ... after the graph before it
        # slow with the CPU taken away (descheduled: a VM's stall), not a heavy block
        machine = cpu < SYNC_LOW
        if used > 1.0 or own > SYNC_HIGH:
            own_late = (used > 1.0 and own > SYNC_LOW and self.callbacks > self._startup_cbs
                        and not machine)
            self._note(10 if own_late else 2 if used > 1.0 else 1, own, used, cpu)
        if used > 1.0:
            # too late for this period: the server reports an xrun and this block is not heard
            # where it belongs; count it, and fade the next one in. rtsynth's own lateness when
            # its block alone took most of the period; else the graph began the cycle late
            self.late_blocks += 1
            self.underruns += 1
            self.underrun_frames += frames
            self._gap = True
            if own > SYNC_LOW and self.callbacks > self._startup_cbs and not machine:
                self.own_underruns += 1
                self.own_late_blocks += 1
                self._last_own_cb = self.callbacks
            else:
                self.server_underruns += 1
        heavy = (self.callbacks > self._startup_cbs and not machine
                 and (own > SYNC_HIGH or (used > 1.0 and own > SYNC_LOW)))
        if heavy:
            again = self.callbacks - self._heavy_cb <= self._repeat_cbs
            self._heavy_cb = self.callbacks
            heavy = again or self._typ > SYNC_LOAD
        steady = (not heavy and self.callbacks > self._startup_cbs
                  and self._steady > SYNC_RING_LOAD and self._voices >= SYNC_RING_VOICES)
        if steady:
            self.load_fallbacks += 1
        if heavy or steady:
            # the next block would be late too (or the load is steady: SYNC_RING_LOAD):
            # render it ahead, in the generator, for SYNC_RETURN_S (longer when it falls
            # back again soon after coming back)
            if self.callbacks - self._returned_cb < self._lower_cbs:
                self._return_cbs = min(2 * self._return_cbs, self._lower_cbs)
            else:
                self._return_cbs = self._return_base
            self.mode = MODE_RING
            # a typical block over SYNC_LOAD of the period: a block in hand as well, so that
            # a stall of the machine up to a period more costs no gap (SYNC_HEAVY_AHEAD)
            self.ahead = min(SYNC_HEAVY_AHEAD, self.ahead_max) if self._typ > SYNC_LOAD else 0
            self.latency_frames = (1 + self.ahead) * self.block
            self.sync_fallbacks += 1
            self._win_n = self._win_low = self._win_high = 0
            self._last_change_cb = self.callbacks
            self._note(11 if steady else 3, own, used, cpu)
            try:
                os.write(self._wfd, b"\0")
            except (BlockingIOError, OSError):
                pass

    def _note(self, what: int, own: float = 0.0, used: float = 0.0, cpu: float = 0.0) -> None:
        """One row of the policy's trace (any audio-path thread; no allocation)."""
        i = self._trace_n
        if i < TRACE_ROWS:
            row = self._trace[i]
            row[0] = self.callbacks
            row[1] = what
            row[2] = own
            row[3] = used
            row[4] = cpu
            row[5] = self._cycle_used / self._budget
            row[6] = self.callbacks - self._server_late_cb
            row[7] = self.mode
            row[8] = -1 if self._cycle_clock is None else self._cycle_clock
            self._trace_n = i + 1

    def _fade_in(self, left: np.ndarray, right: np.ndarray) -> None:
        n = min(len(self._ramp_up), len(left))
        left[:n] *= self._ramp_up[:n]
        right[:n] *= self._ramp_up[:n]
        self._gap = False

    def server_xrun(self) -> None:
        """The server reported an xrun (any thread): count it; the next block fades in, since
        what the server played around it is not what was rendered."""
        self.xruns += 1
        self._gap = True
        self._server_late_cb = self.callbacks + 1

    def midi_at_frame(self, offset: int, data) -> None:
        """A MIDI message at ``offset`` frames into the current callback. Audio callback only.

        Times never go backwards (a switch from the ring to sync lowers the latency)."""
        when = self.last_cb_frame + offset + self.latency_frames
        if when < self._last_when:
            when = self._last_when
        self._last_when = when
        self.midi_in.append((when, bytes(data)))
        self._cyc[6] += 1

    def midi_now(self, data) -> None:
        """A MIDI message that arrived just now (host clock): from rtmidi or the keyboard."""
        dt = time.perf_counter() - self.last_cb_time
        frame = self.last_cb_frame + int(dt * self.engine.sr)
        self.midi_in.append((frame + self.latency_frames + self.host_margin, bytes(data)))

    def release_all(self) -> None:
        """A MIDI source went away (any thread): sustain off and all notes off on every
        channel, so nothing it held keeps sounding; the notes' releases play as usual."""
        when = max(self.r + self.latency_frames, self._last_when)
        self.midi_in.extend((when, bytes((0xB0 | ch, cc, 0)))
                            for ch in range(16) for cc in (64, 123))
        self.notes_released += 1

    # ------------------------------------------------------- generator thread
    def prefill(self) -> None:
        if self.mode == MODE_RING:
            self._render_until(self.latency_frames)

    def _test_delay(self) -> float:
        """The tests' simulated heavy blocks; returns the seconds slept (the block's own work,
        as far as telling it from the machine's lateness goes)."""
        s = 0.0
        if self._stall_every and self.blocks % self._stall_every == self._stall_every - 1 and \
                (not self._stall_until or self.blocks < self._stall_until):
            s += self._stall_s
        if self._voice_s:
            s += self._voice_s * self.engine.active_voices
        if s:
            time.sleep(s)
        return s

    def _before_block(self) -> None:
        if self.shed and self._load > SHED_HIGH and self.blocks >= self._shed_hold:
            # as many voices as should bring the last block's time down to SHED_TARGET of the
            # period (the cost of a block is about proportional to its voices), one at least
            act = self.engine.active_voices
            last = min(self._last_load, SHED_CLAMP)
            k = max(1, int(act * (1.0 - SHED_TARGET / max(last, SHED_HIGH)) + 0.5))
            k = min(k, max(1, act // 2))
            self.shed_voices += len(shed_quietest(self.engine, k, SHED_FADE_S))
            # judge again once the fades have ended and the average has seen blocks without
            self._shed_hold = self.blocks + self._shed_fade_blocks + int(1 / SHED_EMA)
            self._load = SHED_TARGET

    def _after_block(self, dt: float) -> None:
        ms = dt * 1e3
        self.gen_ms[self.blocks % len(self.gen_ms)] = ms
        self.blocks += 1
        self._last_load = dt / self._budget
        self._load += SHED_EMA * (min(self._last_load, SHED_CLAMP) - self._load)
        self._typ += SHED_EMA * (min(self._last_load, 1.0) - self._typ)
        self._steady += SHED_EMA * (min(self._last_load, 2.0 * SYNC_RING_LOAD) - self._steady)
        self._voices = self.engine.active_voices
        if self.mode == MODE_RING:
            self._win_n += 1
            if dt > SYNC_LOW * self._budget:
                self._win_low += 1
                if dt > SYNC_HIGH * self._budget:
                    self._win_high += 1

    def _render_until(self, target_w: int) -> None:
        eng = self.engine
        q = self.midi_in
        while self.w < target_w and self.mode == MODE_RING:
            while q:
                when, data = q.popleft()
                eng.push(when, data)
            t = time.perf_counter()
            c = time.thread_time()
            self._before_block()
            out = eng.render()
            if self._fade_at is not None:
                self._apply_fade(out)
            self._test_delay()
            i = self.w & (self.cap - 1)
            k = min(self.block, self.cap - i)          # frames before the ring wraps
            self.ring[:, i:i + k] = out[:k].T
            self.ring[:, : self.block - k] = out[k:].T
            dt = time.perf_counter() - t
            self._after_block(dt)
            if dt > SYNC_HIGH * self._budget:
                self._note(9, dt / self._budget, 0.0, (time.thread_time() - c) / self._budget)
            self.w += self.block

    def _apply_fade(self, out: np.ndarray) -> None:
        start = self.w - self._fade_at
        g = 1.0 - (np.arange(start, start + len(out)) / self._fade_len)
        np.clip(g, 0.0, 1.0, out=g)
        out *= g[:, None].astype(np.float32)

    def _run(self) -> None:
        if sys.platform.startswith("linux"):
            # Real-time scheduling below the JACK clients' process threads (GENERATOR_RT_PRIORITY),
            # where the system allows it (root, or the audio group's rtprio limit); else a
            # little priority over other user threads. It sleeps whenever the ring is full.
            tid = threading.get_native_id()
            try:
                os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(GENERATOR_RT_PRIORITY))
                self.realtime = True
            except (OSError, AttributeError):
                try:
                    os.setpriority(os.PRIO_PROCESS, tid, -5)
                except OSError:
                    pass
        try:
            while not self._stop:
                # busy first, then the mode: the callback sets the mode first, then reads busy
                # (see begin_cycle), so the two never render at once
                self._gen_busy = True
                if self.mode == MODE_RING:
                    self._render_until(self.r + self.latency_frames)
                self._gen_busy = False
                ready, _, _ = select.select([self._rfd], [], [], 0.002)
                if ready:
                    try:
                        os.read(self._rfd, 4096)
                    except BlockingIOError:
                        pass
        except BaseException as e:      # reported by the main thread
            self._gen_busy = False
            self.error = e

    def _gc_seen(self, phase: str, info: dict) -> None:
        """gc.callbacks: a collector pass while playing, into the policy's trace (``own``: its
        generation, ``used``: milliseconds, ``cpu``: objects collected)."""
        if phase == "start":
            self._gc_t = time.perf_counter()
        else:
            self.gc_passes += 1
            self._note(8, float(info.get("generation", -1)),
                       (time.perf_counter() - self._gc_t) * 1e3, float(info.get("collected", 0)))

    def start(self) -> None:
        import gc
        self.gc_passes = 0
        self._gc_t = 0.0
        gc.callbacks.append(self._gc_seen)
        # also in sync mode: the generator takes over while blocks do not fit in the callback
        self._thread = threading.Thread(target=self._run, name="rtsynth-generator", daemon=True)
        self._thread.start()

    def fade_out(self, voices_seconds: float = 0.05, timeout: float = 1.0) -> None:
        """Fade every voice and then the whole output to silence; return once it has played."""
        self.midi_in.extend((self.w, bytes((0xB0 | ch, 120, 0))) for ch in range(16))
        self._fade_at = self.w + int(voices_seconds * self.engine.sr)
        end = self._fade_at + self._fade_len + self.latency_frames
        t0 = time.monotonic()
        while self.r < end and time.monotonic() - t0 < timeout and self.error is None:
            time.sleep(0.005)

    def stop(self) -> None:
        import gc
        if self._gc_seen in gc.callbacks:
            gc.callbacks.remove(self._gc_seen)
        self._stop = True
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        for fd in (self._rfd, self._wfd):
            try:
                os.close(fd)
            except OSError:
                pass
        if self._pending_cb:
            self._classify(self._pending_cb)
            self._pending_cb = 0

    def summary(self, last_blocks: int | None = None) -> dict:
        """Counters and generator times (all blocks, or the last ``last_blocks``), cheaply, from
        any non-real-time thread while the stream runs."""
        b = self.blocks
        cap = len(self.gen_ms)
        n = min(b, cap) if last_blocks is None else min(b, cap, last_blocks)
        if n:
            idx = (np.arange(b - n, b) % cap) if n < min(b, cap) else slice(0, n)
            g = self.gen_ms[idx]
            gen = (float(np.median(g)), float(np.percentile(g, 99)), float(np.max(g)))
        else:
            gen = (0.0, 0.0, 0.0)
        return {"underruns": int(self.underruns), "late_blocks": int(self.late_blocks),
                "own_underruns": int(self.own_underruns),
                "own_late_blocks": int(self.own_late_blocks),
                "server_underruns": int(self.server_underruns),
                "latency_frames": int(self.latency_frames),
                "callbacks": int(self.callbacks), "xruns": int(self.xruns),
                "shed_voices": int(self.shed_voices), "mode": MODE_NAMES[self.mode],
                "gen_ms_median": gen[0], "gen_ms_p99": gen[1], "gen_ms_max": gen[2]}

    def stats(self) -> dict:
        """Everything, at exit: :meth:`summary` plus the configuration and every block time."""
        n = min(self.blocks, len(self.gen_ms))
        return {
            **self.summary(),
            "underrun_frames": int(self.underrun_frames),
            "skipped_frames": int(self.skipped_frames),
            "blocks": int(self.blocks),
            "block": int(self.block),
            "sample_rate": int(self.engine.sr),
            "latency_start_frames": int(self.latency_start),
            "latency_raises": int(self.latency_raises),
            "latency_lowers": int(self.latency_lowers),
            "lower_after_s": self.lower_after,
            "ahead": int(self.ahead),
            "ahead_max": int(self.ahead_max),
            "sync": self.sync,
            "sync_fallbacks": int(self.sync_fallbacks),
            "sync_returns": int(self.sync_returns),
            "load_fallbacks": int(self.load_fallbacks),
            "notes_released": int(self.notes_released),
            "gc_passes": int(getattr(self, "gc_passes", 0)),
            "generator_realtime": self.realtime,
            "gen_ms": [round(float(x), 4) for x in self.gen_ms[:n]],
            "policy_trace": [dict(zip(TRACE_FIELDS, (TRACE_WHAT.get(int(v), v) if k == "what"
                                                     else round(float(v), 3)
                                                     for k, v in zip(TRACE_FIELDS, row))))
                             for row in self._trace[:self._trace_n]],
            "engine": dict(self.engine.stats),
        }
