"""Numba kernels of the NumPy real-time path (:mod:`rtsynth.nn.fast`): everything of a decoder
step that is not a matrix product, fused, so that a step is a few BLAS calls plus a few of
these instead of dozens of small NumPy calls (each ~1-3 us: at 1 to 8 voices, the usual size of
an offline render, they cost more than the arithmetic). Float32 in and out; the arithmetic
inside is done in float64 where it is cheaper to be exact than to think about it.

This Numba build has no vector math library (SVML): ``exp``/``tanh`` here are scalar libm calls,
~10x slower per element than NumPy's SIMD loops, so the many-element transcendental work (the
GRU gates) stays in NumPy; the heads (85 per voice) and attention (one exp per frame and head)
are cheap enough here.
"""

from __future__ import annotations

import math

import numpy as np

from ..jit import kernel, subkernel

LN10 = math.log(10.0)
LN2 = math.log(2.0)
_jit = kernel


@_jit
def bias_leaky(y, b):  # pragma: no cover - compiled
    """In place: ``y = leaky_relu(y + b, 0.1)``."""
    n, c = y.shape
    for r in range(n):
        for j in range(c):
            v = y[r, j] + b[j]
            y[r, j] = v if v > 0 else 0.1 * v


@_jit
def residual(h, t, b):  # pragma: no cover - compiled
    """In place: ``h += t + b``."""
    n, c = h.shape
    for r in range(n):
        for j in range(c):
            h[r, j] += t[r, j] + b[j]


@_jit
def cnn_ring(flat, h, slots, pos, rows_per_slot, base, ring, off, cat):  # pragma: no cover
    """One CNN layer's cache: write the layer input ``h`` (frame ``pos``) into each slot's ring
    (``ring`` rows from row ``slot * rows_per_slot + base`` of ``flat``), then gather the taps,
    frames ``pos - off[j]``, into ``cat [n, k, C]``. A tap before the voice's first frame
    (``pos < off[j]``) is zero: a fresh voice has zero history without its ring being cleared."""
    n, C = h.shape
    k = off.shape[0]
    for r in range(n):
        row0 = slots[r] * rows_per_slot + base
        w = row0 + pos[r] % ring
        for c in range(C):
            flat[w, c] = h[r, c]
        for j in range(k):
            if pos[r] < off[j]:
                for c in range(C):
                    cat[r, j, c] = 0.0
            else:
                src = row0 + (pos[r] - off[j]) % ring
                for c in range(C):
                    cat[r, j, c] = flat[src, c]


@subkernel
def layer_norm(h, g, b, out):  # pragma: no cover - compiled
    """``out = LayerNorm(h) * g + b`` (eps 1e-5, biased variance, as torch)."""
    n, c = h.shape
    for r in range(n):
        mu = 0.0
        for j in range(c):
            mu += h[r, j]
        mu /= c
        var = 0.0
        for j in range(c):
            d = h[r, j] - mu
            var += d * d
        inv = 1.0 / math.sqrt(var / c + 1e-5)
        for j in range(c):
            out[r, j] = (h[r, j] - mu) * inv * g[j] + b[j]


@_jit
def heads_args(o, o2, b_head, hx, gx):  # pragma: no cover - compiled
    """The first half of ``Decoder._heads``, after the head's two matrix products ``o``, ``o2``:
    the arguments of its exponentials, for NumPy's SIMD ``exp`` (this Numba build has no vector
    math library; a scalar ``exp`` per output was 1.3 us of a CNN row's 7). ``hx [n, K]``: the
    harmonic logits minus their row's largest (softmax); ``gx [n, 1+B]``: minus the amplitude
    logit and minus the noise logits (``sigmoid(a) = 1 / (1 + exp(-a))``), at most 88, so
    that ``exp`` stays finite in float32 (the sigmoid's power is then 0, as in the limit)."""
    n = o.shape[0]
    K = hx.shape[1]
    B = gx.shape[1] - 1
    for r in range(n):
        mx = -np.inf
        for j in range(K):
            v = o[r, 1 + j] + o2[r, 1 + j] + b_head[1 + j]
            hx[r, j] = v
            if v > mx:
                mx = v
        for j in range(K):
            hx[r, j] -= mx
        v = -(o[r, 0] + o2[r, 0] + b_head[0])
        gx[r, 0] = 88.0 if v > 88.0 else v         # NaN stays NaN
        for j in range(B):
            v = -(o[r, 1 + K + j] + o2[r, 1 + K + j] + b_head[1 + K + j])
            gx[r, 1 + j] = 88.0 if v > 88.0 else v


def heads_exp(hx, gx):
    """The exponentials between :func:`heads_args` and :func:`heads_out`, in place, with
    NumPy's SIMD loops: ``hx = exp(hx)`` (``hx <= 0``); ``gx = sigmoid(a) ** ln 10 = exp(-ln 10
    log(1 + exp(-a)))`` (``-a <= 88``: nothing overflows). NaN stays NaN, caught by
    :func:`heads_out`."""
    np.exp(hx, out=hx)
    np.exp(gx, out=gx)
    gx += _ONE_F32                 # constants made once: a NumPy scalar is an allocation
    np.log(gx, out=gx)
    gx *= _MINUS_LN10_F32
    np.exp(gx, out=gx)


_ONE_F32 = np.float32(1.0)
_MINUS_LN10_F32 = np.float32(-LN10)


@_jit
def heads_out(hx, gx, feat, h_scaled, amp_max, noise_max, f0_off, mask_c0, out_harm, out_noise,
              bad):  # pragma: no cover - compiled
    """The rest of ``Decoder._heads``, from :func:`heads_exp`'s ``hx``, ``gx``: amplitude and
    noise gains ``max * sigmoid ** ln 10 + 1e-7``, the harmonic softmax times the Nyquist mask
    of the frame's f0, renormalised to the amplitude. A row with a non-finite value is written
    as zeros and flagged in ``bad``; returns the number of such rows."""
    n = hx.shape[0]
    K = out_harm.shape[1]
    B = out_noise.shape[1]
    n_bad = 0
    for r in range(n):
        amp = amp_max * gx[r, 0] + 1e-7
        f0 = math.exp(feat[r, 0] * (2.0 * LN2) + f0_off)
        tot = 0.0
        for j in range(K):
            m = mask_c0 - f0 * h_scaled[j]
            m = 0.0 if m < 0.0 else (1.0 if m > 1.0 else m)
            e = hx[r, j] * m
            out_harm[r, j] = e
            tot += e
        sc = amp / max(tot, 1e-30)
        chk = sc
        for j in range(K):
            out_harm[r, j] *= sc
        for j in range(B):
            v = noise_max * gx[r, 1 + j] + 1e-7
            out_noise[r, j] = v
            chk += v
        chk += tot
        if math.isfinite(chk):
            bad[r] = False
        else:
            bad[r] = True
            n_bad += 1
            for j in range(K):
                out_harm[r, j] = 0.0
            for j in range(B):
                out_noise[r, j] = 0.0
    return n_bad


@_jit
def frame_positions(slots, pos_state, pos):  # pragma: no cover - compiled
    """Rows of several consecutive frames (a slot may appear once per frame, frames in order):
    ``pos[r]`` = the slot's frame counter + how many earlier rows had the same slot."""
    n = slots.shape[0]
    for r in range(n):
        pos[r] = pos_state[slots[r]]
        pos_state[slots[r]] += 1
    for r in range(n):           # back to the counters before the rows (stored after the step)
        pos_state[slots[r]] -= 1


@_jit
def store_positions(slots, pos, pos_state):  # pragma: no cover - compiled
    """``pos_state[slot] = pos[r] + 1`` in row order (the last row of a slot wins)."""
    for r in range(slots.shape[0]):
        pos_state[slots[r]] = pos[r] + 1


@_jit
def zero_slots(a, slots):  # pragma: no cover - compiled
    """``a[slots] = 0`` for a GRU's state ``a [n_slots, L, H]`` (NumPy's fancy assignment of a
    scalar allocates its broadcast: 3.5 kB a reset)."""
    for i in range(slots.shape[0]):
        r = a[slots[i]]
        for j in range(r.shape[0]):
            for k in range(r.shape[1]):
                r[j, k] = 0.0


@_jit
def add_bias(h, b):  # pragma: no cover - compiled
    """In place: ``h += b`` (NumPy's broadcast of a row makes an iterator: an allocation)."""
    n, c = h.shape
    for r in range(n):
        for j in range(c):
            h[r, j] += b[j]


@_jit
def decoder_inputs(features, z, x, n, lo, hi, clip):  # pragma: no cover - compiled
    """The decoder's input rows ``x[:n] = [features, z]`` (``z [1, Z]`` for every row, or
    ``[n, Z]``; ``Z`` may be 0), the pitch column clamped to ``[lo, hi]`` in float32 when
    ``clip`` (as ``np.clip`` with Python floats). Returns how many rows' pitch was outside it
    (a NaN pitch counts: the range taper then sees it, as before)."""
    F = features.shape[1]
    Z = z.shape[1]
    lo32 = np.float32(lo)
    hi32 = np.float32(hi)
    outside = 0
    for r in range(n):
        for j in range(F):
            x[r, j] = features[r, j]
        if clip:
            v = x[r, 0]
            if not (v >= lo32 and v <= hi32):
                outside += 1
            if v < lo32:
                x[r, 0] = lo32
            elif v > hi32:
                x[r, 0] = hi32
        zr = r if z.shape[0] > 1 else 0
        for j in range(Z):
            x[r, F + j] = z[zr, j]
    return outside


@_jit
def taper_args(features, n, lo, hi, coef, a):  # pragma: no cover - compiled
    """The range taper's exponent per row, the float32 steps of the NumPy original:
    ``a = coef * (max(p - hi, 0) + max(lo - p, 0))`` for the pitch feature ``p``."""
    lo32 = np.float32(lo)
    hi32 = np.float32(hi)
    c32 = np.float32(coef)
    zero = np.float32(0.0)
    for r in range(n):
        p = features[r, 0]
        u = p - hi32
        u = u if u > zero else (zero if u <= zero else u)     # np.maximum: NaN stays NaN
        d = lo32 - p
        d = d if d > zero else (zero if d <= zero else d)
        a[r] = (u + d) * c32


@_jit
def scale_rows(out_harm, out_noise, n, a):  # pragma: no cover - compiled
    """In place, rows ``r < n``: ``out_harm[r] *= a[r]``, ``out_noise[r] *= a[r]``."""
    for r in range(n):
        g = a[r]
        for j in range(out_harm.shape[1]):
            out_harm[r, j] *= g
        for j in range(out_noise.shape[1]):
            out_noise[r, j] *= g


# -- whole-batch GRU and attention steps ---------------------------------------------------------
# A GRU step was ~15 NumPy calls per frame, and its recurrent product W_hh [3H, H] @ h [H, n]
# runs badly in OpenBLAS at a few columns (177 us at n = 4 for the shipped H = 256: it packs the
# whole matrix each call, against 57 us for the loop below); the attention's ``math.exp`` is a
# scalar libm call per frame, head and offset. These kernels take every row of a multi-frame
# call at once, with their exponentials computed here, vectorised:

_FM = {"nsz", "arcp", "contract", "reassoc"}     # no 'nnan'/'ninf': NaN must reach the heads
_FAST = dict(fastmath=_FM, error_model="numpy", boundscheck=False)


@subkernel(**_FAST)
def _exp30(x):  # pragma: no cover - compiled
    """``exp(x)`` in float64 for ``x`` clamped to [-30, 30] (beyond, the gates are saturated
    below float32's resolution): ``exp(x / 64) ** 64``, the inner one a degree-10 Taylor
    polynomial (|x / 64| <= 0.47: relative error below 1e-9 after the squarings). Only
    arithmetic, so loops over it vectorise (this Numba build has no vector ``exp``). NaN stays
    NaN."""
    x = 30.0 if x > 30.0 else (-30.0 if x < -30.0 else x)
    y = x * (1.0 / 64.0)
    p = 1.0 + y * (1.0 + y * (0.5 + y * (1.0 / 6.0 + y * (1.0 / 24.0 + y * (
        1.0 / 120.0 + y * (1.0 / 720.0 + y * (1.0 / 5040.0 + y * (1.0 / 40320.0 + y * (
            1.0 / 362880.0 + y * (1.0 / 3628800.0))))))))))
    p = p * p
    p = p * p
    p = p * p
    p = p * p
    p = p * p
    return p * p


@subkernel(**_FAST)
def _matvec2(w, h, r0, r1, two, out0, out1):  # pragma: no cover - compiled
    """``out0 = w @ h[r0]`` and, when ``two``, ``out1 = w @ h[r1]`` (``w [G, H]``): one pass
    over ``w`` for both rows, four of its rows at a time (float32 sums)."""
    G, H = w.shape
    j = 0
    while j + 4 <= G:
        a0 = np.float32(0.0)
        a1 = np.float32(0.0)
        a2 = np.float32(0.0)
        a3 = np.float32(0.0)
        b0 = np.float32(0.0)
        b1 = np.float32(0.0)
        b2 = np.float32(0.0)
        b3 = np.float32(0.0)
        if two:
            for k in range(H):
                x = h[r0, k]
                y = h[r1, k]
                w0 = w[j, k]
                w1 = w[j + 1, k]
                w2 = w[j + 2, k]
                w3 = w[j + 3, k]
                a0 += w0 * x
                a1 += w1 * x
                a2 += w2 * x
                a3 += w3 * x
                b0 += w0 * y
                b1 += w1 * y
                b2 += w2 * y
                b3 += w3 * y
            out1[j] = b0
            out1[j + 1] = b1
            out1[j + 2] = b2
            out1[j + 3] = b3
        else:
            for k in range(H):
                x = h[r0, k]
                a0 += w[j, k] * x
                a1 += w[j + 1, k] * x
                a2 += w[j + 2, k] * x
                a3 += w[j + 3, k] * x
        out0[j] = a0
        out0[j + 1] = a1
        out0[j + 2] = a2
        out0[j + 3] = a3
        j += 4
    while j < G:
        a0 = np.float32(0.0)
        b0 = np.float32(0.0)
        for k in range(H):
            a0 += w[j, k] * h[r0, k]
            b0 += w[j, k] * h[r1, k]
        out0[j] = a0
        if two:
            out1[j] = b0
        j += 1


@subkernel(**_FAST)
def _gru_gates(gir, gh, b_rz, b_in, b_hn, hs, ho, e):  # pragma: no cover - compiled
    """One row's GRU update from its input products ``gir [3H]`` and recurrent ones ``gh``:
    ``r, z = sigmoid(gi + gh + b)``, ``n = tanh(gi_n + b_in + r (gh_n + b_hn))``,
    ``h' = n + z (h - n)`` into ``ho`` and the state row ``hs`` (``tanh a = 1 - 2 / (exp 2a +
    1)``). Loops over 1-D rows, each writing one array (they vectorise); ``e``: work [3H]."""
    H = hs.shape[0]
    for j in range(2 * H):
        e[j] = 1.0 / (1.0 + _exp30(-(np.float64(gir[j]) + gh[j] + b_rz[j])))
    for j in range(H):
        a = np.float64(gir[2 * H + j]) + b_in[j] + e[j] * (np.float64(gh[2 * H + j]) + b_hn[j])
        e[2 * H + j] = 1.0 - 2.0 / (_exp30(2.0 * a) + 1.0)
    for j in range(H):
        ng = e[2 * H + j]
        v = ng + e[H + j] * (hs[j] - ng)
        ho[j] = v
    for j in range(H):
        hs[j] = ho[j]


@subkernel(**_FAST)
def gru_rows(gi, w_hh, b_rz, b_in, b_hn, hv, slots, hout, gh0, gh1, e):  # pragma: no cover
    """One GRU layer over rows in order (a slot's rows in frame order, as a multi-frame call
    gives them): row ``r`` steps slot ``slots[r]`` from its state ``hv[slot]`` with its input
    products ``gi [n, 3H]`` (``x @ W_ih.T``); the new state goes to ``hv[slot]`` and
    ``hout [n, H]``. Two consecutive rows of different slots are independent and share one
    pass over ``w_hh [3H, H]``; ``gh0``, ``gh1``: work ``[3H]`` float32, ``e`` ``[3H]``
    float64."""
    n = slots.shape[0]
    r = 0
    while r < n:
        s0 = slots[r]
        two = r + 1 < n and slots[r + 1] != s0
        s1 = slots[r + 1] if two else s0
        _matvec2(w_hh, hv, s0, s1, two, gh0, gh1)
        _gru_gates(gi[r], gh0, b_rz, b_in, b_hn, hv[s0], hout[r], e)
        if two:
            _gru_gates(gi[r + 1], gh1, b_rz, b_in, b_hn, hv[s1], hout[r + 1], e)
            r += 2
        else:
            r += 1


@subkernel(**_FAST)
def _scores16(qkv, r, kr, s, c0, nv, sw):  # pragma: no cover - compiled
    """:func:`attend`'s ``sw[w] = q . k[w]`` for a head of 16 channels, ``w < nv``: the 16
    ``q`` in registers, one store a slot (a loop of ``sw[w] +=`` over the channels stayed
    scalar: ``sw`` might alias the ring)."""
    q0 = qkv[r, c0]
    q1 = qkv[r, c0 + 1]
    q2 = qkv[r, c0 + 2]
    q3 = qkv[r, c0 + 3]
    q4 = qkv[r, c0 + 4]
    q5 = qkv[r, c0 + 5]
    q6 = qkv[r, c0 + 6]
    q7 = qkv[r, c0 + 7]
    q8 = qkv[r, c0 + 8]
    q9 = qkv[r, c0 + 9]
    q10 = qkv[r, c0 + 10]
    q11 = qkv[r, c0 + 11]
    q12 = qkv[r, c0 + 12]
    q13 = qkv[r, c0 + 13]
    q14 = qkv[r, c0 + 14]
    q15 = qkv[r, c0 + 15]
    k = kr[s]
    for w in range(nv):
        v = q0 * k[c0, w]
        v += q1 * k[c0 + 1, w]
        v += q2 * k[c0 + 2, w]
        v += q3 * k[c0 + 3, w]
        v += q4 * k[c0 + 4, w]
        v += q5 * k[c0 + 5, w]
        v += q6 * k[c0 + 6, w]
        v += q7 * k[c0 + 7, w]
        v += q8 * k[c0 + 8, w]
        v += q9 * k[c0 + 9, w]
        v += q10 * k[c0 + 10, w]
        v += q11 * k[c0 + 11, w]
        v += q12 * k[c0 + 12, w]
        v += q13 * k[c0 + 13, w]
        v += q14 * k[c0 + 14, w]
        v += q15 * k[c0 + 15, w]
        sw[w] = v


@subkernel(**_FAST)
def attend(qkv, kr, vr, slots, pos, rel_rev, scale, n_heads, out, sc, sw):  # pragma: no cover
    """Windowed causal attention for one frame of each row: write k, v of the frame into the
    slot's rings at ``pos % W`` (keys ``kr [slots, D, W]`` and values ``vr [slots, D, W]``,
    transposed, so that one frame's scores against the whole ring and its weighted sum of
    the values are contiguous multiply-adds),
    attend over the frames that exist (offsets 0..min(pos, W-1)),
    ``softmax(q.k * scale + rel_bias[head, offset])``, weighted sum of v into ``out``. Rows in
    order: a slot's later frame sees the keys its earlier rows wrote. ``sc``: work ``[W]``
    float64, ``sw``: ``[W]`` float32. The exponentials are :func:`_exp30` (arguments <= 0;
    below -30 a weight is under 1e-13 of the largest).

    Every loop runs over ring slots ``w`` in memory order, ``0 .. nv-1`` (the frames that
    exist are those slots: all ``W`` once the ring is full, else ``0 .. pos``), none over
    offsets (whose ring slot wraps: scalar loops, half the attention's cost): the bias of
    slot ``w`` is ``rel_rev[head, W - 1 - pos % W + w]``, the bias table reversed and
    doubled (:func:`rel_reversed`), so the scores, softmax and weighted sum vectorise
    (a head of 16 channels: :func:`_scores16`). Half the cost of the loops over offsets and
    over the values' rows (flute-attention, 4 voices x 43 frames: 4.4 -> 2.x us a row)."""
    n = slots.shape[0]
    W = kr.shape[2]
    D = kr.shape[1]
    dh = D // n_heads
    for r in range(n):
        s = slots[r]
        p = pos[r]
        wp = p % W
        for c in range(D):
            kr[s, c, wp] = qkv[r, D + c]
            vr[s, c, wp] = qkv[r, 2 * D + c]
        nv = min(p + 1, W)
        b0 = W - 1 - wp
        for hh in range(n_heads):
            c0 = hh * dh
            if dh == 16:
                _scores16(qkv, r, kr, s, c0, nv, sw)
            else:
                for w in range(nv):
                    sw[w] = 0.0
                for d in range(dh):
                    q = qkv[r, c0 + d]
                    for w in range(nv):
                        sw[w] += q * kr[s, c0 + d, w]
            mx = -np.inf
            for w in range(nv):
                v = sw[w] * scale + rel_rev[hh, b0 + w]
                sc[w] = v
                mx = max(mx, v)
            tot = 0.0
            for w in range(nv):
                e = _exp30(sc[w] - mx)
                sc[w] = e
                tot += e
            inv = 1.0 / tot
            for w in range(nv):
                sw[w] = np.float32(sc[w] * inv)
            for d in range(dh):
                acc = np.float32(0.0)
                for w in range(nv):
                    acc += sw[w] * vr[s, c0 + d, w]
                out[r, c0 + d] = acc


def rel_reversed(rel_bias: np.ndarray) -> np.ndarray:
    """``rel_bias [H, W]`` (by offset) as :func:`attend` reads it: ``[H, 2W]``, column ``i``
    the bias of offset ``(W - 1 - i) mod W``."""
    W = rel_bias.shape[1]
    i = np.arange(2 * W)
    return np.ascontiguousarray(rel_bias[:, (W - 1 - i) % W], dtype=np.float32)


# -- the whole CNN step in one nogil kernel ------------------------------------------------------
# FastCNNDecoder.step is ~38 calls from Python (BLAS products and the kernels above), each taking
# the GIL back: two threads stepping at once spend most of a small block handing it over. Here
# the same step is one kernel, its products NumPy's own BLAS called through function pointers
# (rtsynth.nn._blas: the calls np.dot makes), its exponentials float32 libm calls instead of
# NumPy's SIMD loops (the heads, and the range taper), so the live engine's worker thread
# (rtsynth.engine.parallel) steps its voices without the GIL.

from .. import jit as _jit

if _jit.status()["mode"] == "jit":
    from . import _blas                  # the JIT and the ahead-of-time build
else:
    _blas = None                         # compiled: Numba is not imported (see ensure_jit)


def ensure_jit() -> None:
    """The kernels fell back to the JIT after this module was imported: load the intrinsics."""
    global _blas
    if _blas is None and _jit.status()["mode"] == "jit":
        from . import _blas as b
        _blas = b
    if _blas is not None:
        _register_fused()


@subkernel
def _dot(blas, m, a, b, c):  # pragma: no cover - compiled
    """``c[:m] = a[:m] @ b`` as ``np.dot`` computes it (``a`` C-contiguous rows of
    ``b.shape[0]`` floats, any shape; one row: ``sgemv``, else ``sgemm``)."""
    k = b.shape[0]
    nn = b.shape[1]
    if m == 1:
        _blas.gemv(blas[1], k, nn, b, nn, a, c)
    elif m > 1:
        _blas.gemm(blas[0], m, nn, k, a, k, b, nn, c, nn)


@subkernel
def _gemm_rows(blas, m, k, a, lda, b, c, ldc):  # pragma: no cover - compiled
    """``c[:m] = a[:m, :k] @ b[:k]`` (row strides ``lda``, ``ldc``) through ``sgemm``, in
    calls of at most 10^6 multiply-adds and at least two rows (``a`` and ``c`` hold two or
    more). OpenBLAS computes such a call in its small-matrix kernel; a larger one takes a
    buffer from its allocator, behind a lock that the other thread then waits on (the live
    engine's flute-gru blocks took 9 ms instead of 0.75 with two threads). A one-row product
    would go to ``sgemv``, whose sums differ in the last bit: so a row's result is the same in
    whatever batch it comes (the live engine's one frame, a part of it, the offline engine's
    many frames), for widths that are multiples of 8."""
    if m <= 0:
        return
    nn = b.shape[1]
    ch = max(2, 1000000 // max(1, nn * k))
    m2 = max(m, 2)
    i = 0
    while i < m2:
        r = min(ch, m2 - i)
        if r == 1:                    # the last row alone: with the one before (the same bits)
            i -= 1
            r = 2
        _blas.gemm(blas[0], r, nn, k, a[i:], lda, b, nn, c[i:], ldc)
        i += r


@subkernel(**_FAST)
def _exp104(x):  # pragma: no cover - compiled
    """``exp(x)`` in float64 for the heads, exact to ~1e-11 relative (far below float32's
    resolution) for ``x <= 88.7``: ``x`` clamped to [-104, 88.7] (below -104 the float32
    result is 0 either way), ``exp(x / 256) ** 256``, the inner one a degree-11 Taylor
    polynomial (|x / 256| <= 0.41). Only arithmetic, so the loops over it vectorise (this
    Numba build has no vector ``exp``: a libm ``expf`` per element was ~1/6 of a CNN row).
    NaN stays NaN."""
    x = 88.7 if x > 88.7 else (-104.0 if x < -104.0 else x)
    y = x * (1.0 / 256.0)
    p = 1.0 + y * (1.0 + y * (0.5 + y * (1.0 / 6.0 + y * (1.0 / 24.0 + y * (
        1.0 / 120.0 + y * (1.0 / 720.0 + y * (1.0 / 5040.0 + y * (1.0 / 40320.0 + y * (
            1.0 / 362880.0 + y * (1.0 / 3628800.0 + y * (1.0 / 39916800.0)))))))))))
    p = p * p
    p = p * p
    p = p * p
    p = p * p
    p = p * p
    p = p * p
    p = p * p
    return p * p


@subkernel(**_FAST)
def _log1p01(w):  # pragma: no cover - compiled
    """``log(1 + w)`` in float64 for ``w`` in [0, 1]: ``2 atanh(s)``, ``s = w / (2 + w) <=
    1/3``, its series to ``s**21`` (relative error below 1e-11). Arithmetic only (vectorises);
    NaN stays NaN."""
    s = w / (2.0 + w)
    q = s * s
    t = 1.0 + q * (1.0 / 3.0 + q * (1.0 / 5.0 + q * (1.0 / 7.0 + q * (1.0 / 9.0 + q * (
        1.0 / 11.0 + q * (1.0 / 13.0 + q * (1.0 / 15.0 + q * (1.0 / 17.0 + q * (
            1.0 / 19.0 + q * (1.0 / 21.0))))))))))
    return 2.0 * s * t


@subkernel(**_FAST)
def _heads_exp_rows(hx, gx, n):  # pragma: no cover - compiled
    """:func:`heads_exp` on rows ``:n``: ``hx = exp(hx)``, ``gx = sigmoid(a) ** ln 10 =
    exp(-ln 10 softplus(gx))`` (``gx = -a <= 88``; ``softplus(u) = max(u, 0) + log1p(exp(-|u|))``),
    in float64 arithmetic that vectorises (:func:`_exp104`, :func:`_log1p01`; the float32
    libm calls were ~1/6 of a CNN row), rounded once to float32. NaN stays NaN."""
    K = hx.shape[1]
    G = gx.shape[1]
    for r in range(n):
        h = hx[r]
        for j in range(K):
            h[j] = np.float32(_exp104(np.float64(h[j])))
        g = gx[r]
        for j in range(G):
            u = np.float64(g[j])
            sp = (u if u > 0.0 else 0.0) + _log1p01(_exp104(-abs(u)))
            g[j] = np.float32(_exp104(-LN10 * sp))


@subkernel
def cnn_rows(blas, features, z, slots, n, w, geo, st, wk, par, h_scaled, out_harm, out_noise,
             res):  # pragma: no cover - compiled
    """:meth:`rtsynth.nn.fast.FastCNNDecoder.step` and the instrument's range taper on rows
    ``:n`` (``features [.., F]``, ``slots``), in one call: ``w``, ``geo``, ``st``, ``wk``,
    ``par`` from :meth:`FastCNNDecoder.fused_args` (weights, ring geometry, state, work,
    constants), ``blas``: :func:`rtsynth.nn.fast.blas_pointers`. Adds the rows whose controls
    were not finite (written as zeros, their voices reset) to ``res[0]``, those beyond the
    pitch range to ``res[1]``."""
    w_pre, b_pre, w_inp, b_inp, w_conv, b_conv, w_mix, b_mix, w_head_y, w_head_p, b_head = w
    rings, base, off = geo
    flat, pos_state = st
    x, p, h, cat, y, t, pos, o, o2, hx, gx, bad, tap = wk
    if n == 0:
        return
    lo = par[0]
    hi = par[1]
    sl = slots[:n]
    R = 0
    for l in range(rings.shape[0]):
        R += rings[l]
    n_out = decoder_inputs(features, z, x, n, lo, hi, par[2] != 0.0)
    _dot(blas, n, x, w_pre, p)
    bias_leaky(p[:n], b_pre)
    _dot(blas, n, p, w_inp, h)
    add_bias(h[:n], b_inp)
    frame_positions(sl, pos_state, pos[:n])
    for l in range(w_conv.shape[0]):
        cnn_ring(flat, h[:n], sl, pos[:n], R, base[l], rings[l], off[l], cat[:n])
        _dot(blas, n, cat, w_conv[l], y)
        bias_leaky(y[:n], b_conv[l])
        _dot(blas, n, y, w_mix[l], t)
        residual(h[:n], t[:n], b_mix[l])
    store_positions(sl, pos[:n], pos_state)
    _dot(blas, n, h, w_head_y, o)
    _dot(blas, n, p, w_head_p, o2)
    heads_args(o[:n], o2[:n], b_head, hx[:n], gx[:n])
    _heads_exp_rows(hx, gx, n)
    n_bad = heads_out(hx[:n], gx[:n], features, h_scaled, par[3], par[4], par[5], par[6],
                      out_harm[:n], out_noise[:n], bad[:n])
    if n_bad:
        for r in range(n):
            if bad[r]:
                pos_state[sl[r]] = 0
    if n_out and par[2] != 0.0:
        taper_args(features, n, lo, hi, par[7], tap)
        for r in range(n):
            tap[r] = math.exp(tap[r])
        scale_rows(out_harm, out_noise, n, tap)
    res[0] += n_bad
    res[1] += n_out


# -- the whole GRU and attention steps in one nogil kernel each ------------------------------------
# As cnn_rows: the step of every row of a call (one frame of each voice, live; many frames,
# offline) in one kernel, its products NumPy's BLAS through function pointers. A GRU's
# recurrence must go frame by frame, but consecutive rows of different voices are independent:
# up to four of them share one pass over the recurrent weights (_recurrent: no BLAS, whose
# sgemm packs the whole W_hh each call at these few rows).

@subkernel
def _mm(blas, m, k, a, b, c):  # pragma: no cover - compiled
    """``c[:m] = a[:m, :k] @ b[:k]`` for 2-D ``a`` and ``c``: :func:`_gemm_rows`."""
    _gemm_rows(blas, m, k, a, a.shape[1], b, c, c.shape[1])


@subkernel
def _heads_rows(blas, n, y, p, features, w_head_y, w_head_p, b_head, o, o2, hx, gx, bad,
                h_scaled, par, out_harm, out_noise):  # pragma: no cover - compiled
    """The heads of rows ``:n`` from the backbone's output ``y`` and the input layer's ``p``
    (``Decoder._heads``: cnn_rows' steps); returns the number of non-finite rows."""
    _mm(blas, n, w_head_y.shape[0], y, w_head_y, o)
    _mm(blas, n, w_head_p.shape[0], p, w_head_p, o2)
    heads_args(o[:n], o2[:n], b_head, hx[:n], gx[:n])
    _heads_exp_rows(hx, gx, n)
    return heads_out(hx[:n], gx[:n], features, h_scaled, par[3], par[4], par[5], par[6],
                     out_harm[:n], out_noise[:n], bad[:n])


@subkernel
def _taper_rows(features, n, n_out, par, tap, out_harm, out_noise):  # pragma: no cover
    """The instrument's range taper (``par[7]``, 0: none) on rows ``:n`` when ``n_out`` rows
    were beyond the pitch range (cnn_rows' last steps)."""
    if n_out and par[2] != 0.0 and par[7] != 0.0:
        taper_args(features, n, par[0], par[1], par[7], tap)
        for r in range(n):
            tap[r] = math.exp(tap[r])
        scale_rows(out_harm, out_noise, n, tap)


@subkernel(**_FAST)
def _recurrent(w, hs, sl, r, c, l, out):  # pragma: no cover - compiled
    """``out[q] = w @ hs[sl[r + q], l]`` for ``q < c`` (``w = W_hh [3H, H]``, rows over
    ``H``): four rows of ``w`` at a time (4 kB, in L1 while the ``c`` states pass over them),
    each output a float32 dot product over ``H`` (vectorised: the same code for every row,
    so a row's value is the same in a run of any length). No packing of ``w``: at one to
    four rows OpenBLAS's sgemm copies the whole 768 kB of the shipped GRU's ``W_hh`` each
    call (59 us a pass on this VM's Zen 3 at H = 256; this loop 16.5 us for one row, 42 us
    for four; 1.2 / 2.7 us against 4.8 at H = 64)."""
    G, H = w.shape
    j = 0
    while j + 4 <= G:
        for q in range(c):
            hv = hs[sl[r + q], l]
            a0 = np.float32(0.0)
            a1 = np.float32(0.0)
            a2 = np.float32(0.0)
            a3 = np.float32(0.0)
            for k in range(H):
                x = hv[k]
                a0 += w[j, k] * x
                a1 += w[j + 1, k] * x
                a2 += w[j + 2, k] * x
                a3 += w[j + 3, k] * x
            o = out[q]
            o[j] = a0
            o[j + 1] = a1
            o[j + 2] = a2
            o[j + 3] = a3
        j += 4
    while j < G:
        for q in range(c):
            hv = hs[sl[r + q], l]
            a0 = np.float32(0.0)
            for k in range(H):
                a0 += w[j, k] * hv[k]
            out[q, j] = a0
        j += 1


@subkernel
def _gru_layer(blas, n, sl, l, gi, w_hh, b_rz, b_in, b_hn, hs, hb, ghb, e, y):  # pragma: no cover
    """Layer ``l`` of a GRU over rows ``:n`` in order (:func:`gru_rows`' recurrence): runs of
    up to four consecutive rows of different slots share one pass over ``w_hh [3H, H]``
    (:func:`_recurrent` into ``ghb [4, 3H]``); then each row's gates (:func:`_gru_gates`)
    update the state ``hs[slot, l]`` and write ``y[r]``. (``blas``, ``hb``: unused since the
    recurrent product is :func:`_recurrent`, kept in the signature.)"""
    r = 0
    while r < n:
        c = 1
        while c < 4 and r + c < n:
            s = sl[r + c]
            dup = False
            for q in range(c):
                if sl[r + q] == s:
                    dup = True
            if dup:
                break
            c += 1
        _recurrent(w_hh, hs, sl, r, c, l, ghb)
        for q in range(c):
            _gru_gates(gi[r + q], ghb[q], b_rz, b_in, b_hn, hs[sl[r + q], l], y[r + q], e)
        r += c


@subkernel
def gru_fused(blas, features, z, slots, n, w, geo, st, wk, par, h_scaled, out_harm, out_noise,
              res):  # pragma: no cover - compiled
    """:meth:`rtsynth.nn.fast.FastGRUDecoder.step` (and the range taper, ``par[7]``) on rows
    ``:n`` in one call, as :func:`cnn_rows` (the same arguments: ``w``, ``geo``, ``st``,
    ``wk``, ``par`` from :meth:`FastGRUDecoder.fused_args`): per layer one product of every
    row's input, then the recurrence row by row in frame order (:func:`_gru_layer`)."""
    w_pre, b_pre, w_ih, w_hh, b_rz, b_in, b_hn, w_head_y, w_head_p, b_head = w
    hs = st[0]
    x, p, gi, ya, yb, hb, ghb, e, o, o2, hx, gx, bad, tap = wk
    if n == 0:
        return
    sl = slots[:n]
    n_out = decoder_inputs(features, z, x, n, par[0], par[1], par[2] != 0.0)
    _mm(blas, n, w_pre.shape[0], x, w_pre, p)
    bias_leaky(p[:n], b_pre)
    _mm(blas, n, geo[0], p, w_ih[0], gi)
    _gru_layer(blas, n, sl, 0, gi, w_hh[0], b_rz[0], b_in[0], b_hn[0], hs, hb, ghb, e, ya)
    y = ya
    for l in range(1, w_ih.shape[0]):
        yo = yb if l % 2 == 1 else ya
        _mm(blas, n, geo[l], y, w_ih[l], gi)
        _gru_layer(blas, n, sl, l, gi, w_hh[l], b_rz[l], b_in[l], b_hn[l], hs, hb, ghb, e, yo)
        y = yo
    n_bad = _heads_rows(blas, n, y, p, features, w_head_y, w_head_p, b_head, o, o2, hx, gx,
                        bad, h_scaled, par, out_harm, out_noise)
    if n_bad:
        for r in range(n):
            if bad[r]:
                hr = hs[sl[r]]
                for i in range(hr.shape[0]):
                    for j in range(hr.shape[1]):
                        hr[i, j] = 0.0
    _taper_rows(features, n, n_out, par, tap, out_harm, out_noise)
    res[0] += n_bad
    res[1] += n_out


@subkernel
def attention_fused(blas, features, z, slots, n, w, geo, st, wk, par, h_scaled, out_harm,
                    out_noise, res):  # pragma: no cover - compiled
    """:meth:`rtsynth.nn.fast.FastAttentionDecoder.step` (and the range taper) on rows ``:n``
    in one call, as :func:`cnn_rows` (arguments from :meth:`FastAttentionDecoder.fused_args`):
    per layer the products of every row at once, the attention row by row (:func:`attend`:
    a voice's later frame sees the keys its earlier rows wrote)."""
    (w_pre, b_pre, w_inp, b_inp, g1, n1, w_qkv, b_qkv, w_proj, b_proj, g2, n2, w_ff1, b_ff1,
     w_ff2, b_ff2, rel_rev, w_head_y, w_head_p, b_head) = w
    kr, vr, pos_state = st
    x, p, h, a, t, qkv, att, f, pos, o, o2, hx, gx, bad, tap, sc, sw = wk
    if n == 0:
        return
    sl = slots[:n]
    D = h.shape[1]
    n_out = decoder_inputs(features, z, x, n, par[0], par[1], par[2] != 0.0)
    _mm(blas, n, w_pre.shape[0], x, w_pre, p)
    bias_leaky(p[:n], b_pre)
    _mm(blas, n, w_inp.shape[0], p, w_inp, h)
    add_bias(h[:n], b_inp)
    frame_positions(sl, pos_state, pos[:n])
    for l in range(g1.shape[0]):
        layer_norm(h[:n], g1[l], n1[l], a[:n])
        _mm(blas, n, D, a, w_qkv[l], qkv)
        add_bias(qkv[:n], b_qkv[l])
        attend(qkv[:n], kr[l], vr[l], sl, pos[:n], rel_rev, par[8], geo[0], att[:n], sc, sw)
        _mm(blas, n, D, att, w_proj[l], t)
        residual(h[:n], t[:n], b_proj[l])
        layer_norm(h[:n], g2[l], n2[l], a[:n])
        _mm(blas, n, D, a, w_ff1[l], f)
        bias_leaky(f[:n], b_ff1[l])
        _mm(blas, n, w_ff2.shape[1], f, w_ff2[l], t)
        residual(h[:n], t[:n], b_ff2[l])
    store_positions(sl, pos[:n], pos_state)
    n_bad = _heads_rows(blas, n, h, p, features, w_head_y, w_head_p, b_head, o, o2, hx, gx,
                        bad, h_scaled, par, out_harm, out_noise)
    if n_bad:
        for r in range(n):
            if bad[r]:
                pos_state[sl[r]] = 0
    _taper_rows(features, n, n_out, par, tap, out_harm, out_noise)
    res[0] += n_bad
    res[1] += n_out


@kernel
def gru_step(blas, features, z, slots, n, w, geo, st, wk, par, h_scaled, out_harm, out_noise,
             res):  # pragma: no cover - compiled
    """:func:`gru_fused`, called from Python (:meth:`FastGRUDecoder.step`)."""
    gru_fused(blas, features, z, slots, n, w, geo, st, wk, par, h_scaled, out_harm, out_noise,
              res)


@kernel
def cnn_step(blas, features, z, slots, n, w, geo, st, wk, par, h_scaled, out_harm, out_noise,
             res):  # pragma: no cover - compiled
    """:func:`cnn_rows`, called from Python (:meth:`FastCNNDecoder.step`): the whole CNN step
    in one nogil call instead of ~38 (BLAS products and kernels, each a GIL hand-off)."""
    cnn_rows(blas, features, z, slots, n, w, geo, st, wk, par, h_scaled, out_harm, out_noise,
             res)


@kernel
def attention_step(blas, features, z, slots, n, w, geo, st, wk, par, h_scaled, out_harm,
                   out_noise, res):  # pragma: no cover - compiled
    """:func:`attention_fused`, called from Python (:meth:`FastAttentionDecoder.step`)."""
    attention_fused(blas, features, z, slots, n, w, geo, st, wk, par, h_scaled, out_harm,
                    out_noise, res)


#: the length of each backbone's weight bundle (``fused_args()[0]``): how :func:`fused_rows`
#: tells them apart
W_CNN, W_GRU, W_ATTENTION = 11, 10, 20


def fused_rows(blas, features, z, slots, n, w, geo, st, wk, par, h_scaled, out_harm, out_noise,
               res):
    """In a kernel: the fused step of whichever backbone the bundles are
    (:func:`cnn_rows`, :func:`gru_fused` or :func:`attention_fused`, told apart by the
    length of ``w``), chosen when the caller compiles. Not callable from Python."""
    raise TypeError("fused_rows is called from kernels only")


_FUSED_REGISTERED = []


def _register_fused() -> None:
    """``fused_rows``' typing (Numba's ``overload``): only where Numba is imported."""
    if _FUSED_REGISTERED:
        return
    _FUSED_REGISTERED.append(True)
    from numba.extending import overload

    @overload(fused_rows, jit_options={"nogil": True})
    def _fused_rows(blas, features, z, slots, n, w, geo, st, wk, par, h_scaled, out_harm,
                    out_noise, res):
        k = len(w.types) if hasattr(w, "types") else -1
        if k == W_CNN:
            fn = cnn_rows
        elif k == W_GRU:
            fn = gru_fused
        elif k == W_ATTENTION:
            fn = attention_fused
        else:
            return None

        def impl(blas, features, z, slots, n, w, geo, st, wk, par, h_scaled, out_harm,
                 out_noise, res):  # pragma: no cover - compiled
            fn(blas, features, z, slots, n, w, geo, st, wk, par, h_scaled, out_harm,
               out_noise, res)
        return impl


if _blas is not None:
    _register_fused()
