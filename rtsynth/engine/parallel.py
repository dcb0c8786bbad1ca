"""The live engine on two cores: :class:`ParallelEngine`.

A block's synthesis (``render_voices``, about 60% of a block at 192 voices) is split in two slot
ranges with about as many sounding voices each. The second range goes to a worker thread that
never leaves one nogil Numba kernel (:func:`worker_loop`): it sleeps on a futex, wakes when the
engine posts a block, renders its range into its own buffer and posts back. The hand-off costs
two futex calls (a few microseconds), not the GIL: Python hand-offs under the GIL cost 3.6-4.5 ms
a 128-frame block in the offline engine's thread pool, because each of a thread's many short
calls must take the GIL back from the other.

The two buffers are added in a fixed order, and ``threads=1`` renders the same two ranges one
after the other on the calling thread: the same samples, bit for bit, with one thread or two.
(Against :class:`~rtsynth.engine.block.Engine`, which sums every voice into one buffer, they
differ by float32 rounding of the sum.)

Real-time: after :meth:`warmup` a block allocates nothing (the split point and the hand-off are
kernels; the worker's buffers are made once).
"""

from __future__ import annotations

import os
import sys
import threading

import numpy as np

from .. import jit
from ..dsp.synth import _OPT, make_work, render_voices
from ..jit import kernel
from .block import Engine

if jit.status()["mode"] == "jit":        # the JIT and the ahead-of-time build
    from . import _sync
else:                                    # compiled: Numba is not imported (see ensure_jit)
    _sync = None

#: ``sync``: [0] the block number posted to the worker (negative: quit), [1] the block number
#: it finished; ``ctl``: [0] frames, [1], [2] the worker's slot range
GO, DONE = 0, 1
WORKER_RT_PRIORITY = 5       # the generator thread's (rtsynth.live.player.GENERATOR_RT_PRIORITY)


def ensure_jit() -> None:
    """The kernels fell back to the JIT after the module was imported: load the intrinsics."""
    global _sync
    if _sync is None and jit.status()["mode"] == "jit":
        from . import _sync as s
        _sync = s


@kernel(**_OPT)      # render_voices' options: the same code whichever thread runs it
def worker_loop(sync, ctl, sample_rate, hop, vs, rows, tables, lfo_w, work, out):
    """The worker thread's whole life: wait for a block number in ``sync[GO]``, render slots
    ``ctl[1]:ctl[2]`` of ``ctl[0]`` frames into ``out`` (zeroed first), post the number in
    ``sync[DONE]``; return when the number is negative."""
    seen = 0
    while True:
        v = _sync.load(sync, GO)
        while v == seen:
            _sync.wait(sync, GO, v)
            v = _sync.load(sync, GO)
        seen = v
        if v < 0:
            return
        n = ctl[0]
        for t in range(n):
            out[t, 0] = 0.0
            out[t, 1] = 0.0
        render_voices(n, sample_rate, hop, ctl[1], ctl[2], vs, rows, tables, lfo_w, work, out)
        _sync.store(sync, DONE, v)
        _sync.wake(sync, DONE)


@kernel
def post_block(sync, ctl, seq, n, lo, hi):
    """Give the worker block ``seq``: ``n`` frames of slots ``lo:hi`` (``seq < 0``: quit)."""
    ctl[0] = n
    ctl[1] = lo
    ctl[2] = hi
    _sync.store(sync, GO, seq)
    _sync.wake(sync, GO)


@kernel
def wait_block(sync, seq):
    """Return once the worker has posted block ``seq`` as done."""
    d = _sync.load(sync, DONE)
    while d != seq:
        _sync.wait(sync, DONE, d)
        d = _sync.load(sync, DONE)


@kernel
def split_point(active, upto, share):
    """A slot index that leaves about the share ``share`` of the active slots of ``0:upto``
    at or above it (the worker's); ``upto`` when fewer than two are active."""
    total = 0
    for v in range(upto):
        if active[v]:
            total += 1
    if total < 2:
        return upto
    mine = total - int(total * share)      # this thread gets the odd one
    if mine < 1:
        mine = 1
    c = 0
    for v in range(upto):
        if active[v]:
            c += 1
            if c == mine:
                return v + 1
    return upto


@kernel
def add_into(out, other, n):
    """``out[:n] += other[:n]`` (stereo)."""
    for t in range(n):
        out[t, 0] += other[t, 0]
        out[t, 1] += other[t, 1]


class ParallelEngine(Engine):
    """:class:`Engine` with its synthesis over two threads (``threads=2``, the default on a
    machine of two cores or more), or the same split on one (``threads=1``): the same samples
    either way. :meth:`close` ends the worker (also at exit: it is a daemon thread)."""

    #: the worker's share of the sounding voices
    SHARE = 0.5

    def __init__(self, instrument, *, threads: int | None = None, **kw):
        super().__init__(instrument, **kw)
        if threads is None:
            threads = 2 if (os.cpu_count() or 1) >= 2 else 1
        self.threads = max(1, min(2, int(threads)))
        self._out1 = np.zeros_like(self.out)
        self._work1 = make_work(self.block, self.hop, self.K, self.B)
        self._sync = np.zeros(2, np.int32)
        self._ctl = np.zeros(3, np.int64)
        self._seq = 0
        self._thread: threading.Thread | None = None
        self.worker_realtime = False
        if self.threads > 1:
            ensure_jit()
            self._thread = threading.Thread(target=self._worker, name="rtsynth-synth-worker",
                                            daemon=True)
            self._thread.start()

    def _worker(self) -> None:
        if sys.platform.startswith("linux"):
            # the generator's scheduling (rtsynth.live.player), where the system allows it
            tid = threading.get_native_id()
            try:
                os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(WORKER_RT_PRIORITY))
                self.worker_realtime = True
            except (OSError, AttributeError):
                pass
        worker_loop(self._sync, self._ctl, float(self.sr), self.hop, self.voices,
                    self.channels.rows, self.tables, self.lfo_w, self._work1, self._out1)

    def close(self) -> None:
        """End the worker thread (idempotent)."""
        th, self._thread = self._thread, None
        if th is not None:
            post_block(self._sync, self._ctl, -1, 0, 0, 0)
            th.join(timeout=2.0)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def _synthesize(self, n: int, out: np.ndarray) -> None:
        S = self.S
        a = split_point(self.voices.active, S, self.SHARE)
        out.fill(0.0)
        if a >= S:
            self._render_slots(0, S, n, out, self.work)
            return
        out1 = self._out1 if n == self.block else self._out1[:n]
        if self._thread is not None:
            self._seq = seq = (self._seq + 1) & 0x3FFFFFFF
            post_block(self._sync, self._ctl, seq, n, a, S)
            self._render_slots(0, a, n, out, self.work)
            wait_block(self._sync, seq)
        else:
            out1.fill(0.0)
            self._render_slots(a, S, n, out1, self._work1)
            self._render_slots(0, a, n, out, self.work)
        add_into(out, out1, n)
