"""Audio-rate synthesis of all voices: harmonic bank + filtered noise (Numba).

Implements the synthesis convention of :mod:`rtsynth.spec` for every voice slot in one call.
Two deliberate approximations, both independent of the audio block size (they follow each
voice's own sample clock, so block-by-block output equals one-shot output):

- f0 is held over sub-blocks of ``SUB`` voice samples (the phase stays continuous); the
  fundamental phase is accumulated in float64 and the harmonic phasors are rebuilt from it at
  each sub-block, so there is no drift.
- harmonics at or above 0.98 of Nyquist for the sub-block's f0 are skipped: nothing aliases, even
  when vibrato or bend raises the pitch after the control frame was computed.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

SUB = 16  # samples per oscillator sub-block (f0 update rate: 3 kHz at 48 kHz)


@nb.njit(cache=True, nogil=True, inline="always")
def _phasors(theta, w, zr, zi, rr, ri, K):
    """zr + i zi = exp(i h theta), rr + i ri = exp(i h w) for h = 1..K (by recurrence)."""
    c1 = math.cos(theta)
    s1 = math.sin(theta)
    cw = math.cos(w)
    sw = math.sin(w)
    zc = 1.0
    zs = 0.0
    rc = 1.0
    rs = 0.0
    for k in range(K):
        zc, zs = zc * c1 - zs * s1, zc * s1 + zs * c1
        rc, rs = rc * cw - rs * sw, rc * sw + rs * cw
        zr[k] = zc
        zi[k] = zs
        rr[k] = rc
        ri[k] = rs


@nb.njit(cache=True, nogil=True, fastmath={'reassoc', 'contract', 'arcp'})
def render_voices(nframes, sample_rate, hop,
                  active, start_off, chan, note, vpos, theta, inc,
                  prev_h, cur_h, prev_g, cur_g, new_h, new_g, n_new, frozen,
                  noise_off, tables,
                  kill_start, kill_pos, kill_len,
                  chan_bend, chan_vib, lfo_w, chan_gain, pan_l, pan_r,
                  scratch, out, bad):
    """Render ``nframes`` samples of every active slot and add them to ``out[nframes, 2]``.

    Per slot (``S`` slots): ``active`` int8, ``start_off`` int32 (block offset where a new voice
    begins, else 0), ``chan`` int32, ``note`` float64 (midi), ``vpos`` int64 (voice clock at the
    first rendered sample), ``theta``/``inc`` float64, phasors ``zr, zi, rr, ri [S, K]`` float32,
    controls ``prev_h, cur_h [S, K]``, ``prev_g, cur_g [S, B]``; the frames that start inside
    this block ``new_h [S, R, K]``, ``new_g [S, R, B]``, ``n_new [S]`` (consumed in order);
    ``frozen`` int8 (hold controls, no new frames: fade-out copies of stolen voices);
    ``noise_off`` int64; ``tables [L, B]`` (transposed noise loops); kill fade ``kill_start`` int32 (block offset, -1: none), ``kill_pos``,
    ``kill_len`` int32. Per channel and sample: ``chan_bend [16, N]`` semitones, ``chan_vib
    [16, N]`` vibrato depth in semitones of an LFO ``sin(lfo_w * n)`` that runs on each voice's
    own clock (key-synced, so the output does not depend on when the engine started),
    ``chan_gain [16, N]``; per channel ``pan_l, pan_r``. ``bad[S]`` int8 is set for a
    slot whose output was not finite (its output is dropped, the caller resets it).
    """
    S, K = prev_h.shape
    B = prev_g.shape[1]
    L = tables.shape[0]
    lmask = L - 1
    two_pi = 2.0 * math.pi
    lim = 0.98 * math.pi
    # Per-voice working arrays: local, so the compiler knows they alias nothing and can run the
    # harmonic loop in SIMD. The phasors are rebuilt from theta, so they are not state.
    zr = np.empty(K, np.float32)
    zi = np.empty(K, np.float32)
    rr = np.empty(K, np.float32)
    ri = np.empty(K, np.float32)
    a0 = np.empty(K, np.float32)
    da = np.empty(K, np.float32)
    for v in range(S):
        if active[v] == 0:
            continue
        ch = chan[v]
        t0 = start_off[v]
        n = vpos[v]
        r = 0
        ks = kill_start[v]
        kp = kill_pos[v]
        kl = kill_len[v]
        for t in range(nframes):
            scratch[t] = 0.0
        last_t = nframes
        # phasors at the current sample, from theta and the current increment
        w = inc[v]
        hmax = K
        if w * K > lim:
            hmax = int(lim / w)
        _phasors(theta[v], w, zr, zi, rr, ri, K)
        for k in range(K):
            a0[k] = prev_h[v, k]
            da[k] = cur_h[v, k] - prev_h[v, k]
        for t in range(t0, nframes):
            ph = n % hop
            if ph == 0 and frozen[v] == 0:
                for k in range(K):
                    prev_h[v, k] = cur_h[v, k]
                for b in range(B):
                    prev_g[v, b] = cur_g[v, b]
                if r < n_new[v]:
                    for k in range(K):
                        cur_h[v, k] = new_h[v, r, k]
                    for b in range(B):
                        cur_g[v, b] = new_g[v, r, b]
                    r += 1
                for k in range(K):
                    a0[k] = prev_h[v, k]
                    da[k] = cur_h[v, k] - prev_h[v, k]
            if n % SUB == 0:
                pitch = note[v] + chan_bend[ch, t] + chan_vib[ch, t] * math.sin(lfo_w * n)
                f0 = 440.0 * 2.0 ** ((pitch - 69.0) / 12.0)
                w = two_pi * f0 / sample_rate
                inc[v] = w
                hmax = K
                if w * K > lim:
                    hmax = int(lim / w)
                _phasors(theta[v], w, zr, zi, rr, ri, K)
            if frozen[v] != 0:
                alpha = np.float32(1.0)
            else:
                alpha = np.float32((ph + 1.0) / hop)
            y = np.float32(0.0)
            for k in range(hmax):
                a = a0[k] + alpha * da[k]
                c = zr[k]
                s = zi[k]
                y += a * s
                zr[k] = c * rr[k] - s * ri[k]
                zi[k] = c * ri[k] + s * rr[k]
            idx = (noise_off[v] + n) & lmask
            pg = prev_g[v]
            cg = cur_g[v]
            tb = tables[idx]
            for b in range(B):
                g = pg[b] + alpha * (cg[b] - pg[b])
                y += g * tb[b]
            theta[v] += inc[v]
            if theta[v] > 1e6:
                theta[v] -= two_pi * math.floor(theta[v] / two_pi)
            env = chan_gain[ch, t]
            if ks >= 0 and t >= ks:
                if kp >= kl:
                    last_t = t
                    break
                env *= 1.0 - kp / kl
                kp += 1
            scratch[t] = y * env
            n += 1
        vpos[v] = n
        if ks >= 0:
            kill_pos[v] = kp
            kill_start[v] = 0
            if kp >= kl:
                active[v] = 0
        start_off[v] = 0
        acc = 0.0
        for t in range(t0, last_t):
            acc += scratch[t]
        if not math.isfinite(acc):
            bad[v] = 1
            continue
        pl = pan_l[ch]
        pr = pan_r[ch]
        for t in range(t0, last_t):
            out[t, 0] += scratch[t] * pl
            out[t, 1] += scratch[t] * pr
