"""The master chain (rtsynth.dsp.effects.master_chain) and the safety stage.

The eight-line fast path of the master chain (``_master8``) must give the bits of the plain
per-sample loop: checked against a Python transcription of that loop (float64, the same order
of operations) and against the kernel's own general loop (taken when the scratch array is too
small for the fast path's passes), over blocks of odd sizes that make every delay line wrap,
with non-finite input, limiting and a dry chain.
"""

from __future__ import annotations

import math

import numpy as np

from rtsynth.dsp.effects import MASTER_RUN, MasterState, master_chain, safety_clip


def _reference(ms: MasterState, buf: np.ndarray, gain: float) -> None:
    """The master chain sample by sample in Python (the kernel's general loop, transcribed)."""
    f32 = np.float32
    m = len(ms.fdn_len)
    g = ms.lim_gain[0]
    limited = False
    dc = ms.dc
    for t in range(buf.shape[0]):
        xl = float(buf[t, 0]) * gain
        xr = float(buf[t, 1]) * gain
        if not (math.isfinite(xl) and math.isfinite(xr)):
            ms.counters[0] += 1
            xl = xr = 0.0
        yl = xl - dc[0] + ms.dc_r * dc[1]
        dc[0], dc[1] = xl, yl
        yr = xr - dc[2] + ms.dc_r * dc[3]
        dc[2], dc[3] = xr, yr
        if ms.reverb > 0.0:
            outs = [float(ms.fdn_buf[i, ms.fdn_pos[i]]) for i in range(m)]
            s = 0.0
            for o in outs:
                s += o
            s *= 2.0 / m
            inp = 0.5 * (yl + yr)
            rl = rr = 0.0
            for i in range(m):
                fb = (outs[i] - s) * ms.room
                lp = float(ms.fdn_lp[i]) + 0.35 * (fb - float(ms.fdn_lp[i]))
                ms.fdn_lp[i] = f32(lp)
                val = lp + inp
                if not math.isfinite(val):
                    val = 0.0
                ms.fdn_buf[i, ms.fdn_pos[i]] = f32(val)
                ms.fdn_pos[i] = (ms.fdn_pos[i] + 1) % ms.fdn_len[i]
                if i % 2 == 0:
                    rl += outs[i]
                else:
                    rr += outs[i]
            yl += ms.reverb * rl * (2.0 / m)
            yr += ms.reverb * rr * (2.0 / m)
        peak = max(abs(yl), abs(yr))
        if peak * g > ms.ceiling:
            g = ms.ceiling / peak
            limited = True
        yl *= g
        yr *= g
        g = 1.0 - (1.0 - g) * ms.lim_release
        buf[t, 0] = min(max(yl, -1.0), 1.0)
        buf[t, 1] = min(max(yr, -1.0), 1.0)
    ms.lim_gain[0] = g
    if limited:
        ms.counters[1] += 1


def _signal(n: int, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, 2)) * 0.3).astype(np.float32)
    x[n // 5, 0] = np.nan
    x[n // 3, 1] = np.inf
    x[n // 2:n // 2 + 200] *= 25.0           # the limiter acts
    return x


def _general(ms: MasterState, buf: np.ndarray, gain: float) -> None:
    """The kernel's general loop: a scratch array too small for the eight-line passes."""
    master_chain(buf, gain, ms.reverb, ms.room, ms.fdn_buf, ms.fdn_len, ms.fdn_pos, ms.fdn_lp,
                 np.zeros(len(ms.fdn_len)), ms.dc, ms.dc_r, ms.lim_gain, ms.lim_release,
                 ms.ceiling, ms.counters)


def _run(process, sizes, x, reverb=0.12):
    ms = MasterState(48000, reverb=reverb)
    out, o = [], 0
    for n in sizes:
        b = x[o:o + n].copy()
        process(ms, b, 0.5)
        out.append(b)
        o += n
    return np.concatenate(out), ms


def test_master_chain_same_bits_as_the_per_sample_loop_in_python():
    sizes = [1, 700, 2, 1500, 333, 1000]            # the shortest line (1423) wraps
    x = _signal(sum(sizes))
    fast, ms_f = _run(lambda ms, b, g: ms.process(b, g), sizes, x)
    ref, ms_r = _run(_reference, sizes, x)
    assert np.array_equal(fast, ref)
    assert np.array_equal(ms_f.fdn_buf, ms_r.fdn_buf)
    assert np.array_equal(ms_f.fdn_pos, ms_r.fdn_pos)
    assert np.array_equal(ms_f.fdn_lp, ms_r.fdn_lp)
    assert np.array_equal(ms_f.dc, ms_r.dc) and ms_f.lim_gain[0] == ms_r.lim_gain[0]
    assert list(ms_f.counters) == list(ms_r.counters) and ms_f.counters[0] == 2
    assert ms_f.counters[1] >= 1


def test_master_chain_fast_path_equals_the_general_loop_over_long_blocks():
    sizes = [8192, 128, 1, 3001, 64, 8192, MASTER_RUN, MASTER_RUN + 1, 8192, 517] * 2
    x = _signal(sum(sizes), seed=5)
    for reverb in (0.12, 0.5, 0.0):
        fast, ms_f = _run(lambda ms, b, g: ms.process(b, g), sizes, x, reverb)
        gen, ms_g = _run(_general, sizes, x, reverb)
        assert np.array_equal(fast, gen), reverb
        assert np.array_equal(ms_f.fdn_buf, ms_g.fdn_buf)
        assert list(ms_f.counters) == list(ms_g.counters)
        assert np.all(np.isfinite(fast)) and np.abs(fast).max() <= 1.0


def test_master_chain_tail_rings_after_the_input_stops():
    ms = MasterState(48000, reverb=0.12)
    b = np.zeros((8192, 2), np.float32)
    b[:100] = 0.5
    ms.process(b, 0.5)
    tail = np.zeros((8192, 2), np.float32)
    ms.process(tail, 0.5)
    assert 1e-4 < np.abs(tail).max() < 0.1        # the reverb's tail, the dry signal gone


def test_safety_clip_zeroes_non_finite_counts_them_and_clips():
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((5000, 2)) * 2).astype(np.float32)
    x[10, 0] = np.nan
    x[11, 1] = -np.inf
    x[12, :] = np.inf
    want = x.astype(np.float64) * 0.7
    bad = ~np.isfinite(want)
    want[bad] = 0.0
    want = np.clip(want, -1.0, 1.0).astype(np.float32)
    c = np.zeros(2, np.int64)
    b = x.copy()
    safety_clip(b, 0.7, c)
    assert np.array_equal(b, want)
    assert c[0] == bad.sum() == 4
    mono = x[:, :1].copy()
    safety_clip(mono, 0.7, c)
    assert np.array_equal(mono, want[:, :1]) and c[0] == 4 + 2
