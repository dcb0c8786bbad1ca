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


class _FastDecoder:
    """What every decoder shares: the input layer and the heads (see ``Decoder._heads``)."""

    def __init__(self, decoder, n_slots: int, out_dim: int):
        import torch
        with torch.no_grad():
            self.w_pre = _np(decoder.pre.weight.T)              # [F+Z, P]
            self.b_pre = _np(decoder.pre.bias)
            w_head = _np(decoder.head.weight.T)                 # [out_dim+P, 1+K+B]
            self.b_head = _np(decoder.head.bias)
            self.h_scaled = _np(decoder.h_scaled)
        self.w_head_y = np.ascontiguousarray(w_head[:out_dim])
        self.w_head_p = np.ascontiguousarray(w_head[out_dim:])
        self.k = decoder.n_harmonics
        self.z_dim = decoder.z_dim
        self.amp_max = float(decoder.amp_max)
        self.noise_max = float(decoder.noise_max)
        self.f0_off = float(decoder._f0_log_offset)
        self.mask_c0 = float(decoder._mask_c0)
        self.n_slots = n_slots
        m = n_slots
        self._x = np.zeros((m, self.w_pre.shape[0]), np.float32)
        self._p = np.zeros((m, self.w_pre.shape[1]), np.float32)
        self._o = np.zeros((m, self.b_head.shape[0]), np.float32)
        self._o2 = np.zeros((m, self.b_head.shape[0]), np.float32)

    def _inputs(self, features: np.ndarray, z: np.ndarray | None) -> np.ndarray:
        n, F = features.shape
        x = self._x[:n]
        x[:, :F] = features
        if self.z_dim:
            x[:, F:] = z
        p = self._p[:n]
        np.matmul(x, self.w_pre, out=p)
        p += self.b_pre
        np.maximum(p, 0.1 * p, out=p)                       # leaky ReLU 0.1
        return p

    def _heads(self, y, p, features, out_harm, out_noise) -> np.ndarray:
        n = len(y)
        o = self._o[:n]
        np.matmul(y, self.w_head_y, out=o)
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
            out_harm[:n][bad] = 0.0
            out_noise[:n][bad] = 0.0
        return bad


def _np(t) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy().astype(np.float32))


class FastGRUDecoder(_FastDecoder):
    """A one-layer GRU ``Decoder``. State: ``h [n_slots, hidden]`` float32, owned here."""

    def __init__(self, decoder, n_slots: int):
        import torch
        bb = decoder.backbone
        if getattr(bb, "kind", "") != "gru" or bb.layers != 1:
            raise ValueError("the fast path supports one-layer GRU decoders")
        super().__init__(decoder, n_slots, bb.hidden)
        with torch.no_grad():
            self.w_ih = _np(bb.gru.weight_ih_l0.T)              # [P, 3H]
            self.b_ih = _np(bb.gru.bias_ih_l0)
            self.w_hh = _np(bb.gru.weight_hh_l0.T)              # [H, 3H]
            self.b_hh = _np(bb.gru.bias_hh_l0)
        self.hidden = H = bb.hidden
        self.h = np.zeros((n_slots, H), np.float32)
        m = n_slots
        self._gi = np.zeros((m, 3 * H), np.float32)
        self._gh = np.zeros((m, 3 * H), np.float32)
        self._t = np.zeros((m, 2 * H), np.float32)
        self._hn = np.zeros((m, H), np.float32)

    def reset(self, slots: np.ndarray) -> None:
        self.h[slots] = 0.0

    def step(self, features: np.ndarray, z: np.ndarray | None, slots: np.ndarray,
             out_harm: np.ndarray, out_noise: np.ndarray) -> np.ndarray:
        """One frame for ``slots``; writes the controls; returns a bool mask of bad rows."""
        n = len(slots)
        H = self.hidden
        p = self._inputs(features, z)
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
        bad = self._heads(h, p, features, out_harm, out_noise)
        if bad.any():
            self.h[slots[bad]] = 0.0
        return bad


class FastCNNDecoder(_FastDecoder):
    """A causal dilated CNN ``Decoder`` (see ``CausalCNNBackbone.step_slots``).

    State: ``buf [n_slots, L, R, C]`` (each layer's past inputs, a ring) and ``pos [n_slots]``,
    owned here; the torch state dict is given views of them.
    """

    def __init__(self, decoder, n_slots: int):
        import torch
        bb = decoder.backbone
        if getattr(bb, "kind", "") != "cnn":
            raise ValueError("not a CNN decoder")
        super().__init__(decoder, n_slots, bb.channels)
        with torch.no_grad():
            self.w_inp = _np(bb.inp.weight.T)                   # [P, C]
            self.b_inp = _np(bb.inp.bias)
            self.w_conv = [_np(c.weight.T) for c in bb.convs]   # [k*C, C]
            self.b_conv = [_np(c.bias) for c in bb.convs]
            self.w_mix = [_np(m.weight.T) for m in bb.mix]      # [C, C]
            self.b_mix = [_np(m.bias) for m in bb.mix]
        self.kernel, self.dilations, self.ring = bb.kernel, bb.dilations, bb.ring
        self.channels = C = bb.channels
        L = len(self.dilations)
        self.off = np.array([[(self.kernel - 1 - j) * d for j in range(self.kernel - 1)]
                             for d in self.dilations], dtype=np.int64)          # [L, k-1]
        self.buf = np.zeros((n_slots, L, self.ring, C), np.float32)
        self.pos = np.zeros(n_slots, np.int64)
        self._cat = np.zeros((n_slots, self.kernel * C), np.float32)

    def step(self, features: np.ndarray, z: np.ndarray | None, slots: np.ndarray,
             out_harm: np.ndarray, out_noise: np.ndarray) -> np.ndarray:
        n = len(slots)
        C, R, k = self.channels, self.ring, self.kernel
        p = self._inputs(features, z)
        h = p @ self.w_inp
        h += self.b_inp
        pos = self.pos[slots]
        w = pos % R
        cat = self._cat[:n]
        for i in range(len(self.dilations)):
            rows = (pos[:, None] - self.off[i][None, :]) % R                    # [n, k-1]
            cat[:, : (k - 1) * C] = self.buf[slots[:, None], i, rows].reshape(n, -1)
            cat[:, (k - 1) * C:] = h
            self.buf[slots, i, w] = h                       # this layer's input, for later taps
            y = cat @ self.w_conv[i]
            y += self.b_conv[i]
            np.maximum(y, 0.1 * y, out=y)
            m = y @ self.w_mix[i]
            m += self.b_mix[i]
            h = h + m
        self.pos[slots] = pos + 1
        bad = self._heads(h, p, features, out_harm, out_noise)
        if bad.any():
            b = slots[bad]
            self.buf[b] = 0.0
            self.pos[b] = 0
        return bad


def fast_decoder(decoder, n_slots: int):
    """The NumPy path for ``decoder`` if there is one (GRU of one layer, CNN), else None."""
    kind = getattr(decoder.backbone, "kind", "")
    if kind == "gru" and decoder.backbone.layers == 1:
        return FastGRUDecoder(decoder, n_slots)
    if kind == "cnn":
        return FastCNNDecoder(decoder, n_slots)
    return None
