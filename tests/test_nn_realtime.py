"""The neural instrument's real-time step allocates nothing after warm-up (issue 17.4).

An engine plays flute-lite (the default instrument: the CNN fast path, as the ``-v2`` and
full-size CNN models), flute-gru and flute-attention (the GRU and attention fast paths) with
notes in and beyond its trained range (the range taper), bends, channel and poly pressure, CCs,
for 200 blocks after warm-up; ``tracemalloc`` watches every
``instrument.step`` call the engine makes, and (compiled kernels) every whole block.

Under the JIT (a stale or missing build) the Numba dispatcher itself allocates a little while it
types each kernel call's arguments (~100 bytes at a time, freed), so the bound on one step is
what one dispatch costs; before this change one step's peak was ~4.4 kB (views, NumPy scalars,
a reduction, broadcast iterators, the ufunc machinery of ``np.matmul``); flute-gru's was
~1.1 kB and flute-attention's ~10 kB (the same, and f-string state keys per layer).
"""

import tracemalloc

import pytest

from rtsynth import jit
from rtsynth.engine import Engine
from rtsynth.instruments import load_instrument

from test_engine_realtime import BLOCK, configure, events_for


@pytest.mark.parametrize("model, backbone", [("flute-lite", "cnn"), ("flute-v2", "cnn"),
                                             ("flute-gru", "gru"),
                                             ("flute-attention", "attention")])
def test_neural_step_allocates_nothing_after_warmup(model, backbone):
    inst = load_instrument(model)
    assert inst.arch["backbone"] == backbone and inst.pitch_range is not None
    e = Engine(inst, block=BLOCK, n_slots=16)
    e.warmup()
    configure(e)
    for i in range(40):
        for w, m in events_for(e.time, i):
            e.push(w, m)
        e.render()
    n = 200
    for i in range(n):
        for w, m in events_for(e.time + i * BLOCK, 40 + i):
            e.push(w, m)
    real = inst.step
    steps = [0, 0]                   # calls, worst peak (no list that grows while traced)

    def watched(features, slots, out_harm, out_noise):
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        real(features, slots, out_harm, out_noise)
        peak = tracemalloc.get_traced_memory()[1]
        steps[0] += 1
        steps[1] = max(steps[1], peak - before)

    inst.step = watched
    aot = jit.status()["mode"] == "aot"
    out_of_range = inst.guard.out_of_range
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        worst_block = 0
        for i in range(n):
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            e.render()
            worst_block = max(worst_block, tracemalloc.get_traced_memory()[1] - before)
        growth = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
        del inst.step
    assert steps[0] >= n and e.stats["events"] >= 13 * n
    assert inst.guard.out_of_range > out_of_range          # the taper ran too
    worst_step = steps[1]            # (includes the 32 bytes of ``before``, an int)
    if aot:
        # the engine's own bounds (tests/test_engine_realtime.py), now with a model playing
        assert worst_step <= 256, worst_step
        assert worst_block <= 512, worst_block
        assert growth <= 1024, growth
    else:
        # a few kernel dispatches' argument typing at a time, nothing of the step's own
        assert worst_step <= 768, worst_step
