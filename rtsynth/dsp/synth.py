"""Audio-rate synthesis of all voices: harmonic bank + filtered noise (Numba).

Implements the synthesis convention of :mod:`rtsynth.spec` for every voice slot in one call.
Three deliberate approximations, all independent of the audio block size (they follow each
voice's own sample clock, so block-by-block output equals one-shot output):

- f0 is held over sub-blocks of ``SUB`` voice samples (the phase stays continuous); the
  fundamental phase is accumulated in float64 and the harmonic oscillators are rebuilt from it
  at each control frame, block start and change of f0, so there is no drift (each harmonic a
  float32 coupled-form recurrence ``x -= k y; y += k x``, ``k = 2 sin(h w / 2)``, whose ``y``
  is ``sin(h theta)`` exactly but for rounding: 1e-6 over a frame).
- harmonics at or above 0.98 of Nyquist for the sub-block's f0 are skipped: nothing aliases, even
  when vibrato or bend raises the pitch after the control frame was computed.
- over each control frame, the top chunks of harmonics whose amplitudes sum to at most
  ``QUIET_TAIL`` (1e-5, -100 dBFS) are skipped: most of a flute's upper harmonics (flute-life
  on the bench's 187 s chorale: 42 harmonics a voice and sample synthesised, the tail rule
  alone would need 31; chunks of 16 would do 33, in 0.96x the synthesis time, but the
  kernel inlined in the live engine's worker then compiled ahead of time to other bits than
  the one the engine calls: tests/test_parallel.py).

How it is laid out for speed (AVX2/FMA through LLVM's loop vectorizer):

- each voice's block is cut into runs that contain no control-frame boundary, no ``SUB``
  boundary and no kill start, so the per-sample loops have no branches;
- the harmonic loop works on one float32 work array (amplitude, ramp, the oscillator's ``x``,
  ``y`` and ``k``, in chunks of ``KC`` = 32 harmonics at constant offsets from each other): the
  vectorizer sees that nothing aliases and needs no run-time checks, and the constant trip
  count gives 4 x 8 lanes with no scalar remainder; harmonics above the Nyquist cut keep a zero
  oscillator, chunks with none sounding are skipped; two samples per pass, one accumulator per
  chunk and sample (independent FMA chains), four FMAs per harmonic and sample (a complex
  rotation took six); (Numba runs LLVM's loop vectorizer but not its SLP vectorizer, so only
  innermost loops become SIMD);
- the noise is added after the harmonics, one control-frame segment at a time: four bands per
  pass, each pass a SIMD loop over the segment's samples that reads the four table rows through
  views (LLVM checks at run time that they do not overlap the work array; copying them into it
  first cost 1.14x the whole kernel on flute-life's voices) and accumulates in a local work
  array, added to the voice's samples at the end (accumulated straight into those, the kernel
  inlined in the live engine's worker compiled ahead of time to other bits than the one the
  engine calls: tests/test_parallel.py) (the noise loops band-major, padded so that a run is
  contiguous: :func:`noise_layout`);
- the oscillators are rebuilt in float64 eight harmonics at a time (``z[h+8] = z[h] z[8]``
  for ``theta`` and ``w / 2``), only as far as the chunks that sound, once a frame, when f0
  changes, when the Nyquist cut moves or more chunks sound; the f0 (``2**x``, vibrato ``sin``)
  only when its inputs did;
- gain, kill fade and pan go straight into the output, one pass over the voice's samples after
  the check that they are finite.
"""

from __future__ import annotations

import math
from collections import namedtuple

import numpy as np

from ..jit import kernel, subkernel
from ..spec import A4_HZ, A4_MIDI, FIRST_RAMP

SUB = 16  # samples per oscillator sub-block (f0 update rate: 3 kHz at 48 kHz)
NOISE_PAD = 256  # each noise loop is followed by its first NOISE_PAD samples (noise_layout)
KC = 32   # harmonics per chunk of the local work array (a constant: fixed offsets, no aliasing)
#: the top chunks of a voice's harmonics are not synthesised over a control frame when the sum
#: of their amplitudes (the larger of the frame's two ends, each harmonic) is at most this: the
#: error is at most this per sample, before channel gain and pan (-100 dB of full scale; a
#: 16-bit step is 3e-5)
QUIET_TAIL = 1e-5

# no 'nnan'/'ninf': a voice whose output is not finite must still be detected
_FM = {'nsz', 'arcp', 'contract', 'reassoc'}
_OPT = dict(fastmath=_FM, error_model='numpy', boundscheck=False)

# offsets inside one chunk of the work array
_A0 = 0        # amplitude at the start of the frame (previous control value)
_DA = KC       # ramp: current - previous control value
_OX = 2 * KC   # coupled-form oscillator: cos(h theta_n - h w / 2)
_OY = 3 * KC   # ... sin(h theta_n): the harmonic's waveform
_OK = 4 * KC   # ... its coefficient 2 sin(h w / 2)
_CH = 5 * KC   # chunk stride


@subkernel(**_OPT)
def _cmul(ar, ai, br, bi):
    return ar * br - ai * bi, ar * bi + ai * br


@subkernel(**_OPT)
def _powers8(x, tmp, o):
    """``tmp[o + l - 1] = cos(l x)``, ``tmp[o + 8 + l - 1] = sin(l x)`` for ``l = 1 .. 8``
    (float64, short product trees)."""
    c1 = math.cos(x)
    s1 = math.sin(x)
    c2, s2 = _cmul(c1, s1, c1, s1)
    c3, s3 = _cmul(c2, s2, c1, s1)
    c4, s4 = _cmul(c2, s2, c2, s2)
    c5, s5 = _cmul(c4, s4, c1, s1)
    c6, s6 = _cmul(c3, s3, c3, s3)
    c7, s7 = _cmul(c4, s4, c3, s3)
    c8, s8 = _cmul(c4, s4, c4, s4)
    tmp[o] = c1
    tmp[o + 1] = c2
    tmp[o + 2] = c3
    tmp[o + 3] = c4
    tmp[o + 4] = c5
    tmp[o + 5] = c6
    tmp[o + 6] = c7
    tmp[o + 7] = c8
    tmp[o + 8] = s1
    tmp[o + 9] = s2
    tmp[o + 10] = s3
    tmp[o + 11] = s4
    tmp[o + 12] = s5
    tmp[o + 13] = s6
    tmp[o + 14] = s7
    tmp[o + 15] = s8


@subkernel(**_OPT)
def _rebuild(th, w, tmp, wk, hmax, K, nch):
    """The oscillators of harmonics ``h = c*KC + k + 1 <= min(hmax, K)`` at phase ``h th``
    and increment ``h w``, for the coupled-form recurrence ``x -= k y; y += k x``:
    ``wk[c*_CH + _OX + k] = cos(h th - h w / 2)``, ``wk[c*_CH + _OY + k] = sin(h th)``,
    ``wk[c*_CH + _OK + k] = 2 sin(h w / 2)``; 0 above (and in the padding: silent).

    float64: ``exp(i (8 j + l) x) = exp(i 8 x)^j exp(i l x)`` for ``x = th`` and ``w / 2``
    (``tmp[0:16]``, ``tmp[16:32]``: the first eight harmonics of each).
    """
    _powers8(th, tmp, 0)
    _powers8(0.5 * w, tmp, 16)
    c8 = tmp[7]
    s8 = tmp[15]
    d8 = tmp[23]
    e8 = tmp[31]
    hm = min(hmax, K)
    nblk = nch * (KC // 8)
    # powers exp(i 8 j th), exp(i 8 j w / 2), j = 0 .. nblk-1
    pc = 1.0
    ps = 0.0
    qc = 1.0
    qs = 0.0
    for j in range(nblk):
        if j > 0:
            pc, ps = _cmul(pc, ps, c8, s8)
            qc, qs = _cmul(qc, qs, d8, e8)
        base = (j // (KC // 8)) * _CH + (j % (KC // 8)) * 8
        for l in range(8):
            ct = pc * tmp[l] - ps * tmp[8 + l]
            st = pc * tmp[8 + l] + ps * tmp[l]
            cw = qc * tmp[16 + l] - qs * tmp[24 + l]
            sw = qc * tmp[24 + l] + qs * tmp[16 + l]
            if j * 8 + l < hm:
                wk[base + _OX + l] = np.float32(ct * cw + st * sw)
                wk[base + _OY + l] = np.float32(st)
                wk[base + _OK + l] = np.float32(2.0 * sw)
            else:
                wk[base + _OX + l] = np.float32(0.0)
                wk[base + _OY + l] = np.float32(0.0)
                wk[base + _OK + l] = np.float32(0.0)


@subkernel(**_OPT)
def _load_amps(wk, p, c, K, nch):
    """Amplitude ``p`` and ramp ``c - p`` into the work array (zero padding above K); returns
    how many chunks are heard: the top chunks whose amplitudes (the larger end) sum to at most
    ``QUIET_TAIL`` are not."""
    for ci in range(nch):
        base = ci * _CH
        for k in range(KC):
            h = ci * KC + k
            if h < K:
                wk[base + _A0 + k] = p[h]
                wk[base + _DA + k] = c[h] - p[h]
            else:
                wk[base + _A0 + k] = np.float32(0.0)
                wk[base + _DA + k] = np.float32(0.0)
    tail = 0.0
    for ci in range(nch - 1, -1, -1):
        base = ci * _CH
        sm = np.float32(0.0)
        for k in range(KC):
            a = abs(wk[base + _A0 + k])
            b = abs(wk[base + _A0 + k] + wk[base + _DA + k])
            sm += a if a > b else b
        tail += sm
        if not tail <= QUIET_TAIL:     # NaN counts as heard
            return ci + 1
    return 0


@subkernel(**_OPT)
def _load_gains(g0, dg, p, c, B):
    for b in range(B):
        g0[b] = p[b]
        dg[b] = c[b] - p[b]


# offsets in the noise work array (one local array: the vectorizer sees that nothing aliases)
_NA = 0                # accumulator
_NL = NOISE_PAD        # alpha per sample
_NR = 2 * NOISE_PAD    # four table rows
_NW = 6 * NOISE_PAD


@subkernel(**_OPT)
def _noise_segment(g0, dg, tables, idx0, ph0, ramp, frozen, m, nw, hy, t):
    """``hy[t + j] += sum_b (g0_b + alpha_j dg_b) T_b[idx0 + j]`` for ``j < m <= NOISE_PAD``
    (``alpha_j = min((ph0 + j + 1) / ramp, 1)``: ``ramp`` is the hop, or the first frame's
    ramp; 1 for a frozen voice). Four bands per pass, each a SIMD loop over the samples that
    reads the four rows through views (run-time overlap checks) and the ramp and accumulator
    from the work array ``nw``."""
    if frozen:
        for j in range(m):
            nw[_NL + j] = np.float32(1.0)
    else:
        for j in range(m):
            nw[_NL + j] = np.float32(min((ph0 + j + 1.0) / ramp, 1.0))
    for j in range(m):
        nw[_NA + j] = np.float32(0.0)
    B = g0.shape[0]
    b = 0
    while b + 4 <= B:
        r0 = tables[b, idx0:idx0 + m]
        r1 = tables[b + 1, idx0:idx0 + m]
        r2 = tables[b + 2, idx0:idx0 + m]
        r3 = tables[b + 3, idx0:idx0 + m]
        a0 = g0[b]
        a1 = g0[b + 1]
        a2 = g0[b + 2]
        a3 = g0[b + 3]
        d0 = dg[b]
        d1 = dg[b + 1]
        d2 = dg[b + 2]
        d3 = dg[b + 3]
        for j in range(m):
            x = nw[_NL + j]
            nw[_NA + j] += (((a0 + x * d0) * r0[j] + (a1 + x * d1) * r1[j])
                            + ((a2 + x * d2) * r2[j] + (a3 + x * d3) * r3[j]))
        b += 4
    while b < B:
        r0 = tables[b, idx0:idx0 + m]
        a0 = g0[b]
        d0 = dg[b]
        for j in range(m):
            nw[_NA + j] += (a0 + nw[_NL + j] * d0) * r0[j]
        b += 1
    for j in range(m):
        hy[t + j] += nw[_NA + j]


def noise_layout(tables: np.ndarray) -> np.ndarray:
    """The noise loops ``[B, L]`` (:func:`rtsynth.spec.noise_tables`) as :func:`render_voices`
    reads them: ``[B, L + NOISE_PAD]`` float32, each loop followed by its first ``NOISE_PAD``
    samples again, so a run of up to ``NOISE_PAD`` samples from any offset is contiguous."""
    t = np.asarray(tables, dtype=np.float32)
    return np.ascontiguousarray(np.concatenate([t, t[:, :NOISE_PAD]], axis=1))


@subkernel(**_OPT)
def _hmax(w, K, lim):
    if w * K > lim:
        return int(lim / w)
    return K


@subkernel(**_OPT)
def _n_active(hmax, K):
    """Chunks that hold a sounding harmonic (the oscillators above ``hmax`` are 0)."""
    hm = min(hmax, K)
    if hm <= 0:
        return 0
    return (hm + KC - 1) // KC


@subkernel(**_OPT)
def _next_frame(v, r, prev_h, cur_h, prev_g, cur_g, new_h, new_g, n_new):
    """A control-frame boundary of voice ``v``: the current controls become the previous ones,
    and the next frame filed for this block (``r``-th), if any, becomes current; returns the
    next ``r``. (The bank's arrays one by one: passed the bundle, a call counts a reference to
    each of its 40 arrays, up and down.)"""
    for k in range(prev_h.shape[1]):
        prev_h[v, k] = cur_h[v, k]
    for b in range(prev_g.shape[1]):
        prev_g[v, b] = cur_g[v, b]
    if r < n_new[v]:
        for k in range(cur_h.shape[1]):
            cur_h[v, k] = new_h[v, r, k]
        for b in range(cur_g.shape[1]):
            cur_g[v, b] = new_g[v, r, b]
        r += 1
    return r


#: the work arrays of one :func:`render_voices` call (one set per thread), made once by
#: :func:`make_work`: ``harm`` the harmonic bank's chunks (amplitude, ramp, oscillators),
#: ``powers`` the oscillators' first eight harmonics (float64), ``seg_*`` the noise segments of a voice's block and their
#: gains, ``noise`` the four-band noise pass, ``alphas`` the ramp of a sub-block, ``voice``
#: one voice's samples
SynthWork = namedtuple("SynthWork", "harm powers seg_start seg_clock seg_gain seg_ramp noise "
                                    "alphas voice")


def make_work(block: int, hop: int, n_harmonics: int, n_noise_bands: int) -> SynthWork:
    """Work arrays for blocks of up to ``block`` samples (see :data:`SynthWork`)."""
    nch = (n_harmonics + KC - 1) // KC
    nseg = block // hop + 3
    f32 = np.float32
    return SynthWork(np.zeros(nch * _CH, f32), np.zeros(32, np.float64),
                     np.zeros(nseg + 1, np.int64), np.zeros(nseg, np.int64),
                     np.zeros((nseg, n_noise_bands), f32), np.zeros((nseg, n_noise_bands), f32),
                     np.zeros(_NW, f32), np.zeros(SUB, f32), np.zeros(block, f32))


@kernel(**_OPT)
def render_voices(nframes, sample_rate, hop, lo, hi, vs, rows, tables, lfo_w, work, out):
    """Render ``nframes`` samples of the active slots ``lo .. hi-1`` of the voice bank ``vs``
    (:class:`rtsynth.engine.bank.Voices`) and add them to ``out[nframes, 2]``.

    Per slot it reads the synthesis state (clock, phase, controls of the current frame and the
    frames that start in this block, consumed in order, kill fade) and the note's own bend and
    vibrato rows; per channel and sample (``rows``: :class:`rtsynth.engine.channels.ChannelRows`)
    the bend and vibrato depth in semitones (of an LFO ``sin(lfo_w * n)`` on each voice's own
    clock: key-synced, so the output does not depend on when the engine started) and the gain,
    per channel the pan. ``tables [B, L + NOISE_PAD]`` are the noise loops
    (:func:`noise_layout`). ``vs.bad[v]`` is set for a slot whose output was not finite (its
    output is dropped, the caller frees it).

    Real-time: allocates nothing (``work``: :func:`make_work`, one per thread; two threads
    render disjoint slot ranges into their own ``out``).
    """
    K = vs.prev_harm.shape[1]
    B = vs.prev_noise.shape[1]
    L = tables.shape[1] - NOISE_PAD
    lmask = L - 1
    two_pi = 2.0 * math.pi
    lim = 0.98 * math.pi
    nch = (K + KC - 1) // KC
    ramp0 = min(FIRST_RAMP, hop)
    # The work arrays: the harmonic and noise loops each read and write one of them at constant
    # offsets (no aliasing to check), so they run in SIMD. The oscillators are rebuilt from theta at
    # each block start, so they are not state.
    wk = work.harm
    tmp = work.powers
    seg_t = work.seg_start
    seg_n = work.seg_clock
    seg_g0 = work.seg_gain
    seg_dg = work.seg_ramp
    nw = work.noise
    alphas = work.alphas
    hy = work.voice
    chan_bend = rows.bend
    chan_vib = rows.vib
    chan_gain = rows.gain
    prev_h = vs.prev_harm
    cur_h = vs.cur_harm
    prev_g = vs.prev_noise
    cur_g = vs.cur_noise
    new_h = vs.new_harm
    new_g = vs.new_noise
    n_new = vs.n_new
    for v in range(lo, hi):
        if vs.active[v] == 0:
            continue
        ch = vs.chan[v]
        t0 = vs.start_off[v]
        n = vs.vpos[v]
        r = 0
        kill_at = vs.kill_start[v]
        fade_done = vs.kill_pos[v]
        fade_len = vs.kill_len[v]
        fz = vs.frozen[v] != 0
        # where the kill fade starts and where it ends (the voice stops there)
        last_t = nframes
        kst = nframes
        if kill_at >= 0:
            kst = max(kill_at, t0)
            tb = kst + max(fade_len - fade_done, 0)
            if tb < nframes:
                last_t = tb
        # oscillators at the current sample, from theta and the current increment
        th = vs.theta[v]
        w = vs.inc[v]
        hmax = _hmax(w, K, lim)
        nv = vs.note[v]
        last_pitch = math.nan      # no f0 computed yet for this voice (w is from inc)
        nact = _n_active(hmax, K)
        # chunks whose oscillators are current (from th and w_rot): rebuilt (float64) only as
        # far as the chunks that sound, once a frame and when f0 changes (the coupled form's
        # state depends on the increment)
        zr_n = 0
        w_rot = w
        namp = _load_amps(wk, prev_h[v], cur_h[v], K, nch)
        # noise segments: from each frame boundary (and the voice's first sample) on, the
        # gains; the noise is added after the harmonics, a segment at a time
        ns = 0
        seg_t[0] = t0
        seg_n[0] = n
        _load_gains(seg_g0[0], seg_dg[0], prev_g[v], cur_g[v], B)
        if fz:
            for j in range(SUB):
                alphas[j] = np.float32(1.0)
        t = t0
        while t < last_t:
            ph = n % hop
            if ph == 0 and not fz:
                r = _next_frame(v, r, prev_h, cur_h, prev_g, cur_g, new_h, new_g, n_new)
                namp = _load_amps(wk, prev_h[v], cur_h[v], K, nch)
                if t > seg_t[ns]:
                    ns += 1
                seg_t[ns] = t
                seg_n[ns] = n
                _load_gains(seg_g0[ns], seg_dg[ns], prev_g[v], cur_g[v], B)
            sp = n % SUB
            if sp == 0:
                vib = chan_vib[ch, t] + vs.vib_row[v, t]
                pitch = nv + chan_bend[ch, t] + vs.bend_row[v, t]
                if vib != 0.0:
                    pitch += vib * math.sin(lfo_w * n)
                if pitch != last_pitch:
                    # spec's midi_to_hz_scalar, written out: called across modules inside this fastmath
                    # kernel it compiles to other bits ahead of time than on the JIT (1e-9 apart)
                    f0 = A4_HZ * 2.0 ** ((pitch - A4_MIDI) / 12.0)
                    w = two_pi * f0 / sample_rate
                    last_pitch = pitch
                    hm = _hmax(w, K, lim)
                    if hm != hmax:
                        hmax = hm
                        zr_n = 0           # harmonics cut or let in: rebuilt from theta
                vs.inc[v] = w
                nact = _n_active(hmax, K)
                if w != w_rot:
                    w_rot = w
                    zr_n = 0
            if ph == 0:
                zr_n = 0                   # rebuilt from theta at each frame: no drift
            nuse = min(nact, namp)
            if zr_n < nuse:
                _rebuild(th, w_rot, tmp, wk, hmax, K, nuse)
                zr_n = nuse
            m = min(SUB - sp, last_t - t)
            if not fz:
                m = min(m, hop - ph)
                rl = ramp0 if n < hop else hop     # the first frame: spec.FIRST_RAMP
                for j in range(m):
                    alphas[j] = np.float32(min((ph + j + 1.0) / rl, 1.0))
            # the harmonics: hy[t + j] = sum_h (a0_h + alpha_j da_h) y_h for j < m, stepping
            # each harmonic's coupled-form oscillator (x -= k y; y += k x: y = sin(h theta)
            # exactly, two FMAs a step where a complex rotation takes four), over the first
            # nuse chunks (the sounding harmonics); two samples per pass over the harmonics
            # (half the loads and stores per sample), one accumulator per chunk and sample
            # (independent FMA chains). Written out here, not a subkernel: a call counts a
            # reference to each array it is passed, up and down, every SUB samples (7% of the
            # synthesis)
            h_j = 0
            while h_j + 2 <= m:
                h_al0 = alphas[h_j]
                h_al1 = alphas[h_j + 1]
                h_y0 = np.float32(0.0)
                h_y1 = np.float32(0.0)
                for h_c in range(nuse):
                    h_base = h_c * _CH
                    h_u0 = np.float32(0.0)
                    h_u1 = np.float32(0.0)
                    for h_k in range(KC):
                        h_x = wk[h_base + _OX + h_k]
                        h_s = wk[h_base + _OY + h_k]
                        h_q = wk[h_base + _OK + h_k]
                        h_a0 = wk[h_base + _A0 + h_k]
                        h_da = wk[h_base + _DA + h_k]
                        h_u0 += (h_a0 + h_al0 * h_da) * h_s
                        h_x1 = h_x - h_q * h_s
                        h_s1 = h_s + h_q * h_x1
                        h_u1 += (h_a0 + h_al1 * h_da) * h_s1
                        h_x2 = h_x1 - h_q * h_s1
                        wk[h_base + _OX + h_k] = h_x2
                        wk[h_base + _OY + h_k] = h_s1 + h_q * h_x2
                    h_y0 += h_u0
                    h_y1 += h_u1
                hy[t + h_j] = h_y0
                hy[t + h_j + 1] = h_y1
                h_j += 2
            if h_j < m:
                h_al = alphas[h_j]
                h_y = np.float32(0.0)
                for h_c in range(nuse):
                    h_base = h_c * _CH
                    h_u = np.float32(0.0)
                    for h_k in range(KC):
                        h_x = wk[h_base + _OX + h_k]
                        h_s = wk[h_base + _OY + h_k]
                        h_q = wk[h_base + _OK + h_k]
                        h_u += (wk[h_base + _A0 + h_k] + h_al * wk[h_base + _DA + h_k]) * h_s
                        h_x1 = h_x - h_q * h_s
                        wk[h_base + _OX + h_k] = h_x1
                        wk[h_base + _OY + h_k] = h_s + h_q * h_x1
                    h_y += h_u
                hy[t + h_j] = h_y
            zr_n = nuse                # chunks above were not rotated: stale until rebuilt
            th += m * w
            if th > 1e6:
                th -= two_pi * math.floor(th / two_pi)
            t += m
            n += m
        seg_t[ns + 1] = last_t
        for k in range(ns + 1):
            ts = seg_t[k]
            te = seg_t[k + 1]
            c = ts
            while c < te:
                mm = min(NOISE_PAD, te - c)
                nc = seg_n[k] + (c - ts)
                _noise_segment(seg_g0[k], seg_dg[k], tables, (vs.noise_off[v] + nc) & lmask,
                               nc % hop, ramp0 if nc < hop else hop, fz, mm, nw, hy, c)
                c += mm
        if last_t < nframes:
            # the fade ended at last_t: that sample still takes its control frame and f0
            if n % hop == 0 and not fz:
                r = _next_frame(v, r, prev_h, cur_h, prev_g, cur_g, new_h, new_g, n_new)
            if n % SUB == 0:
                pitch = (nv + chan_bend[ch, last_t] + vs.bend_row[v, last_t]
                         + (chan_vib[ch, last_t] + vs.vib_row[v, last_t]) * math.sin(lfo_w * n))
                vs.inc[v] = two_pi * (440.0 * 2.0 ** ((pitch - 69.0) / 12.0)) / sample_rate
        vs.theta[v] = th
        vs.vpos[v] = n
        if kill_at >= 0:
            fade_end = fade_done + max(0, last_t - kst)
            vs.kill_pos[v] = fade_end
            vs.kill_start[v] = 0
            if fade_end >= fade_len:
                vs.active[v] = 0
        vs.start_off[v] = 0
        # a voice whose samples are not finite is dropped (float64 sum: NaN and inf propagate)
        acc = 0.0
        for t in range(t0, last_t):
            acc += hy[t]
        if not math.isfinite(acc):
            vs.bad[v] = 1
            continue
        # gain and kill fade in float64, pan, into out: one pass each side of the fade's start
        pl = rows.pan_l[ch]
        pr = rows.pan_r[ch]
        e1 = min(kst, last_t)
        for t in range(t0, e1):
            sc = hy[t] * chan_gain[ch, t]
            out[t, 0] += sc * pl
            out[t, 1] += sc * pr
        for t in range(max(e1, t0), last_t):
            sc = hy[t] * (chan_gain[ch, t] * (1.0 - (fade_done + (t - kst)) / fade_len))
            out[t, 0] += sc * pl
            out[t, 1] += sc * pr
