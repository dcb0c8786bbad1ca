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
from ..jit import kernel, subkernel
from ..nn.fast_kernels import fused_rows
from .block import SILENT_LEVEL, Engine
from .frames import make_plan, store_rounds

if jit.status()["mode"] == "jit":        # the JIT and the ahead-of-time build
    from . import _sync
else:                                    # compiled: Numba is not imported (see ensure_jit)
    _sync = None

#: ``sync``: [0] the block number posted to the worker (negative: quit), [1] the block number
#: it finished, [2] the block still to be claimed (``-number`` once claimed): the worker claims
#: a block before it starts on it, and the engine, once its own half is done, takes the
#: worker's half itself when the worker has not claimed it yet (a worker that woke late, its
#: core busy: the block then costs what one thread costs, not the wait); ``ctl``: [0] frames,
#: [1], [2] the worker's slot range, [3] rounds
GO, DONE, CLAIM = 0, 1, 2
WORKER_RT_PRIORITY = 4       # the generator thread's (rtsynth.live.player.GENERATOR_RT_PRIORITY)


def ensure_jit() -> None:
    """The kernels fell back to the JIT after the module was imported: load the intrinsics."""
    global _sync
    if _sync is None and jit.status()["mode"] == "jit":
        from . import _sync as s
        _sync = s
    from ..nn import fast_kernels
    fast_kernels.ensure_jit()


jit.ON_JIT.append(ensure_jit)


@subkernel
def wait_go(sync, seen):
    """The worker's sleep: returns ``sync[GO]`` once it is no longer ``seen`` (the block number
    the worker last took), waiting on the futex meanwhile."""
    v = _sync.load(sync, GO)
    while v == seen:
        _sync.wait(sync, GO, v)
        v = _sync.load(sync, GO)
    return v


@kernel(**_OPT)      # render_voices' options: the same code whichever thread runs it
def worker_loop(sync, ctl, sample_rate, hop, vs, rows, tables, lfo_w, work, out):
    """The worker thread's whole life: wait for a block number in ``sync[GO]``, render slots
    ``ctl[1]:ctl[2]`` of ``ctl[0]`` frames into ``out`` (zeroed first), post the number in
    ``sync[DONE]``; return when the number is negative."""
    seen = 0
    while True:
        v = wait_go(sync, seen)
        seen = v
        if v < 0:
            return
        if not _sync.cas(sync, CLAIM, v, -v):
            continue                     # the engine took this block itself
        synth_half(ctl[0], sample_rate, hop, ctl[1], ctl[2], vs, rows, tables, lfo_w, work, out)
        _sync.store(sync, DONE, v)
        _sync.wake(sync, DONE)


@kernel(**_OPT)
def half_block(blas, rounds, n, lo, hi, plan, th, const, work, out):
    """One part of a block of a neural instrument, whole: the model steps of its rounds
    (``plan``: the rows of slots ``lo:hi`` only, :func:`split_plan_parts`) through
    :func:`rtsynth.nn.fast_kernels.fused_rows` (the backbone's fused step), the filing of
    their controls (``store_rounds``; frames clamped by the level guard added to ``res[2]``),
    then the synthesis of slots
    ``lo:hi`` into ``out`` (zeroed first). ``th``: the calling thread's model buffers,
    ``const``: the engine's (see :meth:`ParallelEngine._fused_args`; bundles made once: a call
    allocates nothing)."""
    zb, w, geo, st, wk, par, h_scaled, harm, noise, res = th
    (vs, hop, max_release, silent, len_silent, len_long, max_level, sample_rate, rows, tables,
     lfo_w) = const
    level = max_level[0]
    for r in range(rounds):
        m = plan.count[r]
        if m:
            fused_rows(blas, plan.features[r], zb, plan.slot[r], m, w, geo, st, wk, par,
                       h_scaled, harm, noise, res)
            res[2] += store_rounds(r, r + 1, plan, harm, noise, vs, hop, max_release, silent,
                                   len_silent, len_long, level)
    for t in range(n):
        out[t, 0] = 0.0
        out[t, 1] = 0.0
    render_voices(n, sample_rate, hop, lo, hi, vs, rows, tables, lfo_w, work, out)


@kernel(**_OPT)
def worker_loop_parts(sync, ctl, claim, done, bounds, blas, plans, th, const, work, outs):
    """:func:`worker_loop` for a CNN instrument: a block is split in parts (slots
    ``bounds[j]:bounds[j+1]``, part 0 always the engine's); the worker claims parts 1, 2, ...
    in turn (``claim[j]``: the block number while free, its negative once claimed) and renders
    each (:func:`half_block`) into ``outs[j]``, posting ``done[j]``, until it finds one the
    engine took (the engine claims from the last part down)."""
    seen = 0
    while True:
        v = wait_go(sync, seen)
        seen = v
        if v < 0:
            return
        for j in range(1, ctl[4]):
            if not _sync.cas(claim, j, v, -v):
                break
            half_block(blas, ctl[3], ctl[0], bounds[j], bounds[j + 1], plans[j], th, const,
                       work, outs[j])
            _sync.store(done, j, v)
            _sync.wake(done, j)


@kernel
def post_parts(sync, ctl, claim, seq, n, rounds, k):
    """Give the worker block ``seq`` of ``k`` parts (``seq < 0``: quit)."""
    ctl[0] = n
    ctl[3] = rounds
    ctl[4] = k
    for j in range(1, k):
        _sync.store(claim, j, seq)
    _sync.store(sync, GO, seq)
    _sync.wake(sync, GO)


@kernel
def claim_part(claim, j, seq):
    """Whether this thread got part ``j`` of block ``seq`` (the worker had not claimed it)."""
    return _sync.cas(claim, j, seq, -seq)


@kernel
def wait_parts(done, seq, upto):
    """Return once parts ``1 .. upto`` of block ``seq`` (the worker's) are done."""
    for j in range(1, upto + 1):
        d = _sync.load(done, j)
        while d != seq:
            _sync.wait(done, j, d)
            d = _sync.load(done, j)


@kernel
def split_points(active, upto, bounds, min_voices):
    """``bounds[0..k]``: slot ranges ``bounds[j]:bounds[j+1]`` that cover ``0:upto`` with about
    as many active slots each (the first ones get the odd ones), ``k = len(bounds) - 1``, or
    one part (the others empty) when fewer than ``min_voices`` are active; returns the number
    of parts."""
    k = bounds.shape[0] - 1
    total = 0
    for v in range(upto):
        if active[v]:
            total += 1
    if total < min_voices:
        k = 1
    bounds[0] = 0
    j = 1
    c = 0
    for v in range(upto):
        if j < k and c >= (total * j + k - 1) // k:
            bounds[j] = v
            j += 1
        if active[v]:
            c += 1
    while j < bounds.shape[0]:
        bounds[j] = upto
        j += 1
    return k


@kernel
def split_plan_parts(plan, rounds, bounds, plans):
    """The rows of ``plan``'s first ``rounds`` rounds into the parts' plans: a row of slot
    ``v`` into ``plans[j]`` with ``bounds[j] <= v < bounds[j+1]`` (each round's rows in
    their order)."""
    k = bounds.shape[0] - 1
    for r in range(rounds):
        for j in range(k):
            plans[j].count[r] = 0
        for m in range(plan.count[r]):
            v = plan.slot[r, m]
            j = 0
            while j < k - 1 and v >= bounds[j + 1]:
                j += 1
            p = plans[j]
            i = p.count[r]
            p.count[r] = i + 1
            p.slot[r, i] = v
            for f in range(plan.features.shape[2]):
                p.features[r, i, f] = plan.features[r, m, f]
            p.start[r, i] = plan.start[r, m]
            p.offset[r, i] = plan.offset[r, m]
            p.release[r, i] = plan.release[r, m]
            p.level[r, i] = plan.level[r, m]
            p.tilt[r, i] = plan.tilt[r, m]


@kernel(**_OPT)
def synth_half(n, sample_rate, hop, lo, hi, vs, rows, tables, lfo_w, work, out):
    """``out[:n]`` := the synthesis of slots ``lo:hi`` (``render_voices``). Both threads call
    it (the worker from inside its loop): the same compiled code, so the same samples."""
    for t in range(n):
        out[t, 0] = 0.0
        out[t, 1] = 0.0
    render_voices(n, sample_rate, hop, lo, hi, vs, rows, tables, lfo_w, work, out)


@kernel
def post_block(sync, ctl, seq, n, lo, hi, rounds):
    """Give the worker block ``seq``: ``n`` frames of slots ``lo:hi``, and (a CNN worker)
    ``rounds`` rounds of its plan (``-1``: synthesis only); ``seq < 0``: quit."""
    ctl[0] = n
    ctl[1] = lo
    ctl[2] = hi
    ctl[3] = rounds
    _sync.store(sync, CLAIM, seq)
    _sync.store(sync, GO, seq)
    _sync.wake(sync, GO)


@kernel
def claim_block(sync, seq):
    """After the engine's own half: True when the worker had not claimed block ``seq`` (the
    engine now has it, and renders it itself); else wait until the worker has posted it
    done, and return False."""
    if _sync.cas(sync, CLAIM, seq, -seq):
        return True
    d = _sync.load(sync, DONE)
    while d != seq:
        _sync.wait(sync, DONE, d)
        d = _sync.load(sync, DONE)
    return False


@kernel
def copy_row(dst, src):
    """``dst[0, :] = src`` (the timbre latent, for the worker's own copy)."""
    for j in range(src.shape[0]):
        dst[0, j] = src[j]


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
def add_parts(out, outs, n, k):
    """``out[:n] += outs[j, :n]`` for ``j = 1 .. k-1`` in that order (part 0 is ``out``)."""
    for j in range(1, k):
        for t in range(n):
            out[t, 0] += outs[j, t, 0]
            out[t, 1] += outs[j, t, 1]


@kernel
def add_into(out, other, n):
    """``out[:n] += other[:n]`` (stereo)."""
    for t in range(n):
        out[t, 0] += other[t, 0]
        out[t, 1] += other[t, 1]


class ParallelEngine(Engine):
    """:class:`Engine` over two threads (``threads=2``, the default on a machine of two cores or
    more), or the same split on one (``threads=1``): the same samples either way.

    With a CNN instrument the voices are split in :attr:`PARTS` slot ranges with about as many
    sounding voices each, and each part's whole block is one nogil kernel (:func:`half_block`:
    model steps, filing, synthesis): the engine renders part 0, the worker claims parts from 1
    up, the engine, its own done, from the last down (so a worker woken late, or slowed by
    the machine, costs no wait: the engine takes its parts); the parts' outputs are added in
    their order. With any other instrument the model steps on the calling thread and the
    synthesis is split in two. :meth:`close` ends the worker
    (also at exit: it is a daemon thread)."""

    #: the worker's share of the sounding voices (synthesis-only split)
    SHARE = 0.5
    #: parts of a CNN instrument's block (192 held flute-lite voices, paced, on the loaded
    #: machine: 2 parts, the worker's claimed or taken whole, 1.59 ms a block on average; 4
    #: parts claimed one by one: see the commit)
    PARTS = 4
    #: fewer sounding voices than this: one part, on the calling thread (no hand-off)
    SPLIT_VOICES = 16

    def __init__(self, instrument, *, threads: int | None = None, **kw):
        self._thread: threading.Thread | None = None
        self._fused = None
        super().__init__(instrument, **kw)
        if threads is None:
            threads = 2 if (os.cpu_count() or 1) >= 2 else 1
        self.threads = max(1, min(2, int(threads)))
        self._out1 = np.zeros_like(self.out)
        self._work1 = make_work(self.block, self.hop, self.K, self.B)
        self._job = None
        self._k = 1
        self._sr_f = float(self.sr)
        #: blocks whose worker half this thread rendered (the worker had not claimed it)
        self.taken = 0
        self.worker_realtime = False
        self._setup()

    # ---------------------------------------------------------------- set-up
    def _allocate_instrument(self) -> None:
        super()._allocate_instrument()
        if hasattr(self, "_out1"):           # the decoder's buffers are new: so is the worker
            self._setup()

    def _setup(self) -> None:
        """The fused CNN path's buffers (when the instrument has one), then a new worker."""
        self.close()
        self._fused = self._fused_args()
        self._sync = np.zeros(3, np.int32)
        self._ctl = np.zeros(5, np.int64)
        self._claim = np.zeros(self.PARTS, np.int32)
        self._done = np.zeros(self.PARTS, np.int32)
        self._seq = 0
        if self.threads > 1:
            ensure_jit()
            self._thread = threading.Thread(target=self._worker, name="rtsynth-engine-worker",
                                            daemon=True)
            self._thread.start()

    def _fused_args(self):
        """``(blas, zb, main's, worker's)`` for :func:`half_block`, or None: the instrument has
        no fused step (no neural decoder, or NumPy's BLAS cannot be called from the kernels)."""
        from ..nn.fast import blas_pointers
        fast = getattr(self.inst, "_fast", None)
        if not hasattr(fast, "fused_args") or getattr(self.inst, "guard", None) is None:
            return None
        blas = blas_pointers()
        if blas is None:
            return None
        from ..nn.neural import _TAPER_COEF
        zb = np.zeros((1, fast.z_dim), np.float32)
        #: the level guard's limit, read by the kernels (the engine's max_level, each block)
        self._max_level = np.array([self.max_level], np.float64)
        R, S, F = self.R, self.S, self.inst.n_features
        th = []
        for dec in (fast, fast.fork()):         # each thread's model buffers
            w, geo, st, wk, par, h_scaled = dec.fused_args(_TAPER_COEF)
            th.append((zb, w, geo, st, wk, par, h_scaled, np.zeros((S, self.K), np.float32),
                       np.zeros((S, self.B), np.float32), np.zeros(3, np.int64)))
        const = (self.voices, self.hop, self.max_release, SILENT_LEVEL, self._fade_silent,
                 self._fade_long, self._max_level, float(self.sr), self.channels.rows,
                 self.tables, self.lfo_w)
        k = self.PARTS
        plans = tuple(make_plan(R, S, F) for _ in range(k))
        outs = np.zeros((k, self.block, 2), np.float32)
        out_views = [[outs[j, :m] for m in range(self.block + 1)] for j in range(k)]
        return blas, zb, th[0], th[1], const, plans, np.zeros(k + 1, np.int64), outs, out_views

    def _worker(self) -> None:
        if sys.platform.startswith("linux"):
            # the generator's scheduling (rtsynth.live.player), where the system allows it
            tid = threading.get_native_id()
            try:
                os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(WORKER_RT_PRIORITY))
                self.worker_realtime = True
            except (OSError, AttributeError):
                pass
        if self._fused is None:
            worker_loop(self._sync, self._ctl, float(self.sr), self.hop, self.voices,
                        self.channels.rows, self.tables, self.lfo_w, self._work1, self._out1)
            return
        blas, _, _, th1, const, plans, bounds, outs, _ = self._fused
        worker_loop_parts(self._sync, self._ctl, self._claim, self._done, bounds, blas, plans,
                          th1, const, self._work1, outs)

    def close(self) -> None:
        """End the worker thread (idempotent)."""
        th, self._thread = self._thread, None
        if th is not None:
            post_block(self._sync, self._ctl, -1, 0, 0, 0, 0)
            th.join(timeout=2.0)
            if th.is_alive():                 # (a worker that never started its loop)
                post_parts(self._sync, self._ctl, self._claim, -1, 0, 0, 0)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # ----------------------------------------------------------------- block
    def _fused_now(self) -> bool:
        return self._fused is not None and self.inst.guard.fault is None

    def _compute_frames(self, n: int) -> None:
        if not self._fused_now():
            self._job = None
            return super()._compute_frames(n)
        f = self._fused
        zb, plans, bounds = f[1], f[5], f[6]
        z = getattr(self.inst, "z", None)
        if z is not None and zb.shape[1]:
            copy_row(zb, z)
        if self._max_level.item(0) != self.max_level:
            self._max_level.fill(self.max_level)
        rounds = self._plan(n)
        k = split_points(self.voices.active, self.S, bounds, self.SPLIT_VOICES)
        split_plan_parts(self.plan, rounds, bounds, plans)
        self._job = rounds
        self._k = k
        if self._thread is not None and k > 1:
            self._seq = seq = (self._seq + 1) & 0x3FFFFFFF
            post_parts(self._sync, self._ctl, self._claim, seq, n, rounds, k)

    def _part(self, j, rounds, n, out) -> None:
        """Part ``j`` of this block, on this thread."""
        f = self._fused
        bounds = f[6]
        half_block(f[0], rounds, n, bounds.item(j), bounds.item(j + 1), f[5][j], f[2], f[4],
                   self.work, out)

    def _parts(self, rounds, n, out) -> None:
        """A CNN instrument's block: part 0 here, the others claimed by the worker from the
        first up and by this thread from the last down; added in their order."""
        f = self._fused
        views, outs = f[8], f[7]
        k = self._k
        self._part(0, rounds, n, out)
        top = k - 1
        if k == 1:
            pass
        elif self._thread is not None:
            seq = self._seq
            while top >= 1 and claim_part(self._claim, top, seq):
                self._part(top, rounds, n, views[top][n])
                self.taken += 1
                top -= 1
            wait_parts(self._done, seq, top)
        else:
            while top >= 1:
                self._part(top, rounds, n, views[top][n])
                top -= 1
        if k > 1:
            add_parts(out, outs, n, k)
        self._tally(f[2][-1])
        self._tally(f[3][-1])

    def _synthesize(self, n: int, out: np.ndarray) -> None:
        S = self.S
        job, self._job = self._job, None
        out1 = self._out1 if n == self.block else self._out1[:n]
        if job is not None:
            return self._parts(job, n, out)
        a = split_point(self.voices.active, S, self.SHARE)
        sr, hop, vs, rows, tables, lfo_w = (self._sr_f, self.hop, self.voices,
                                            self.channels.rows, self.tables, self.lfo_w)
        if a >= S:
            synth_half(n, sr, hop, 0, S, vs, rows, tables, lfo_w, self.work, out)
            return
        if self._thread is not None:
            self._seq = seq = (self._seq + 1) & 0x3FFFFFFF
            post_block(self._sync, self._ctl, seq, n, a, S, -1)
            synth_half(n, sr, hop, 0, a, vs, rows, tables, lfo_w, self.work, out)
            if claim_block(self._sync, seq):
                self.taken += 1
                synth_half(n, sr, hop, a, S, vs, rows, tables, lfo_w, self._work1, out1)
        else:
            synth_half(n, sr, hop, a, S, vs, rows, tables, lfo_w, self._work1, out1)
            synth_half(n, sr, hop, 0, a, vs, rows, tables, lfo_w, self.work, out)
        add_into(out, out1, n)

    def _tally(self, res) -> None:
        """A half's counts, as the instrument's step and ``_store`` count them."""
        bad, outside, clamped = res.item(0), res.item(1), res.item(2)
        if not (bad or outside or clamped):
            return
        res.fill(0)
        guard = self.inst.guard
        if outside:
            guard.out_of_range += 1
        if clamped:
            self._counts[5] += clamped
        if bad:
            guard.bad_rows += 1
            guard.mute("its controls became non-finite while playing")
