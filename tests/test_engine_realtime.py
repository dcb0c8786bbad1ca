"""The real-time contract of Engine.render: after warm-up, a block allocates nothing.

Two checks, because tracemalloc does not see the compiled kernels' own allocator (libc's):

- ``tracemalloc`` around each rendered block (compiled kernels, the mode ``setup.sh`` builds
  and ``rtsynth play`` runs) sees every Python-level allocation: lists, sorted copies, index
  arrays, views, NumPy temporaries;
- the sources of the kernels the block loop runs create no array.

Blocks carry events of every kind the block loop handles: notes (with steals), bends, CCs,
channel and poly pressure, breath, CC74, sustain, an MPE zone and its member channels.
"""

import json
import os
import subprocess
import sys
import textwrap
import tracemalloc

import pytest

from rtsynth import aot, jit
from rtsynth.engine import Engine
from rtsynth.instruments import load_instrument

BLOCK = 128


def events_for(t, i):
    """One block's worth of events at absolute sample ``t`` (the ``i``-th block)."""
    ch = i % 3
    return [
        (t + 3, (0x90 | ch, 48 + (i * 7) % 36, 60 + i % 60)),
        (t + 9, (0xE0 | ch, 0, 64 + i % 40)),
        (t + 17, (0xB0 | ch, 1, i % 100)),
        (t + 25, (0xD0 | ch, i % 127)),
        (t + 33, (0xA0 | ch, 48 + (i * 7) % 36, 40 + i % 80)),
        (t + 41, (0xB0 | ch, 74, (i * 5) % 128)),
        (t + 49, (0xB0 | ch, 2, (i * 3) % 128)),
        (t + 57, (0xB0 | ch, 11, 90 + i % 30)),
        (t + 65, (0xB0 | ch, 7, 100 + i % 20)),
        (t + 73, (0xB0 | ch, 64, 127 if i % 8 < 4 else 0)),
        (t + 81, (0x80 | ch, 48 + (i * 7 + 21) % 36, 30)),
        (t + 89, (0xE1 + i % 4, i % 128, 70)),           # MPE member bends
        (t + 97, (0xD1 + i % 4, (i * 11) % 128)),        # ... and pressure
    ]


def configure(e):
    """Set up an MPE lower zone of 4 members on the engine (RPN 6 on channel 1)."""
    for j, m in enumerate(((0xB0, 101, 0), (0xB0, 100, 6), (0xB0, 6, 4))):
        e.push(e.time + j, m)


def block_allocations(e, n: int, first: int = 40) -> tuple[int, int]:
    """The allocation harness (this test's, :mod:`test_parallel`'s): on a warmed-up engine,
    the MPE zone and ``first`` blocks of :func:`events_for` (every path once more), then ``n``
    blocks' events queued before tracing (push is the producer's) and those ``n`` blocks
    rendered under ``tracemalloc``: ``(worst peak of one block, growth over all)`` in bytes."""
    configure(e)
    for i in range(first):
        for w, m in events_for(e.time, i):
            e.push(w, m)
        e.render()
    for i in range(n):
        for w, m in events_for(e.time + i * BLOCK, first + i):
            e.push(w, m)
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        worst = 0
        for i in range(n):
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            e.render()
            worst = max(worst, tracemalloc.get_traced_memory()[1] - before)
        growth = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    return worst, growth


def measure(n: int = 200) -> dict:
    """:func:`block_allocations` on the ``basic`` instrument (16 slots: steals), with the
    number of threads this process runs while it traces (tracemalloc counts every thread's)."""
    import threading
    st = jit.status()
    out = {"mode": st["mode"], "why": st.get("why")}
    if st["mode"] != "aot":
        return out
    e = Engine(load_instrument("basic"), block=BLOCK, n_slots=16)
    e.warmup()
    worst, growth = block_allocations(e, n)
    out.update(worst=worst, growth=growth, n=n, events=e.stats["events"],
               steals=e.stats["steals"], threads=threading.active_count())
    return out


def in_fresh_interpreter(module: str, call: str) -> dict:
    """``module.call`` (a test module's function returning a JSON-able dict) run in a fresh
    interpreter: tracemalloc there sees no thread of this test session."""
    code = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})
        from {module} import *
        print("RESULT " + json.dumps({call}))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(next(l for l in r.stdout.splitlines() if l.startswith("RESULT "))[7:])


def test_render_allocates_nothing_after_warmup():
    # measured in a fresh interpreter: tracemalloc counts every thread's allocations, and in a
    # test session other threads run beside the test (readers of processes other modules
    # started, JACK clients' callbacks, close threads): one full run under load saw 1360 bytes
    # in one block that were none of the engine's
    m = in_fresh_interpreter("test_engine_realtime", "measure()")
    if m["mode"] != "aot":
        pytest.skip(f"compiled kernels not in use ({m['why']}); "
                    "the JIT's dispatcher allocates while it types arguments")
    assert m["threads"] == 1, m                  # nothing but the engine allocated while traced
    n, worst, growth = m["n"], m["worst"], m["growth"]
    assert m["events"] >= 13 * n and m["steals"] > 0, m
    # what is left: Python ints and floats of the loop's arithmetic (a few dozen bytes at a
    # time). One array of a block's samples is 1 kB; the old loop's list, sort and index arrays
    # were ~4 kB a block.
    assert worst <= 512, m
    # consumed events are freed, nothing is kept (a leak of 8 bytes a block would be 1.6 kB)
    assert growth <= 1024, m


ALLOCATING = {"zeros", "empty", "ones", "full", "array", "zeros_like", "empty_like",
              "ones_like", "full_like", "copy", "concatenate", "stack", "arange", "linspace",
              "flatnonzero", "nonzero", "where", "sort", "argsort", "unique"}
BLOCK_MODULES = ("rtsynth.engine.bank", "rtsynth.engine.block", "rtsynth.engine.channels",
                 "rtsynth.engine.frames", "rtsynth.dsp.synth", "rtsynth.dsp.effects",
                 "rtsynth.instruments.basic")


def test_block_kernels_make_no_arrays():
    """What tracemalloc cannot see under the compiled kernels: no kernel (or subkernel) the
    block loop runs creates an array (Numba would allocate it on every call)."""
    import ast
    import inspect
    import textwrap as tw
    import rtsynth.engine  # noqa: F401 - defines the kernels
    import rtsynth.instruments.basic  # noqa: F401
    found, seen = [], 0
    for k in jit.registry():
        if k.module not in BLOCK_MODULES:
            continue
        seen += 1
        tree = ast.parse(tw.dedent(inspect.getsource(k.py_func)))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ALLOCATING
                    and (node.func.attr == "copy" or isinstance(node.func.value, ast.Name)
                         and node.func.value.id in ("np", "numpy"))):
                found.append(f"{k.module}.{k.name}: {ast.unparse(node)}")
    assert seen >= 20
    assert not found, found
