"""The fused steps' own loops (rtsynth.nn.fast_kernels), against direct formulas: the heads'
vectorised exponentials, the GRU's recurrent product (the same bits in a run of any length:
one frame per call live, many frames a call offline) and the windowed attention read in ring
order (across the ring's wrap, before it is full, heads of 16 channels and others)."""

import math

import numpy as np
import pytest

from rtsynth import jit
from rtsynth.nn import fast_kernels as K_


def _sub(name):
    """A subkernel's own Numba dispatcher (compiled ahead of time it exists only inlined)."""
    return next(k for k in jit.registry() if k.key == f"nn_fast_kernels__{name}").jit()


def test_heads_exponentials_are_exp_to_float32_rounding():
    rows = _sub("_heads_exp_rows")

    @jit.kernel(**K_._FAST)
    def run(hx, gx, n):  # pragma: no cover - compiled
        rows(hx, gx, n)

    rng = np.random.default_rng(0)
    n = 500
    hx = -np.abs(rng.standard_normal((n, 64)) * 20).astype(np.float32)
    gx = np.minimum(rng.standard_normal((n, 21)) * 30, 88).astype(np.float32)
    hx[0, :4] = [0.0, -1e-8, -103.0, -np.inf]
    gx[0, :5] = [88.0, -88.0, 0.0, -np.inf, -300.0]
    hx[1, 0] = gx[1, 0] = np.nan
    h, g = hx.copy(), gx.copy()
    run(h, g, n)
    with np.errstate(invalid="ignore"):
        h_ref = np.exp(hx.astype(np.float64))
        g_ref = np.exp(-math.log(10.0) * np.logaddexp(0.0, gx.astype(np.float64)))
    for got, ref in ((h, h_ref), (g, g_ref)):
        ok = np.isfinite(ref) & (ref > 1e-37)
        assert np.max(np.abs(got[ok] - ref[ok]) / ref[ok]) < 6e-8      # float32's rounding
        assert np.all(got[np.isfinite(ref) & (ref < 1e-46)] == 0.0)
    assert h[0, 0] == 1.0 and h[0, 3] == 0.0 and g[0, 3] == 1.0 and g[0, 4] == 1.0
    assert np.isnan(h[1, 0]) and np.isnan(g[1, 0])                      # NaN reaches the heads


@pytest.mark.parametrize("H", [256, 64, 18])
def test_gru_recurrent_product_is_the_same_bits_in_a_run_of_any_length(H):
    rec = _sub("_recurrent")

    @jit.kernel(**K_._FAST)
    def run(w, hs, sl, r, c, l, out):  # pragma: no cover - compiled
        rec(w, hs, sl, r, c, l, out)

    rng = np.random.default_rng(H)
    G = 3 * H
    w = (rng.standard_normal((G, H)) / math.sqrt(H)).astype(np.float32)
    hs = rng.uniform(-1, 1, (6, 2, H)).astype(np.float32)
    sl = np.array([4, 1, 5, 0, 2, 3], np.int64)
    ref = np.einsum("gh,sh->sg", w.astype(np.float64), hs[:, 1].astype(np.float64))
    out4 = np.zeros((4, G), np.float32)
    run(w, hs, sl, 1, 4, 1, out4)                 # a run of four: slots 1, 5, 0, 2
    np.testing.assert_allclose(out4, ref[sl[1:5]], rtol=0, atol=2e-5)
    for c in (1, 2, 3):
        for r in range(1, 5 - c + 1):
            out = np.zeros((4, G), np.float32)
            run(w, hs, sl, r, c, 1, out)
            assert np.array_equal(out[:c], out4[r - 1:r - 1 + c])


def _attention_reference(qkv, slots, pos, rel_bias, scale, heads, W):
    """Direct windowed causal attention, frame by frame: each slot's keys and values by frame,
    softmax over the frames ``pos - j``, ``j < min(pos + 1, W)``, with ``rel_bias[head, j]``."""
    n, three_d = qkv.shape
    D = three_d // 3
    dh = D // heads
    keys, vals = {}, {}
    out = np.zeros((n, D))
    q64 = qkv.astype(np.float64)
    for r in range(n):
        s, p = int(slots[r]), int(pos[r])
        keys[(s, p)] = q64[r, D:2 * D]
        vals[(s, p)] = q64[r, 2 * D:]
        js = np.arange(min(p + 1, W))
        for hh in range(heads):
            c = slice(hh * dh, (hh + 1) * dh)
            sc = np.array([q64[r, c] @ keys[(s, p - j)][c] * scale + rel_bias[hh, j] for j in js])
            a = np.exp(sc - sc.max())
            a /= a.sum()
            out[r, c] = sum(a[i] * vals[(s, p - j)][c] for i, j in enumerate(js))
    return out


@pytest.mark.parametrize("D,heads,W", [(64, 4, 64), (32, 2, 8), (24, 3, 8)])
def test_attention_in_ring_order_is_windowed_attention(D, heads, W):
    attend = _sub("attend")

    @jit.kernel(**K_._FAST)
    def run(qkv, kr, vr, sl, pos, rel_rev, scale, heads, out, sc, sw):  # pragma: no cover
        attend(qkv, kr, vr, sl, pos, rel_rev, scale, heads, out, sc, sw)

    rng = np.random.default_rng(D + W)
    n_slots, frames = 3, 2 * W + 5                   # past the wrap twice, and a fresh start
    rows = [(s, t) for t in range(frames) for s in range(n_slots) if not (s == 1 and t < W // 2)]
    slots = np.array([s for s, _ in rows], np.int64)
    first = {s: min(t for q, t in rows if q == s) for s in range(n_slots)}
    pos = np.array([t - first[s] for s, t in rows], np.int64)
    qkv = rng.standard_normal((len(rows), 3 * D)).astype(np.float32)
    rel_bias = rng.standard_normal((heads, W)).astype(np.float32)
    scale = 1.0 / math.sqrt(D // heads)
    kr = rng.standard_normal((n_slots, D, W)).astype(np.float32)     # stale rings: not read
    vr = rng.standard_normal((n_slots, D, W)).astype(np.float32)
    out = np.zeros((len(rows), D), np.float32)
    run(qkv, kr, vr, slots, pos, K_.rel_reversed(rel_bias), scale, heads, out,
        np.zeros(W), np.zeros(W, np.float32))
    ref = _attention_reference(qkv, slots, pos, rel_bias, scale, heads, W)
    np.testing.assert_allclose(out, ref, rtol=0, atol=2e-5)
    assert np.abs(ref).max() > 0.1
