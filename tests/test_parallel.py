"""The live engine on two cores (rtsynth.engine.parallel): the worker thread's half of the voices
gives the same samples as one thread rendering the same split, the worker really runs beside the
caller and ends on close, and a block allocates nothing after warm-up."""

import threading

import numpy as np
import pytest

from rtsynth import jit
from rtsynth.engine import Engine
from rtsynth.engine.parallel import (ParallelEngine, claim_block, post_block, post_parts,
                                     split_point, split_points)
from rtsynth.instruments import load_instrument

from test_engine_realtime import block_allocations, configure, events_for

BLOCK = 128


def _play(eng, blocks, voices):
    """A stream with every kind of event: a held chord of ``voices`` notes over 4 channels,
    then per block notes (steals), bends, CCs, pressure, sustain, MPE members."""
    configure(eng)
    for i in range(voices):
        eng.push(eng.time + (i * 3) % BLOCK, (0x90 | (i % 4), 36 + (i * 5) % 60, 70 + i % 50))
    out = []
    for i in range(blocks):
        for w, m in events_for(eng.time, i):
            eng.push(w, m)
        out.append(eng.render().copy())
    # a short last block (the engine renders fewer frames than its block)
    out.append(eng.render(BLOCK // 2 + 3).copy())
    return np.concatenate(out)


def _stop_worker(e):
    """End the worker's loop but leave the engine posting blocks to it: each block's worker
    half is then never claimed, and the engine takes it itself."""
    post_block(e._sync, e._ctl, -1, 0, 0, 0, 0)
    post_parts(e._sync, e._ctl, e._claim, -1, 0, 0, 0)
    e._thread.join(timeout=5)
    assert not e._thread.is_alive()


@pytest.mark.parametrize("name", ["flute-lite", "basic"])
def test_two_threads_same_samples_as_one(name):
    outs = {}
    for threads in (1, 2, "taken"):
        e = ParallelEngine(load_instrument(name), block=BLOCK, n_slots=48,
                           threads=2 if threads == "taken" else threads)
        try:
            e.warmup()
            if threads == "taken":
                _stop_worker(e)
            outs[threads] = _play(e, 120, 40)
            assert e.stats["steals"] > 0
            if threads == "taken":
                assert e.taken >= 100          # the worker's halves, rendered here
        finally:
            e.close()
    assert np.array_equal(outs[1], outs["taken"])
    ref = Engine(load_instrument(name), block=BLOCK, n_slots=48)
    ref.warmup()
    plain = _play(ref, 120, 40)
    assert np.abs(plain).max() > 0.05
    # bit for bit with one thread or two
    assert np.array_equal(outs[1], outs[2])
    # and the plain engine's samples but for the float32 rounding of the two partial sums
    assert np.abs(outs[2] - plain).max() < 1e-5


def test_worker_runs_beside_and_ends():
    e = ParallelEngine(load_instrument("basic"), block=BLOCK, n_slots=16, threads=2)
    th = e._thread
    assert th is not None and th.is_alive() and th is not threading.current_thread()
    e.warmup()
    for i in range(8):
        e.push(e.time + i, (0x90, 50 + i, 100))
    taken = e.taken
    for _ in range(4):
        e.render()
    a = split_point(e.voices.active, e.S, e.SHARE)
    assert 0 < a < e.S                      # both threads had voices to render
    assert e._seq > 0 and e._sync[1] > 0    # the worker rendered blocks beside the engine
    # the last block's other half: the worker's (posted done), or taken here because the
    # worker had not claimed it yet (a loaded machine woke it late)
    assert e._sync[1] == e._seq or e.taken > taken, (e._sync[1], e._seq, e.taken)
    e.close()
    assert not th.is_alive()
    e.close()                               # idempotent
    one = ParallelEngine(load_instrument("basic"), block=BLOCK, n_slots=16, threads=1)
    assert one._thread is None


def test_claim():
    """The worker claims a block before it starts on it; the engine takes one not claimed."""
    sync, ctl = np.zeros(3, np.int32), np.zeros(4, np.int64)
    post_block(sync, ctl, 7, 128, 3, 9, 1)
    assert list(ctl) == [128, 3, 9, 1] and sync[0] == 7 and sync[2] == 7
    assert claim_block(sync, 7) and sync[2] == -7      # nobody had it: the engine's now
    post_block(sync, ctl, 8, 128, 3, 9, 1)
    sync[2] = -8                                        # as the worker claims it ...
    sync[1] = 8                                         # ... and posts it done
    assert not claim_block(sync, 8)


def test_split_points():
    act = np.zeros(20, np.int8)
    act[[0, 2, 3, 7, 8, 9, 11, 15, 19]] = 1           # 9 active
    b = np.zeros(5, np.int64)
    assert split_points(act, 20, b, 4) == 4
    assert b[0] == 0 and b[-1] == 20 and list(b) == sorted(b)
    assert [int(act[b[j]:b[j + 1]].sum()) for j in range(4)] == [3, 2, 2, 2]
    assert split_points(act, 20, b, 10) == 1           # few voices: one part, all of them
    assert list(b) == [0, 20, 20, 20, 20]


def test_split_point():
    act = np.zeros(10, np.int8)
    assert split_point(act, 10, 0.5) == 10            # nothing sounds: no hand-off
    act[3] = 1
    assert split_point(act, 10, 0.5) == 10            # one voice: no hand-off
    act[[1, 4, 6, 9]] = 1                             # 1 3 4 6 9
    a = split_point(act, 10, 0.5)
    assert act[:a].sum() == 3 and act[a:].sum() == 2


def _threads():
    """``(Python threads' idents, OS threads' ids)`` of this process."""
    import os
    return (sorted(t.ident for t in threading.enumerate()),
            sorted(int(x) for x in os.listdir("/proc/self/task")))


def measure(name: str, n: int = 150) -> dict:
    """:func:`block_allocations` on a two-thread engine of ``name`` (16 slots), with the threads
    this process runs: before the engine, beside the measure (before and after it: none may
    start or end while it traces; tracemalloc counts every thread's allocations) and after
    :meth:`close`. Run in a fresh interpreter (:func:`test_parallel_block_allocates_nothing_after_warmup`)."""
    st = jit.status()
    out = {"mode": st["mode"], "why": st.get("why")}
    if st["mode"] != "aot":
        return out
    main = threading.main_thread().ident
    out["before"] = _threads()
    e = ParallelEngine(load_instrument(name), block=BLOCK, n_slots=16, threads=2)
    try:
        out["fused"] = e._fused is not None
        e.warmup()
        worker = e._thread
        out["worker"] = None if worker is None else worker.ident
        out["worker_tid"] = None if worker is None else worker.native_id
        out["worker_alive"] = worker is not None and worker.is_alive()
        out["beside"] = _threads()
        worst, growth = block_allocations(e, n)
        out["after"] = _threads()
        out["worker_same"] = e._thread is worker and worker.is_alive()
        out.update(worst=worst, growth=growth, n=n, seq=e._seq)
    finally:
        e.close()
    # a joined thread's OS thread ends a moment after Python sees it end
    import time
    t0 = time.monotonic()
    while out.get("worker_tid") in _threads()[1] and time.monotonic() - t0 < 5:
        time.sleep(0.01)
    out["closed"] = _threads()
    out["main"] = main
    return out


@pytest.mark.parametrize("name", ["basic", "flute-lite", "flute-gru", "flute-attention"])
def test_parallel_block_allocates_nothing_after_warmup(name):
    """Every backbone's parts (the fused CNN, GRU and attention steps in the parts' kernels)
    and the synthesis-only split: test_engine_realtime's harness and bounds. Measured in a
    fresh interpreter (as test_engine_realtime's): tracemalloc counts every thread's
    allocations, and in a test session other threads run beside the test (readers of other
    modules' processes, JACK clients' callbacks, close threads); there the only threads are
    the caller and the engine's worker, whose allocations are the block's."""
    import json
    import os
    import subprocess
    import sys
    import textwrap
    from test_engine_realtime import in_fresh_interpreter
    m = in_fresh_interpreter("test_parallel", f"measure({name!r})")
    if m["mode"] != "aot":
        pytest.skip(f"compiled kernels not in use ({m['why']}); "
                    "the JIT's dispatcher allocates while it types arguments")
    main, worker = m["main"], m["worker"]
    # Python threads: the caller alone, then the caller and the engine's worker beside the
    # whole measure (the same worker), then the caller alone again
    assert m["before"][0] == [main], m
    assert worker is not None and worker != main and m["worker_alive"], m
    assert m["beside"][0] == sorted([main, worker]) == m["after"][0], m
    assert m["worker_same"], m
    assert m["closed"][0] == [main], m
    # threads of the OS (a library's too): those before the engine and its worker, beside
    # the whole measure; none started or ended while it traced, none is left after close
    assert m["beside"][1] == sorted(m["before"][1] + [m["worker_tid"]]) == m["after"][1], m
    assert m["closed"][1] == m["before"][1], m
    assert m["fused"] == (name != "basic"), m
    n, worst, growth = m["n"], m["worst"], m["growth"]
    assert m["seq"] > n // 2, m                # the worker took part in most blocks
    assert worst <= 512, m
    assert growth <= 1024, m


def test_after_a_switch_to_the_jit(tmp_path):
    """Compiled kernels that fall back to the JIT mid-run (a call of types they were not built
    for) still work: the futex and BLAS intrinsics they use are loaded at the switch (in the
    compiled mode they are not imported), and a kernel that uses them compiles and runs."""
    import os
    import subprocess
    import sys
    import textwrap
    if jit.status()["mode"] != "aot":
        pytest.skip("the compiled kernels are not in use: nothing to fall back from")
    code = textwrap.dedent("""
        import warnings
        import numpy as np
        from rtsynth import jit
        import rtsynth.engine.parallel as P
        from rtsynth.nn import fast_kernels
        assert P._sync is None and fast_kernels._blas is None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            jit._switch_to_jit("test")
        assert P._sync is not None and fast_kernels._blas is not None
        sync, ctl, claim = np.zeros(3, np.int32), np.zeros(5, np.int64), np.zeros(4, np.int32)
        P.post_parts(sync, ctl, claim, 5, 128, 1, 4)
        assert P.claim_part(claim, 3, 5) and not P.claim_part(claim, 3, 5)
        print("ok")
    """)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))     # compiled now, not from a cache
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       env=env)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-2000:]
