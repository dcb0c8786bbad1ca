"""Live playing: a generator thread renders ahead into a ring; the audio callback copies from it.

Real-time rules (DESIGN.md), as they apply here:

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
- Sync mode (JACK) renders in the process callback instead: latency 0. A block that ends after
  its period (the server then reports an xrun) is counted as an underrun (``late_blocks``).
- After a gap (a ring underrun, or a late block in sync mode) the next block fades in over
  ``GAP_FADE`` frames, and an underrun fades the last sample out instead of dropping to zero at
  once: no step, so no click. The engine's safety clip already turns non-finite samples into 0.

``RTSYNTH_TEST_STALL=EVERY:MS`` (tests only) sleeps MS milliseconds every EVERY-th block where
the block is rendered (generator thread, or the callback in sync mode), to force underruns.
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


GENERATOR_RT_PRIORITY = 5
GAP_FADE = 64      # frames of fade in/out around a gap


def _test_stall() -> tuple[int, float]:
    v = os.environ.get("RTSYNTH_TEST_STALL", "")
    try:
        every, ms = v.split(":")
        return max(int(every), 0), float(ms) / 1e3
    except ValueError:
        return 0, 0.0


class Player:
    """Owns the ring, the generator thread and the counters of one live stream."""

    def __init__(self, engine: Engine, ahead: int = 1, host_margin: int = 0,
                 stats_capacity: int = 1 << 20, sync: bool = False,
                 ahead_max: int | None = None):
        self.engine = engine
        self.block = engine.block
        self.ahead = int(ahead)
        #: adaptive: each underrun renders one block more ahead, up to ``ahead_max`` (the gap
        #: is there already; the next slow block then finds a block in hand)
        self.ahead_max = max(self.ahead, int(ahead_max if ahead_max is not None else ahead))
        self._ahead0 = self.ahead
        #: render inside the audio callback (JACK): no added latency, no safety margin
        self.sync = bool(sync)
        #: MIDI is placed this far after its frame, and the ring is kept this full: in sync
        #: mode 0, else ``(1 + ahead)`` blocks
        self.latency_frames = 0 if self.sync else (1 + self.ahead) * self.block
        #: events from host-clock sources get this many frames more, for the clock's uncertainty
        self.host_margin = int(host_margin)
        cap = 1
        while cap < (1 + self.ahead_max) * self.block + 4 * self.block:
            cap <<= 1
        self.cap = cap
        self.ring = np.zeros((2, cap), np.float32)
        self.w = 0                 # frames written (engine time of the next block to render)
        self.r = 0                 # frames taken by the device
        self.underruns = 0         # callbacks that found too little audio
        self.underrun_frames = 0
        self.callbacks = 0
        self.xruns = 0             # reported by the audio server (JACK)
        self._cycle_clock: int | None = None     # server clock at this cycle's first frame
        self._next_clock: int | None = None      # ... and where the next cycle should start
        self.skipped_frames = 0    # frames the server skipped (its xruns); the ring pauses
        self.midi_in: deque = deque()        # (engine sample, bytes) from any thread
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
        self._cycle_used = 0.0     # seconds of the period gone when the callback began
        self._budget = self.block / engine.sr
        n = min(GAP_FADE, self.block)
        self._ramp_up = ((np.arange(n) + 1) / (n + 1)).astype(np.float32)
        self._ramp_down = self._ramp_up[::-1].copy()
        self._gap = False          # the last callback left a gap: fade the next block in
        self._last = np.zeros(2, np.float32)     # the last sample sent, per channel
        self._stall_every, self._stall_s = _test_stall()

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
        if clock is not None:
            if self._next_clock is not None:
                gap = (clock - self._next_clock) & 0xFFFFFFFF
                if 0 < gap < (1 << 30):
                    self.skipped_frames += gap
                    self._gap = True
            self._cycle_clock = clock
        self.last_cb_frame = self.r if not self.sync else self.w
        self.last_cb_time = time.perf_counter()

    def pull(self, left: np.ndarray, right: np.ndarray, frames: int) -> None:
        """Copy ``frames`` frames into the two output buffers, then wake the generator.

        Call :meth:`begin_cycle` and hand over this cycle's MIDI first: the generator may start
        on the next block the moment it is woken. Audio callback only.
        """
        r = self.r
        self.callbacks += 1
        if self._cycle_clock is not None:
            self._next_clock = (self._cycle_clock + frames) & 0xFFFFFFFF
        if self.w - r >= frames:
            i = r & (self.cap - 1)
            k = min(frames, self.cap - i)              # frames before the ring wraps
            for ch, out in ((0, left), (1, right)):
                out[:k] = self.ring[ch, i:i + k]
                out[k:] = self.ring[ch, : frames - k]
            self.r = r + frames
            if self._gap:
                self._fade_in(left, right)
        else:
            # silence, reached through a short ramp from the last sample sent (no step)
            n = min(len(self._ramp_down), frames)
            for ch, out in ((0, left), (1, right)):
                out.fill(0.0)
                out[:n] = self._ramp_down[:n]
                out[:n] *= self._last[ch]
            self.underruns += 1
            self.underrun_frames += frames
            self._gap = True
            if self.ahead < self.ahead_max and not self.sync:
                self.ahead += 1
                self.latency_frames += self.block
        self._last[0] = left[frames - 1]
        self._last[1] = right[frames - 1]
        try:
            os.write(self._wfd, b"\0")
        except (BlockingIOError, OSError):
            pass

    def render_now(self, left: np.ndarray, right: np.ndarray, frames: int) -> None:
        """Sync mode: render this cycle's block here, its MIDI applied at the exact frames.

        The whole generator runs in the audio thread: the block must be done within the period.
        Audio callback only.
        """
        eng = self.engine
        q = self.midi_in
        t = time.perf_counter()
        self.callbacks += 1
        if self._cycle_clock is not None:
            self._next_clock = (self._cycle_clock + frames) & 0xFFFFFFFF
        while q:
            when, data = q.popleft()
            eng.push(when, data)
        out = eng.render(frames)
        if self._fade_at is not None:
            self._apply_fade(out)
        if self._stall_every and self.blocks % self._stall_every == self._stall_every - 1:
            time.sleep(self._stall_s)
        left[:] = out[:, 0]
        right[:] = out[:, 1]
        if self._gap:
            self._fade_in(left, right)
        t1 = time.perf_counter()
        self.gen_ms[self.blocks % len(self.gen_ms)] = (t1 - t) * 1e3
        self.blocks += 1
        self.w += frames
        self.r = self.w
        if t1 - self.last_cb_time + self._cycle_used > self._budget:
            # too late for this period: the server reports an xrun and this block is not heard
            # where it belongs; count it, and fade the next one in
            self.late_blocks += 1
            self.underruns += 1
            self.underrun_frames += frames
            self._gap = True

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

    def midi_at_frame(self, offset: int, data) -> None:
        """A MIDI message at ``offset`` frames into the current callback. Audio callback only."""
        self.midi_in.append((self.last_cb_frame + offset + self.latency_frames, bytes(data)))

    def midi_now(self, data) -> None:
        """A MIDI message that arrived just now (host clock): from rtmidi or the keyboard."""
        dt = time.perf_counter() - self.last_cb_time
        frame = self.last_cb_frame + int(dt * self.engine.sr)
        self.midi_in.append((frame + self.latency_frames + self.host_margin, bytes(data)))

    # ------------------------------------------------------- generator thread
    def prefill(self) -> None:
        if not self.sync:
            self._render_until(self.latency_frames)

    def _render_until(self, target_w: int) -> None:
        eng = self.engine
        q = self.midi_in
        while self.w < target_w:
            while q:
                when, data = q.popleft()
                eng.push(when, data)
            t = time.perf_counter()
            out = eng.render()
            if self._fade_at is not None:
                self._apply_fade(out)
            if self._stall_every and self.blocks % self._stall_every == self._stall_every - 1:
                time.sleep(self._stall_s)
            i = self.w & (self.cap - 1)
            k = min(self.block, self.cap - i)          # frames before the ring wraps
            self.ring[:, i:i + k] = out[:k].T
            self.ring[:, : self.block - k] = out[k:].T
            self.gen_ms[self.blocks % len(self.gen_ms)] = (time.perf_counter() - t) * 1e3
            self.blocks += 1
            self.w += self.block

    def _apply_fade(self, out: np.ndarray) -> None:
        start = self.w - self._fade_at
        g = 1.0 - (np.arange(start, start + len(out)) / self._fade_len)
        np.clip(g, 0.0, 1.0, out=g)
        out *= g[:, None].astype(np.float32)

    def _run(self) -> None:
        if sys.platform.startswith("linux"):
            # Real-time scheduling below the audio server's threads (JACK's run at 10 and up),
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
                self._render_until(self.r + self.latency_frames)
                ready, _, _ = select.select([self._rfd], [], [], 0.002)
                if ready:
                    try:
                        os.read(self._rfd, 4096)
                    except BlockingIOError:
                        pass
        except BaseException as e:      # reported by the main thread
            self.error = e

    def start(self) -> None:
        if self.sync:
            return
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
        self._stop = True
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        for fd in (self._rfd, self._wfd):
            try:
                os.close(fd)
            except OSError:
                pass

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
                "latency_frames": int(self.latency_frames),
                "callbacks": int(self.callbacks), "xruns": int(self.xruns),
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
            "latency_raises": int(self.ahead - self._ahead0),
            "ahead": int(self.ahead),
            "ahead_max": int(self.ahead_max),
            "sync": self.sync,
            "generator_realtime": self.realtime,
            "gen_ms": [round(float(x), 4) for x in self.gen_ms[:n]],
            "engine": dict(self.engine.stats),
        }
