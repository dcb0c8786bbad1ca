"""A NumPy real-time path for the GRU decoder: the same numbers as ``Decoder.step_slots``.

At the sizes of a voice batch (1 to 64 rows) torch's per-operator dispatch costs more than the
arithmetic: one torch step for 4 voices took ~0.5 ms here, most of it overhead. This path runs
the same frame as a handful of NumPy matrix products on preallocated buffers, with the weights
copied out of the decoder once. It is exact up to float32 rounding (tested against torch).
"""

from __future__ import annotations

import math

import numpy as np

LN10 = math.log(10.0)


def _sigmoid(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    np.negative(x, out=out)
    np.exp(out, out=out)
    out += 1.0
    np.reciprocal(out, out=out)
    return out


class FastGRUDecoder:
    """Weights of a GRU ``Decoder`` (one layer) as NumPy arrays, and its one-frame step.

    State: ``h [n_slots, hidden]`` float32, owned here (the torch state is not used).
    """

    def __init__(self, decoder, n_slots: int):
        import torch
        bb = decoder.backbone
        if getattr(bb, "kind", "") != "gru" or bb.layers != 1:
            raise ValueError("the fast path supports one-layer GRU decoders")
        g = lambda t: np.ascontiguousarray(t.detach().cpu().numpy().astype(np.float32))  # noqa
        with torch.no_grad():
            self.w_pre = g(decoder.pre.weight.T)            # [F+Z, P]
            self.b_pre = g(decoder.pre.bias)
            self.w_ih = g(bb.gru.weight_ih_l0.T)            # [P, 3H]
            self.b_ih = g(bb.gru.bias_ih_l0)
            self.w_hh = g(bb.gru.weight_hh_l0.T)            # [H, 3H]
            self.b_hh = g(bb.gru.bias_hh_l0)
            w_head = g(decoder.head.weight.T)               # [H+P, 1+K+B]
            self.b_head = g(decoder.head.bias)
            self.h_scaled = g(decoder.h_scaled)
        self.hidden = bb.hidden
        self.w_head_y = np.ascontiguousarray(w_head[: self.hidden])
        self.w_head_p = np.ascontiguousarray(w_head[self.hidden:])
        self.k = decoder.n_harmonics
        self.z_dim = decoder.z_dim
        self.amp_max = float(decoder.amp_max)
        self.noise_max = float(decoder.noise_max)
        self.f0_off = float(decoder._f0_log_offset)
        self.mask_c0 = float(decoder._mask_c0)
        self.n_slots = n_slots
        self.h = np.zeros((n_slots, self.hidden), np.float32)
        m = n_slots
        H, P = self.hidden, self.w_pre.shape[1]
        self._x = np.zeros((m, self.w_pre.shape[0]), np.float32)
        self._p = np.zeros((m, P), np.float32)
        self._gi = np.zeros((m, 3 * H), np.float32)
        self._gh = np.zeros((m, 3 * H), np.float32)
        self._t = np.zeros((m, 2 * H), np.float32)
        self._hn = np.zeros((m, H), np.float32)
        self._o = np.zeros((m, self.b_head.shape[0]), np.float32)
        self._o2 = np.zeros((m, self.b_head.shape[0]), np.float32)

    def reset(self, slots: np.ndarray) -> None:
        self.h[slots] = 0.0

    def step(self, features: np.ndarray, z: np.ndarray | None, slots: np.ndarray,
             out_harm: np.ndarray, out_noise: np.ndarray) -> np.ndarray:
        """One frame for ``slots``; writes the controls; returns a bool mask of bad rows."""
        n = len(slots)
        H = self.hidden
        F = features.shape[1]
        x = self._x[:n]
        x[:, :F] = features
        if self.z_dim:
            x[:, F:] = z
        p = self._p[:n]
        np.matmul(x, self.w_pre, out=p)
        p += self.b_pre
        np.maximum(p, 0.1 * p, out=p)                       # leaky ReLU 0.1
        gi = self._gi[:n]
        np.matmul(p, self.w_ih, out=gi)
        gi += self.b_ih
        h = self.h[slots]
        gh = self._gh[:n]
        np.matmul(h, self.w_hh, out=gh)
        gh += self.b_hh
        rz = self._t[:n]
        np.add(gi[:, : 2 * H], gh[:, : 2 * H], out=rz)
        _sigmoid(rz, rz)
        r = rz[:, :H]
        zg = rz[:, H:]
        hn = self._hn[:n]
        np.multiply(r, gh[:, 2 * H:], out=hn)
        hn += gi[:, 2 * H:]
        np.tanh(hn, out=hn)
        # h' = n + z * (h - n)
        h -= hn
        h *= zg
        h += hn
        self.h[slots] = h
        o = self._o[:n]
        np.matmul(h, self.w_head_y, out=o)
        o2 = self._o2[:n]
        np.matmul(p, self.w_head_p, out=o2)
        o += o2
        o += self.b_head
        k = self.k
        amp = self.amp_max * _sigmoid(o[:, :1], self._o2[:n, :1]) ** LN10 + 1e-7
        logits = o[:, 1:1 + k]
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        fh = np.exp(features[:, :1] * (2.0 * math.log(2.0)) + self.f0_off) * self.h_scaled
        e *= np.clip(self.mask_c0 - fh, 0.0, 1.0)
        e *= amp / np.maximum(e.sum(axis=1, keepdims=True), 1e-30)
        noise = self.noise_max * _sigmoid(o[:, 1 + k:], self._o2[:n, 1 + k:]) ** LN10 + 1e-7
        out_harm[:n] = e
        out_noise[:n] = noise
        bad = ~(np.isfinite(e).all(axis=1) & np.isfinite(noise).all(axis=1))
        if bad.any():
            self.h[slots[bad]] = 0.0
            out_harm[:n][bad] = 0.0
            out_noise[:n][bad] = 0.0
        return bad
