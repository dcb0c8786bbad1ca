"""The offline engine: the live engine's samples, with large batches and two threads."""

from __future__ import annotations

import math
import time
from functools import partial

import numpy as np

from ..dsp.synth import make_work
from ..jit import kernel
from ..nn.fast_kernels import fused_rows
from .block import Engine

try:
    from ..instruments.base import StreamingInstrument
except ImportError:                  # before the instruments package existed
    from ..instrument import StreamingInstrument


@kernel
def _split_rows(rounds, plan, split, f0, s0, f1, s1, where):
    """The rows of rounds ``0..rounds-1`` (round order) into two batches: slots below
    ``split`` into ``f0, s0``, the others into ``f1, s1``; ``where[i]`` = row ``i``'s place
    (``j`` in batch 0, ``-1 - j`` in batch 1). Returns the two row counts."""
    n0 = 0
    n1 = 0
    i = 0
    for r in range(rounds):
        for m in range(plan.count[r]):
            v = plan.slot[r, m]
            if v < split:
                s0[n0] = v
                f0[n0] = plan.features[r, m]
                where[i] = n0
                n0 += 1
            else:
                s1[n1] = v
                f1[n1] = plan.features[r, m]
                where[i] = -1 - n1
                n1 += 1
            i += 1
    return n0, n1


@kernel
def _join_rows(n, where, h0, g0, h1, g1, harm, noise):
    """The two batches' controls back into round order (inverse of :func:`_split_rows`)."""
    for i in range(n):
        j = where[i]
        if j >= 0:
            harm[i] = h0[j]
            noise[i] = g0[j]
        else:
            harm[i] = h1[-1 - j]
            noise[i] = g1[-1 - j]


@kernel
def _model_rows(blas, features, z, slots, n, w, geo, st, wk, par, h_scaled, harm, noise, res):
    """A neural instrument's step on rows ``:n`` (several frames of a voice in order), range
    taper included, in one nogil call (:func:`rtsynth.nn.fast_kernels.fused_rows`: the CNN's,
    the GRU's or the attention's fused step, the live ParallelEngine's): no Python between its
    operations, so the two render threads step their halves at once instead of taking turns
    at the GIL."""
    fused_rows(blas, features, z, slots, n, w, geo, st, wk, par, h_scaled, harm, noise, res)


@kernel
def _split_at(active, upto, other):
    """A slot index with about the share ``other`` of the active slots of ``0:upto`` at or
    above it: the first ``max(1, min(n, ceil(n (1 - other))))`` of the ``n`` active ones
    below; ``upto`` when fewer than two are active (all on one thread, no hand-off). (Twice a
    block; NumPy's flatnonzero and the Python around it took 30 us a call, and in a rack,
    whose worker runs Python beside, each call waited for the GIL.)"""
    n = 0
    for v in range(upto):
        if active[v]:
            n += 1
    if n < 2:
        return upto
    mine = max(1, min(n, int(math.ceil(n * (1.0 - other)))))
    c = 0
    for v in range(upto):
        if active[v]:
            c += 1
            if c == mine:
                return v + 1
    return upto


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
        self._trial_s = np.zeros(2)          # the trial's seconds: two threads, this one
        if self.threads > 1:
            from concurrent.futures import ThreadPoolExecutor
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="rtsynth-render")
            self._out1 = np.zeros_like(self.out)
            self._work1 = make_work(self.block, self.hop, self.K, self.B)
            self._make_steppers()

    def _make_steppers(self) -> None:
        inst = self.inst
        self._steppers = None
        self._fused = None
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
            self._fused = self._fused_steps()

    def _fused_steps(self):
        """``(blas, zb, args of stepper 0, of stepper 1)`` for :func:`_model_rows` when the
        instrument's decoder has a fused step (rtsynth.nn.fast: every backbone) and its
        steppers are the decoder and a fork of it (their weights, state and work), else None
        (the steppers run as they are)."""
        from ..nn.fast import blas_pointers
        inst = self.inst
        fast = getattr(inst, "_fast", None)
        if not hasattr(fast, "fused_args") or getattr(inst, "guard", None) is None:
            return None
        other = getattr(getattr(self._steppers[1], "__self__", None), "fast", None)
        if type(other) is not type(fast) or other is fast:
            return None
        blas = blas_pointers()
        if blas is None:
            return None
        from ..nn.neural import _TAPER_COEF
        zb = np.zeros((1, fast.z_dim), np.float32)
        args = [dec.fused_args(_TAPER_COEF) + (np.zeros(2, np.int64),) for dec in (fast, other)]
        return blas, zb, args[0], args[1]

    def _fused_step(self, i: int, features, slots, out_harm, out_noise) -> None:
        """Stepper ``i`` (its decoder's work) through :func:`_model_rows`: the step's
        signature after ``i``."""
        blas, zb, a0, a1 = self._fused
        w, geo, st, wk, par, h_scaled, res = a0 if i == 0 else a1
        _model_rows(blas, features, zb, slots, len(slots), w, geo, st, wk, par, h_scaled,
                    out_harm, out_noise, res)

    def _fused_tally(self) -> None:
        """The fused steps' counts, as the instrument's step counts them: rows beyond the
        pitch range, and non-finite controls (written as zeros: the instrument is muted)."""
        guard = self.inst.guard
        for a in self._fused[2:]:
            res = a[-1]
            bad, outside = res.item(0), res.item(1)
            if bad or outside:
                res.fill(0)
                if outside:
                    guard.out_of_range += 1
                if bad:
                    guard.bad_rows += 1
                    guard.mute("its controls became non-finite while playing")

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

    #: a file render (blocks with a :meth:`beside` task) tries both ways every
    #: :attr:`TRIAL_EVERY` blocks, :attr:`TRIAL_BLOCKS` blocks each, taking turns: on two
    #: threads, or the task first and then the block on this thread (:meth:`render_here`: the
    #: same samples); the faster way renders until the next trial (one thread only when
    #: its trial took less than :attr:`HERE_MARGIN` of the two threads'). On a machine that
    #: other work keeps busy, each hand-off waits for the other thread to be scheduled, and one
    #: thread was faster (187 s chorale, flute-lite, load 4.5 on 2 cores: 2.5 s against 2.8)
    TRIAL_EVERY = 96
    TRIAL_BLOCKS = 2
    HERE_MARGIN = 0.9

    def render(self, nframes: int | None = None) -> np.ndarray:
        task, self._beside = self._beside, None
        if task is None:
            return super().render(nframes)
        if self._pool is None:
            task()
            return super().render(nframes)
        k = self._beside_blocks
        self._beside_blocks = k + 1
        trial = k % self.TRIAL_EVERY
        if trial < 2 * self.TRIAL_BLOCKS:
            here = trial % 2 == 1
            if trial == 0:
                self._trial_s[:] = 0.0
        else:
            if trial == 2 * self.TRIAL_BLOCKS:
                self._beside_here = self._trial_s[1] < self.HERE_MARGIN * self._trial_s[0]
            here = self._beside_here
        t0 = time.perf_counter()
        if here:
            task()
            out = self.render_here(nframes, beside=True)
        else:
            fut = self._pool.submit(task)
            self._solo_model = True
            try:
                out = super().render(nframes)
            finally:
                self._solo_model = False
                err = fut.exception()
            if err is not None:
                raise err
        if trial < 2 * self.TRIAL_BLOCKS:
            self._trial_s[int(here)] += time.perf_counter() - t0
        self.beside_here_blocks += int(here)
        return out

    _beside_blocks = 0
    _beside_here = False
    #: blocks with a beside task rendered on this thread alone (trials included)
    beside_here_blocks = 0

    def render_here(self, nframes: int | None = None, beside: bool = False) -> np.ndarray:
        """:meth:`render` with both halves of the voice split computed on this thread, one
        after the other: the same batches, the same order of sums, so the same samples
        (``beside``: split as :meth:`render` does while it runs a :meth:`beside` task). For a
        caller that renders several engines at once, each on a thread of its own (the rack);
        no hand-off to this engine's worker."""
        self._here = True
        self._solo_model = bool(beside)
        try:
            return Engine.render(self, nframes)
        finally:
            self._here = False
            self._solo_model = False

    _here = False

    def _split_point(self, upto: int, other: float = 0.5) -> int:
        """A slot index that leaves about the share ``other`` of the active voices of ``0:upto``
        above it (the worker's), the rest below (this thread's): :func:`_split_at`."""
        return _split_at(self.voices.active, upto, other)

    def _synthesize(self, n: int, out: np.ndarray) -> None:
        a = self._split_point(self.S) if self._pool is not None else self.S
        if a >= self.S or a <= 0:
            return super()._synthesize(n, out)
        out.fill(0.0)
        out1 = self._out1[:n]
        out1.fill(0.0)
        if self._here:
            self._render_slots(a, self.S, n, out1, self._work1)
            self._render_slots(0, a, n, out, self.work)
        else:
            fut = self._pool.submit(self._render_slots, a, self.S, n, out1, self._work1)
            self._render_slots(0, a, n, out, self.work)
            fut.result()
        _add_into(out, out1, n)

    def _compute_frames(self, n: int) -> None:
        if self._steppers is None:
            return super()._compute_frames(n)
        rounds = self._plan(n)
        if rounds == 0:
            return
        rows = int(self.plan.count[:rounds].sum())
        split = self._split_point(self.n_slots, self.BESIDE_SHARE if self._solo_model else 0.5)
        bf, bs, bh, bg = self._bf, self._bs, self._bh, self._bg
        n0, n1 = _split_rows(rounds, self.plan, split, bf[0], bs[0], bf[1], bs[1], self._where)
        step0, step1 = self._steppers
        if self._fused is not None and self.inst.guard.fault is None:
            z = getattr(self.inst, "z", None)
            if z is not None and self._fused[1].shape[1]:
                self._fused[1][0] = z
            step0 = partial(self._fused_step, 0)
            step1 = partial(self._fused_step, 1)
        fut = None
        if n1 and n0 and self._here:
            step1(bf[1][:n1], bs[1][:n1], bh[1][:n1], bg[1][:n1])
        elif n1 and n0:
            fut = self._pool.submit(step1, bf[1][:n1], bs[1][:n1], bh[1][:n1], bg[1][:n1])
        elif n1:
            step0(bf[1][:n1], bs[1][:n1], bh[1][:n1], bg[1][:n1])
        if n0:
            step0(bf[0][:n0], bs[0][:n0], bh[0][:n0], bg[0][:n0])
        if fut is not None:
            fut.result()
        if self._fused is not None:
            self._fused_tally()
        _join_rows(rows, self._where, bh[0], bg[0], bh[1], bg[1], self._harm_out,
                   self._noise_out)
        self._store(0, rounds)
