"""Streaming temporal backbones with explicit, batch-first state.

Every backbone maps ``x [B, T, C_in] -> y [B, T, C_out]`` causally and keeps what it needs from
the past in a state dict of tensors whose first dimension is the batch (one row per voice slot):

    y, state = backbone(x, state)        # state None: a fresh state (all voices silent)
    state = backbone.init_state(batch)
    y = backbone.step_slots(x, state, idx)   # one frame for rows ``idx`` of a big state, in place

Feeding a sequence in chunks of any length (one frame included) gives the same output as feeding
it whole, because a fresh state is exactly the zero history the whole-sequence pass assumes.
:meth:`step_slots` is the real-time path: it reads and writes only what one frame needs (ring
buffers with a per-slot frame counter ``pos``), instead of gathering and scattering whole caches.

- :class:`GRUBackbone`        recurrent, state ``h [B, layers, H]``
- :class:`CausalCNNBackbone`  dilated causal convolutions (kernel k, dilation d) as a linear map
                              of the k taps; cached padding = a ring of the last ``(k-1)*d``
                              inputs of each layer
- :class:`WindowAttentionBackbone` causal self-attention over the current and the last ``W-1``
                              frames; KV cache = a ring of the last ``W`` keys and values of each
                              layer (the step writes the current frame, then reads the ring); a learned bias per head and relative offset (0..W-1) gives
                              position, so no absolute clock is needed.
"""

from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

from .arch import BACKBONE_DEFAULTS, BACKBONES, fill_backbone_kw

__all__ = ["BACKBONES", "BACKBONE_DEFAULTS", "make_backbone", "GRUBackbone", "CausalCNNBackbone",
           "WindowAttentionBackbone", "State", "index_state", "write_state"]

State = dict[str, torch.Tensor]


def index_state(state: State, idx: torch.Tensor) -> State:
    """Rows ``idx`` of every state tensor (a gather: a copy)."""
    return {k: v.index_select(0, idx) for k, v in state.items()}


def write_state(state: State, idx: torch.Tensor, part: State) -> None:
    """Write ``part`` (rows for ``idx``) back into ``state`` in place."""
    for k, v in state.items():
        v.index_copy_(0, idx, part[k].to(v.dtype))


def _unroll(ring: torch.Tensor, pos: torch.Tensor, dim: int) -> torch.Tensor:
    """Ring ``[B, ..., R (at dim), ...]`` -> chronological (oldest first: frames pos-R..pos-1)."""
    r = ring.shape[dim]
    ix = (pos[:, None] + torch.arange(r, device=ring.device)[None, :]) % r      # [B, R]
    shape = [ring.shape[0]] + [1] * (ring.dim() - 1)
    shape[dim] = r
    ix = ix.view(shape).expand_as(ring)
    return torch.gather(ring, dim, ix)


def _reroll(lin: torch.Tensor, pos_after: torch.Tensor, dim: int) -> torch.Tensor:
    """Chronological last-R frames (ending at frame pos_after-1) -> ring layout."""
    r = lin.shape[dim]
    ix = (pos_after[:, None] + torch.arange(r, device=lin.device)[None, :]) % r
    shape = [lin.shape[0]] + [1] * (lin.dim() - 1)
    shape[dim] = r
    ix = ix.view(shape).expand_as(lin)
    return torch.zeros_like(lin).scatter(dim, ix, lin)


class GRUBackbone(nn.Module):
    kind = "gru"

    def __init__(self, in_dim: int, hidden: int, layers: int):
        super().__init__()
        self.hidden, self.layers = hidden, layers
        self.out_dim = hidden
        self.gru = nn.GRU(in_dim, hidden, num_layers=layers, batch_first=True)

    def init_state(self, batch: int, device=None, dtype=torch.float32) -> State:
        return {"h": torch.zeros(batch, self.layers, self.hidden, device=device, dtype=dtype)}

    def forward(self, x: torch.Tensor, state: State | None = None):
        if state is None:
            state = self.init_state(x.shape[0], x.device, x.dtype)
        y, h = self.gru(x, state["h"].transpose(0, 1).contiguous())
        return y, {"h": h.transpose(0, 1)}

    def step_slots(self, x: torch.Tensor, state: State, idx: torch.Tensor) -> torch.Tensor:
        h = state["h"].index_select(0, idx).transpose(0, 1).contiguous()
        y, h = self.gru(x[:, None], h)
        state["h"].index_copy_(0, idx, h.transpose(0, 1))
        return y[:, 0]


class CausalCNNBackbone(nn.Module):
    """Residual blocks: causal dilated conv -> LeakyReLU -> 1x1 conv, plus the skip.

    All layers share one ring ``buf [B, L, R, C]`` of their past inputs, ``R = (k-1) * max(d)``,
    so the real-time step reads every layer's past taps in one gather and writes every layer's
    input in one scatter; only the current-frame part of each conv runs layer by layer.
    """

    kind = "cnn"

    def __init__(self, in_dim: int, channels: int, kernel: int, dilations):
        super().__init__()
        self.channels, self.kernel, self.dilations = channels, kernel, tuple(dilations)
        self.out_dim = channels
        self.ring = (kernel - 1) * max(self.dilations)
        self.inp = nn.Linear(in_dim, channels)
        # tap j (0..k-1) of output t reads input t - (k-1-j)*d; weights over the concatenated taps
        self.convs = nn.ModuleList(nn.Linear(kernel * channels, channels) for _ in self.dilations)
        self.mix = nn.ModuleList(nn.Linear(channels, channels) for _ in self.dilations)
        self._fast = None

    def init_state(self, batch: int, device=None, dtype=torch.float32) -> State:
        return {"buf": torch.zeros(batch, len(self.dilations), self.ring, self.channels,
                                   device=device, dtype=dtype),
                "pos": torch.zeros(batch, dtype=torch.int64, device=device)}

    def forward(self, x: torch.Tensor, state: State | None = None):
        b, t, _ = x.shape
        if state is None:
            state = self.init_state(b, x.device, x.dtype)
        pos = state["pos"]
        r = self.ring
        hist = _unroll(state["buf"], pos, 2)                                    # [B, L, R, C]
        h = self.inp(x)
        keep = []
        for i, (conv, mix) in enumerate(zip(self.convs, self.mix)):
            d = self.dilations[i]
            full = torch.cat([hist[:, i], h], dim=1)                              # [B, R+T, C]
            taps = torch.cat([full[:, r - (self.kernel - 1 - j) * d: r - (self.kernel - 1 - j) * d + t]
                              for j in range(self.kernel)], dim=-1)
            keep.append(full[:, t:])
            h = h + mix(F.leaky_relu(conv(taps), 0.1))
        new = {"buf": _reroll(torch.stack(keep, 1), pos + t, 2), "pos": pos + t}
        return h, new

    def train(self, mode: bool = True):
        self._fast = None  # weights may change (training, load_state_dict then eval())
        return super().train(mode)

    def _prepare(self):
        """Index constants for :meth:`step_slots`; cached in eval mode (see :meth:`train`)."""
        if self._fast is None or self.training:
            k, nl = self.kernel, len(self.dilations)
            off = torch.tensor([[(k - 1 - j) * d for j in range(k - 1)] for d in self.dilations],
                               dtype=torch.int64)                               # [L, k-1]
            self._fast = (off, torch.arange(nl, dtype=torch.int64) * self.ring)
        return self._fast

    def step_slots(self, x: torch.Tensor, state: State, idx: torch.Tensor) -> torch.Tensor:
        off, lbase = self._prepare()
        n, nl, r, c = x.shape[0], len(self.dilations), self.ring, self.channels
        pos = state["pos"].index_select(0, idx)
        flat = state["buf"].view(-1, c)                  # rows (slot, layer, ring index)
        base = idx * (nl * r)                            # [n]
        # every layer's past taps in one index_select: row (idx, l, (pos - off) mod R)
        rows = (base[None, :, None] + lbase[:, None, None]
                + (pos[None, :, None] - off[:, None, :]) % r)                   # [L, n, k-1]
        taps = flat.index_select(0, rows.view(-1)).view(nl, n, -1)             # [L, n, (k-1)C]
        h = self.inp(x)
        ins = []
        for i, (conv, mix) in enumerate(zip(self.convs, self.mix)):
            ins.append(h)
            y = conv(torch.cat([taps[i], h], dim=-1))
            h = h + mix(F.leaky_relu(y, 0.1))
        wrows = (base[:, None] + lbase[None, :] + (pos % r)[:, None]).view(-1)  # [n*L]
        flat.index_copy_(0, wrows, torch.stack(ins, 1).view(-1, c))
        state["pos"].index_copy_(0, idx, pos + 1)
        return h


class WindowAttentionBackbone(nn.Module):
    """Pre-norm transformer layers; attention to the current and the last ``window-1`` frames."""

    kind = "attention"

    def __init__(self, in_dim: int, dim: int, heads: int, layers: int, window: int,
                 ff_mult: int):
        super().__init__()
        assert dim % heads == 0
        self.dim, self.heads, self.n_layers, self.window = dim, heads, layers, window
        self.head_dim = dim // heads
        self.out_dim = dim
        self.inp = nn.Linear(in_dim, dim)
        self.norm1 = nn.ModuleList(nn.LayerNorm(dim) for _ in range(layers))
        self.qkv = nn.ModuleList(nn.Linear(dim, 3 * dim) for _ in range(layers))
        self.proj = nn.ModuleList(nn.Linear(dim, dim) for _ in range(layers))
        self.norm2 = nn.ModuleList(nn.LayerNorm(dim) for _ in range(layers))
        self.ff1 = nn.ModuleList(nn.Linear(dim, ff_mult * dim) for _ in range(layers))
        self.ff2 = nn.ModuleList(nn.Linear(ff_mult * dim, dim) for _ in range(layers))
        # learned bias per head and relative offset 0..W-1 (0 = the current frame), initialised
        # to an ALiBi-like recency slope so training starts local
        slopes = torch.tensor([2.0 ** (-(i + 1)) for i in range(heads)])
        self.rel_bias = nn.Parameter(-slopes[:, None] * torch.arange(window, dtype=torch.float32)
                                     / 8.0)

    def init_state(self, batch: int, device=None, dtype=torch.float32) -> State:
        # a ring of W frames: the real-time step writes the current frame first (over the one
        # that just left the window) and then reads the whole ring, so it never concatenates
        w = self.window
        st = {}
        for i in range(self.n_layers):
            st[f"k{i}"] = torch.zeros(batch, self.heads, w, self.head_dim, device=device, dtype=dtype)
            st[f"v{i}"] = torch.zeros(batch, self.heads, w, self.head_dim, device=device, dtype=dtype)
        st["pos"] = torch.zeros(batch, dtype=torch.int64, device=device)
        return st

    def _bias(self, t: int, pos: torch.Tensor) -> torch.Tensor:
        """``[B, heads, T, W+T]`` additive mask + relative bias (history oldest first, then new)."""
        w = self.window
        dev = pos.device
        qpos = torch.arange(t, device=dev)[:, None] + w
        kpos = torch.arange(w + t, device=dev)[None, :]
        off = qpos - kpos                                          # [T, W+T]
        ok = (off >= 0) & (off <= w - 1)
        bias = self.rel_bias[:, off.clamp(0, w - 1)]               # [H, T, W+T]
        valid = kpos >= (w - pos.clamp(max=w))[:, None]            # [B, W+T] frames that exist
        allow = ok[None] & valid[:, None]                          # [B, T, W+T]
        return bias[None].masked_fill(~allow[:, None], float("-inf"))

    def forward(self, x: torch.Tensor, state: State | None = None):
        b, t, _ = x.shape
        if state is None:
            state = self.init_state(b, x.device, x.dtype)
        pos = state["pos"]
        bias = self._bias(t, pos).to(x.dtype)
        scale = 1.0 / math.sqrt(self.head_dim)
        h = self.inp(x)
        new = {}
        for i in range(self.n_layers):
            q, k, v = self.qkv[i](self.norm1[i](h)).split(self.dim, dim=-1)
            q = q.view(b, t, self.heads, self.head_dim).transpose(1, 2)
            k = k.view(b, t, self.heads, self.head_dim).transpose(1, 2)
            v = v.view(b, t, self.heads, self.head_dim).transpose(1, 2)
            kf = torch.cat([_unroll(state[f"k{i}"], pos, 2), k], dim=2)
            vf = torch.cat([_unroll(state[f"v{i}"], pos, 2), v], dim=2)
            new[f"k{i}"] = _reroll(kf[:, :, t:], pos + t, 2)
            new[f"v{i}"] = _reroll(vf[:, :, t:], pos + t, 2)
            att = torch.softmax(torch.matmul(q, kf.transpose(2, 3)) * scale + bias, dim=-1)
            o = torch.matmul(att, vf).transpose(1, 2).reshape(b, t, self.dim)
            h = h + self.proj[i](o)
            h = h + self.ff2[i](F.leaky_relu(self.ff1[i](self.norm2[i](h)), 0.1))
        new["pos"] = pos + t
        return h, new

    def step_slots(self, x: torch.Tensor, state: State, idx: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        w, nh, dh = self.window, self.heads, self.head_dim
        pos = state["pos"].index_select(0, idx)                                 # [n]
        wpos = pos % w
        ring = torch.arange(w, device=x.device)
        off = (pos[:, None] - ring[None, :]) % w                                # [n, W] 0..W-1
        bias = self.rel_bias[:, off].permute(1, 0, 2)                          # [n, H, W]
        bias = bias.masked_fill((off > pos[:, None])[:, None], float("-inf"))[:, :, None]
        # rows (slot, head, ring index) of the flattened caches that this frame writes
        wrows = ((idx[:, None] * nh + torch.arange(nh)[None, :]) * w + wpos[:, None]).view(-1)
        scale = 1.0 / math.sqrt(dh)
        h = self.inp(x)
        for i in range(self.n_layers):
            q, k, v = self.qkv[i](self.norm1[i](h)).split(self.dim, dim=-1)
            kr, vr = state[f"k{i}"], state[f"v{i}"]
            kr.view(-1, dh).index_copy_(0, wrows, k.reshape(n * nh, dh))
            vr.view(-1, dh).index_copy_(0, wrows, v.reshape(n * nh, dh))
            kf = kr.index_select(0, idx)                                        # [n, H, W, dh]
            vf = vr.index_select(0, idx)
            q = q.view(n, nh, 1, dh)
            att = torch.softmax(torch.matmul(q, kf.transpose(2, 3)) * scale + bias, dim=-1)
            o = torch.matmul(att, vf).reshape(n, self.dim)
            h = h + self.proj[i](o)
            h = h + self.ff2[i](F.leaky_relu(self.ff1[i](self.norm2[i](h)), 0.1))
        state["pos"].index_copy_(0, idx, pos + 1)
        return h


def make_backbone(kind: str, in_dim: int, **kw) -> nn.Module:
    """A backbone of ``kind``; the keys ``kw`` leaves out take :data:`BACKBONE_DEFAULTS`."""
    kw = fill_backbone_kw(kind, kw)
    if kind == "gru":
        return GRUBackbone(in_dim, **kw)
    if kind == "cnn":
        return CausalCNNBackbone(in_dim, **kw)
    if kind == "attention":
        return WindowAttentionBackbone(in_dim, **kw)
    raise AssertionError(kind)      # fill_backbone_kw refused any other kind

