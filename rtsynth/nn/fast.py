"""The NumPy real-time path of every decoder: the same numbers as ``Decoder.step_slots``.

At the sizes of a voice batch (1 to 64 rows) torch's per-operator dispatch costs more than the
arithmetic, and importing torch costs ~2 s of start-up. These classes run one frame as a handful
of NumPy matrix products on preallocated buffers, everything between them fused in a few Numba
kernels (:mod:`rtsynth.nn.fast_kernels`), with weights given either as the NumPy state dict of a model file
(:func:`rtsynth.nn.io.load_weights`, no torch) or as a torch ``Decoder``. Exact up to float32
rounding (tested against torch).

Every class owns its per-slot state (``.state``: a dict of NumPy arrays, first axis the slot):

- :class:`FastGRUDecoder`        ``h [n_slots, layers, H]``
- :class:`FastCNNDecoder`        ``buf [n_slots, sum_l (k-1) d_l + 1, C]`` (one ring per layer of
                                 just the past inputs that layer's taps read, plus the current
                                 frame) and ``pos [n_slots]``
- :class:`FastAttentionDecoder`  ``k{i} [n_slots, D, W]``, ``v{i} [n_slots, D, W]`` rings, ``pos``
"""

from __future__ import annotations

import copy
import math
from typing import Any


import numpy as np

from . import fast_kernels as K_
from .arch import backbone_kw, decoder_config

from .. import spec

LN10 = math.log(10.0)


def decoder_weights(decoder) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """A torch ``Decoder`` -> (NumPy float32 state dict, architecture)."""
    w = {k: np.ascontiguousarray(v.detach().cpu().float().numpy())
         for k, v in decoder.state_dict().items()}
    return w, decoder_config(decoder)


def _weights(decoder, arch):
    if arch is None:                      # a torch Decoder
        return decoder_weights(decoder)
    return decoder, arch


def _T(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=np.float32).T)


class _FastDecoder:
    """What every decoder shares: the input layer and the heads (see ``Decoder._heads``)."""

    kind = ""
    #: ``step`` may get several consecutive frames of a slot in one call (rows in frame order,
    #: a slot at most once per frame): see :class:`_FeedForwardDecoder`
    multi_frame = False

    def __init__(self, decoder, n_slots: int, arch: dict[str, Any] | None = None,
                 max_rows: int | None = None):
        """``max_rows``: the most rows one :meth:`step` gets (default ``n_slots``; more for
        multi-frame batches, offline)."""
        w, arch = _weights(decoder, arch)
        if arch["backbone"] != self.kind:
            raise ValueError(f"not a {self.kind} decoder")
        self.arch = arch
        self.kw = backbone_kw(arch)
        self.n_slots = m = int(n_slots)
        # at least 2: the fused steps' products are sgemm of two rows or more (fast_kernels._mm)
        self.max_rows = rows = max(m, int(max_rows or 0), 2)
        self.z_dim = int(arch["z_dim"])
        self.k = K = int(arch["n_harmonics"])
        nyq = arch["sample_rate"] / 2.0
        self.amp_max = float(arch["amp_max"])
        self.noise_max = float(arch["noise_max"])
        # ln f0 = 2 ln2 * feature0 + f0_off (heads_out's constant slope: spec's, tested)
        self.f0_off = spec.log_hz_of_pitch_feature()[1]
        fade = spec.nyquist_fade_hz(arch["sample_rate"])
        self.mask_c0 = spec.NYQUIST_MARGIN * nyq / fade
        self.h_scaled = np.arange(1, K + 1, dtype=np.float32) / np.float32(fade)
        self.w_pre = _T(w["pre.weight"])                    # [F+Z, P]
        self.b_pre = w["pre.bias"].astype(np.float32)
        self._w = w                                         # to rebuild at another slot count
        out_dim = self._setup(w, m, rows)
        w_head = _T(w["head.weight"])                       # [out_dim+P, 1+K+B]
        self.b_head = w["head.bias"].astype(np.float32)
        self.w_head_y = np.ascontiguousarray(w_head[:out_dim])
        self.w_head_p = np.ascontiguousarray(w_head[out_dim:])
        n_out = self.b_head.shape[0]
        self._x = np.zeros((rows, self.w_pre.shape[0]), np.float32)
        self._p = np.zeros((rows, self.w_pre.shape[1]), np.float32)
        self._o = np.zeros((rows, n_out), np.float32)
        self._o2 = np.zeros((rows, n_out), np.float32)
        self._hx = np.zeros((rows, K), np.float32)
        self._gx = np.zeros((rows, n_out - K), np.float32)
        self._bad = np.zeros(rows, bool)
        self._no_z = np.zeros((1, 0), np.float32)
        #: rows of the last step whose controls were not finite, and whose pitch was beyond
        #: :attr:`pitch_clip` (for the range taper: :class:`rtsynth.nn.neural.NeuralInstrument`)
        self.n_bad = 0
        self.n_outside = 0
        self._prefault()
        self._make_row_views()

    #: the most rows for which :meth:`_make_row_views` makes views (an offline engine's larger
    #: batches slice: they are not on the real-time path)
    ROW_VIEWS_MAX = 1024

    def _make_row_views(self) -> None:
        """``row_views[name][n]``: the first ``n`` rows of each work buffer, made once (a slice
        is an allocation, and the real-time step allocates nothing after warm-up)."""
        self.row_views = None
        if self.max_rows > self.ROW_VIEWS_MAX:
            return
        rows = self.max_rows
        state = list(self.state.values())
        views = {}
        for k, v in vars(self).items():
            if (k.startswith("_") and isinstance(v, np.ndarray) and v.ndim >= 1
                    and v.shape[0] == rows and not any(np.shares_memory(v, a) for a in state)):
                views[k] = [v[:m] for m in range(rows + 1)]
        self.row_views = views

    def _rows(self, name: str, n: int) -> np.ndarray:
        """The first ``n`` rows of work buffer ``name`` (a view made once, when there are)."""
        v = self.row_views
        return v[name][n] if v is not None else getattr(self, name)[:n]

    def fork(self) -> "_FastDecoder":
        """Another stepper over the same per-slot state and weights, with its own work buffers:
        the two may step disjoint sets of slots at the same time, from two threads (every
        kernel and BLAS call releases the GIL; a step touches only its own slots' state)."""
        other = copy.copy(self)
        state = list(self.state.values())

        def own(a):
            if any(np.shares_memory(a, s) for s in state):
                return a                                      # a view of the state: shared
            return np.zeros_like(a)
        for k, v in vars(self).items():
            if k in ("state", "_w") or not k.startswith("_"):
                continue
            if isinstance(v, np.ndarray):
                setattr(other, k, own(v))
            elif isinstance(v, list) and v and all(isinstance(a, np.ndarray) for a in v):
                setattr(other, k, [own(a) for a in v])
        other._make_row_views()
        return other

    def _prefault(self) -> None:
        """Write every state and work array once, now. ``np.zeros`` memory is mapped lazily:
        without this the first write to each page happens in the real-time step, when a voice
        first reaches that part of its ring, a page fault each (and for arrays of 4 MB and
        more, which NumPy marks for transparent huge pages, a 2 MB page to zero or compact
        memory for): measured up to 3.6 ms for one CNN step of one voice, the CNN models' rare
        block-time spikes. GRU state is small and was not affected."""
        arrays = list(self.state.values())
        for k, v in vars(self).items():
            if k.startswith("_") and isinstance(v, np.ndarray):
                arrays.append(v)
            elif k.startswith("_") and isinstance(v, list):
                arrays += [a for a in v if isinstance(a, np.ndarray)]
        for a in arrays:
            if a.flags.writeable:
                a.fill(0)

    # subclasses: _setup (weights, state, buffers -> backbone output width), step, state
    state: dict[str, np.ndarray]

    def reset(self, slots: np.ndarray) -> None:
        """The given slots := a fresh voice (zero history)."""
        for v in self.state.values():
            v[slots] = 0

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Copy ``state`` (same keys, any number of slots) in; reallocates if the slot count
        differs."""
        n = next(iter(state.values())).shape[0]
        if n != self.n_slots:
            self.__init__(self._w, n, self.arch, self.max_rows)
        for k, v in state.items():
            np.copyto(self.state[k], v)

    def set_bandwidth(self, hz: float) -> None:
        """Harmonics fade out between 0.95 ``hz`` and ``hz`` (instead of 0.90-0.95 of
        Nyquist) when ``hz`` is below 0.9 of Nyquist: the heads' mask constants only."""
        nyq = self.arch["sample_rate"] / 2.0
        if hz < 0.9 * nyq:
            fade = 0.05 * hz
            self.mask_c0 = hz / fade
            self.h_scaled = np.arange(1, self.k + 1, dtype=np.float32) / np.float32(fade)

    #: (lo, hi) of the pitch feature the model was trained on, or None: the model's input is
    #: clamped to it, in place in its own buffer (the heads keep the true pitch)
    pitch_clip: tuple[float, float] | None = None

    def _inputs(self, features: np.ndarray, z: np.ndarray | None) -> np.ndarray:
        """The input layer's output for ``features`` (and ``z``); counts the rows beyond the
        pitch range in :attr:`n_outside`. (``np.dot`` with ``out``: the same BLAS product as
        ``np.matmul``, without the ufunc machinery's allocations.)"""
        n = len(features)
        x = self._rows("_x", n)
        clip = self.pitch_clip
        self.n_outside = K_.decoder_inputs(
            features, self._no_z if z is None or not self.z_dim else z, self._x, n,
            0.0 if clip is None else clip[0], 0.0 if clip is None else clip[1],
            clip is not None)
        p = self._rows("_p", n)
        np.dot(x, self.w_pre, out=p)
        K_.bias_leaky(p, self.b_pre)
        return p

    def _heads(self, y, p, features, out_harm, out_noise) -> np.ndarray:
        """The head (one matrix product per input), its exponentials (NumPy's SIMD loops) and
        the controls (two kernels around them); returns the bool mask of rows that were not
        finite (written as zeros)."""
        n = len(y)
        o = self._rows("_o", n)
        np.dot(y, self.w_head_y, out=o)
        o2 = self._rows("_o2", n)
        np.dot(p, self.w_head_p, out=o2)
        hx = self._rows("_hx", n)
        gx = self._rows("_gx", n)
        K_.heads_args(o, o2, self.b_head, hx, gx)
        K_.heads_exp(hx, gx)
        bad = self._rows("_bad", n)
        self.n_bad = K_.heads_out(hx, gx, features, self.h_scaled, self.amp_max, self.noise_max,
                                  self.f0_off, self.mask_c0, _first(out_harm, n),
                                  _first(out_noise, n), bad)
        return bad


def _first(a: np.ndarray, n: int) -> np.ndarray:
    """``a[:n]``, without making a view when ``a`` has ``n`` rows (the engine's own views do)."""
    return a if len(a) == n else a[:n]


class _Fused:
    """The fused step of a GRU or attention decoder: the whole step in one nogil kernel
    (:func:`fast_kernels.gru_fused`, :func:`fast_kernels.attention_fused`), for
    :meth:`step` and, through :meth:`fused_args`, the engines' own kernels (the offline
    engine's two threads, the live ParallelEngine's parts): the same code, so the same
    numbers, whichever calls it."""

    _fa = None

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self._fa = None                   # another slot count makes new state arrays
        super().load_state(state)

    def _fused_ready(self) -> bool:
        fa = self._fa
        if fa is not None and fa[-1] is self.pitch_clip:
            return True
        if blas_pointers() is None:
            return False
        w, geo, st, wk, par, h_scaled = self.fused_args()
        self._fres = np.zeros(2, np.int64)
        self._fa = (blas_pointers(), w, geo, st, wk, par, h_scaled, self.pitch_clip)
        return True

    def _fused_step(self, features, z, slots, out_harm, out_noise):
        n = len(slots)
        blas, w, geo, st, wk, par, h_scaled, _ = self._fa
        res = self._fres
        res.fill(0)
        sl = slots if _is_int64_rows(slots) else np.ascontiguousarray(slots, dtype=np.int64)
        getattr(K_, self._fused_kernel)(
            blas, features, self._no_z if z is None or not self.z_dim else z, sl, n, w, geo, st,
            wk, par, h_scaled, out_harm, out_noise, res)
        self.n_bad = res.item(0)
        self.n_outside = res.item(1)
        return self._rows("_bad", n)

    def fused_args(self, taper_coef: float = 0.0):
        """The arguments of the fused step after ``n``: ``(w, geo, st, wk, par, h_scaled)``,
        as :meth:`FastCNNDecoder.fused_args` (``taper_coef``: the instrument's range taper, 0:
        none, as :meth:`step` does: the instrument tapers after it)."""
        clip = self.pitch_clip
        par = np.array([0.0 if clip is None else clip[0], 0.0 if clip is None else clip[1],
                        float(clip is not None), self.amp_max, self.noise_max, self.f0_off,
                        self.mask_c0, taper_coef] + self._fused_par(), np.float64)
        self._pad_heads()
        return (self._fused_weights(), self._fused_geo, self._fused_state(), self._fused_work(),
                par, np.ascontiguousarray(self.h_scaled, dtype=np.float32))

    def _pad_heads(self) -> None:
        """The head's weights with their 1 + K + B = 85 columns padded to a multiple of 16
        (zeros), and its products' buffers as wide: OpenBLAS computes a column tail that is not
        a multiple of 8 otherwise for a few rows than for many (the last bit of the noise
        gains differed between a live frame and an offline block); every other product of the
        shipped models is a multiple of 8 wide already."""
        n_out = self.w_head_y.shape[1]
        wide = -(-n_out // 16) * 16
        if getattr(self, "head_y_pad", None) is None:
            pad = lambda w: np.ascontiguousarray(  # noqa: E731
                np.pad(w, ((0, 0), (0, wide - n_out))), dtype=np.float32)
            self.head_y_pad = pad(self.w_head_y)       # (public: fork and prefault skip them)
            self.head_p_pad = pad(self.w_head_p)
        if getattr(self, "_o_pad", None) is None or self._o_pad.shape[0] != self.max_rows:
            self._o_pad = np.zeros((self.max_rows, wide), np.float32)
            self._o2_pad = np.zeros((self.max_rows, wide), np.float32)

    def _fused_par(self) -> list:
        return []

    def set_bandwidth(self, hz: float) -> None:
        super().set_bandwidth(hz)
        self._fa = None

    def fork(self):
        other = super().fork()
        other._fa = None                  # its own work buffers
        return other


def _need_jit() -> None:
    """The NumPy path of a GRU or attention step runs kernels that the compiled module does not
    hold (only the fused steps are built): where it is needed (no BLAS for the kernels), the
    kernels switch to the JIT."""
    from .. import jit
    if jit.status()["mode"] == "aot":
        jit._switch_to_jit("NumPy's BLAS cannot be called from the kernels")


class FastGRUDecoder(_Fused, _FastDecoder):
    """A GRU ``Decoder`` (any number of layers). State: ``h [n_slots, layers, H]``.

    A step is, per layer, one matrix product of all its rows' inputs (every frame of a
    multi-frame call at once) and one kernel for the recurrence
    (:func:`fast_kernels.gru_rows`: the recurrent products and the gates, row by row in frame
    order). Layers are separable: layer ``i``'s rows depend only on layer ``i-1``'s rows."""

    kind = "gru"

    def _setup(self, w, m, rows):
        self.hidden = H = int(self.kw["hidden"])
        self.layers = L = int(self.kw["layers"])
        g = "backbone.gru."
        f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
        self.w_ih = [_T(w[f"{g}weight_ih_l{i}"]) for i in range(L)]       # [in, 3H]
        self.w_hh = [f32(w[f"{g}weight_hh_l{i}"]) for i in range(L)]      # [3H, H]
        b_ih = [w[f"{g}bias_ih_l{i}"].astype(np.float32) for i in range(L)]
        b_hh = [w[f"{g}bias_hh_l{i}"].astype(np.float32) for i in range(L)]
        # r and z take both biases, n takes them apart
        self.b_rz = [f32(b_ih[i][:2 * H] + b_hh[i][:2 * H]) for i in range(L)]
        self.b_in = [f32(b_ih[i][2 * H:]) for i in range(L)]
        self.b_hn = [f32(b_hh[i][2 * H:]) for i in range(L)]
        self.h = np.zeros((m, L, H), np.float32)
        self._hv = [self.h[:, i] for i in range(L)]         # [m, H] views (contiguous if L == 1)
        self.state = {"h": self.h}
        self._gi = np.zeros((rows, 3 * H), np.float32)
        self._hc = [np.zeros((rows, H), np.float32) for _ in range(L)]
        self._gh0 = np.zeros(3 * H, np.float32)
        self._gh1 = np.zeros(3 * H, np.float32)
        self._e = np.zeros(3 * H, np.float64)
        # the fused step's (fast_kernels.gru_fused): layers stacked
        in_dims = [self.w_ih[i].shape[0] for i in range(L)]
        w_ih_s = np.zeros((L, max(in_dims), 3 * H), np.float32)
        for i in range(L):
            w_ih_s[i, :in_dims[i]] = self.w_ih[i]
        # W_hh as torch has it, [3H, H] (fast_kernels._recurrent's dot products over H)
        self._fused_w_parts = (w_ih_s, np.ascontiguousarray(np.stack(self.w_hh)),
                               np.stack(self.b_rz), np.stack(self.b_in), np.stack(self.b_hn))
        self.in_dims = np.array(in_dims, np.int64)      # (public: fork and prefault skip it)
        self._hb = np.zeros((4, H), np.float32)
        self._ghb = np.zeros((4, 3 * H), np.float32)
        self._fused_tap = np.zeros(rows, np.float32)
        return H

    @property
    def _fused_geo(self):
        return self.in_dims

    def _fused_weights(self):
        return ((self.w_pre, self.b_pre) + self._fused_w_parts
                + (self.head_y_pad, self.head_p_pad, self.b_head))

    def _fused_work(self):
        hc = self._hc
        return (self._x, self._p, self._gi, hc[0], hc[1] if len(hc) > 1 else hc[0], self._hb,
                self._ghb, self._e, self._o_pad, self._o2_pad, self._hx, self._gx, self._bad,
                self._fused_tap)

    def _fused_state(self):
        return (self.h,)

    _fused_kernel = "gru_step"

    def reset(self, slots: np.ndarray) -> None:
        """The given slots := a fresh voice (zero state), in a kernel (allocates nothing)."""
        K_.zero_slots(self.h, slots if _is_int64_rows(slots)
                      else np.ascontiguousarray(slots, dtype=np.int64))

    #: rows of several frames of a slot (in frame order): the products of the inputs and the
    #: heads run over all rows at once, the recurrence in one kernel call per layer
    multi_frame = True

    def step(self, features: np.ndarray, z: np.ndarray | None, slots: np.ndarray,
             out_harm: np.ndarray, out_noise: np.ndarray) -> np.ndarray:
        """One frame for ``slots`` (or several: rows in frame order, a slot at most once per
        frame); writes the controls; returns a bool mask of bad rows. One nogil kernel
        (:func:`fast_kernels.gru_fused`), or the NumPy path where NumPy's BLAS cannot be
        called from the kernels."""
        if self._fused_ready():
            return self._fused_step(features, z, slots, out_harm, out_noise)
        _need_jit()
        n = len(slots)
        x = self._inputs(features, z)
        p = x
        gi = self._rows("_gi", n)
        gh0, gh1, e = self._gh0, self._gh1, self._e
        for w_ih, w_hh, b_rz, b_in, b_hn, hv, hc in self._layer_args:
            np.dot(x, w_ih, out=gi)
            y = hc[n] if self.row_views is not None else hc[:n]
            K_.gru_rows(gi, w_hh, b_rz, b_in, b_hn, hv, slots, y, gh0, gh1, e)
            x = y
        bad = self._heads(x, p, features, out_harm, out_noise)
        if self.n_bad:
            self.reset(slots[bad])
        return bad

    def _make_row_views(self) -> None:
        super()._make_row_views()
        # one tuple per layer (a loop over it makes no tuples); each layer's output rows as
        # views made once (``_hc`` is a list: the base class's views skip it)
        hc = self._hc
        if self.row_views is not None:
            hc = [[a[:m] for m in range(self.max_rows + 1)] for a in self._hc]
        self._layer_args = tuple(zip(self.w_ih, self.w_hh, self.b_rz, self.b_in, self.b_hn,
                                     self._hv, hc))


class _FeedForwardDecoder(_FastDecoder):
    """CNN and attention: an input layer to the backbone width, per-slot frame counters
    ``pos``, caches written and read row by row (so several frames of a slot fit in one call)."""

    multi_frame = True

    def reset(self, slots: np.ndarray) -> None:
        """A fresh voice: only its frame counter goes to 0. Both steps read nothing from before
        a voice's frame 0 (the CNN reads those taps as zeros, the attention attends over the
        ``min(pos + 1, W)`` frames written since), so the caches are not cleared: for the CNN
        that was 100 KB a voice, and a chord of 64 note-ons a 6 MB memset in one block (a
        2.4-4.8 ms block in the bench's held-voice runs)."""
        self.pos[slots] = 0

    def _begin_rows(self, features, z, slots):
        """-> (decoder input ``p``, backbone input ``h``, each row's frame position)."""
        n = len(slots)
        p = self._inputs(features, z)
        h = self._rows("_h", n)
        np.dot(p, self.w_inp, out=h)
        K_.add_bias(h, self.b_inp)
        pos = self._rows("_pos", n)
        K_.frame_positions(slots, self.pos, pos)
        return p, h, pos

    def _end_rows(self, h, p, pos, features, slots, out_harm, out_noise) -> np.ndarray:
        K_.store_positions(slots, pos, self.pos)
        bad = self._heads(h, p, features, out_harm, out_noise)
        if self.n_bad:
            self.reset(slots[bad])
        return bad


class FastCNNDecoder(_Fused, _FeedForwardDecoder):
    """A causal dilated CNN ``Decoder`` (see ``CausalCNNBackbone.step_slots``).

    Layer ``l`` (dilation ``d``, kernel ``k``) reads its inputs of frames ``t - j d``,
    ``j = 0..k-1``; its ring keeps ``(k-1) d + 1`` frames: the step writes the current input,
    then gathers all ``k`` taps (one Numba kernel, :func:`fast_kernels.cnn_ring`) into a
    contiguous ``[n, k, C]`` buffer and runs the conv as one matrix product. All layers' rings of a slot are one contiguous block
    (``sum (k-1) d_l + 1`` rows of ``C``: 259 x 96 floats for the shipped models, against
    4 x 192 x 96 for the torch layout), so a reset is one contiguous zeroing.
    """

    kind = "cnn"

    def _setup(self, w, m, rows):
        b = "backbone."
        self.channels = C = int(self.kw["channels"])
        self.kernel = k = int(self.kw["kernel"])
        self.dilations = tuple(int(d) for d in self.kw["dilations"])
        self.w_inp = _T(w[f"{b}inp.weight"])                                # [P, C]
        self.b_inp = w[f"{b}inp.bias"].astype(np.float32)
        nl = len(self.dilations)
        self.w_conv = [_T(w[f"{b}convs.{i}.weight"]) for i in range(nl)]    # [k*C, C]
        self.b_conv = [w[f"{b}convs.{i}.bias"].astype(np.float32) for i in range(nl)]
        self.w_mix = [_T(w[f"{b}mix.{i}.weight"]) for i in range(nl)]       # [C, C]
        self.b_mix = [w[f"{b}mix.{i}.bias"].astype(np.float32) for i in range(nl)]
        self.rings = [(k - 1) * d + 1 for d in self.dilations]
        self.base = [int(b) for b in np.cumsum([0] + self.rings[:-1])]
        self.rows_per_slot = R = int(sum(self.rings))
        # tap j of layer l reads frame t - (k-1-j) d: ring offsets, oldest first (conv order)
        self.off = [np.array([(k - 1 - j) * d for j in range(k)], np.int64) for d in self.dilations]
        self.buf = np.zeros((m, R, C), np.float32)
        self.pos = np.zeros(m, np.int64)
        self.state = {"buf": self.buf, "pos": self.pos}
        self._flat = self.buf.reshape(m * R, C)
        self._cat = np.zeros((rows, k, C), np.float32)
        self._h = np.zeros((rows, C), np.float32)
        self._y = np.zeros((rows, C), np.float32)
        self._t = np.zeros((rows, C), np.float32)
        self._pos = np.zeros(rows, np.int64)
        return C

    def step(self, features: np.ndarray, z: np.ndarray | None, slots: np.ndarray,
             out_harm: np.ndarray, out_noise: np.ndarray) -> np.ndarray:
        """One frame (or several, rows in frame order) for ``slots``; writes the controls and
        returns the bool mask of bad rows (real-time path: allocates nothing after warm-up,
        up to :attr:`ROW_VIEWS_MAX` rows). One nogil kernel (:func:`fast_kernels.cnn_rows`,
        the engines' fused step), or the NumPy path where NumPy's BLAS cannot be called from
        the kernels."""
        if self._fused_ready():
            return self._fused_step(features, z, slots, out_harm, out_noise)
        return self.numpy_step(features, z, slots, out_harm, out_noise)

    def numpy_step(self, features, z, slots, out_harm, out_noise) -> np.ndarray:
        """:meth:`step` through NumPy's BLAS and ~38 calls of small kernels (each a GIL
        hand-off): where the kernels cannot call NumPy's BLAS. The same numbers to float
        rounding (its exponentials are NumPy's SIMD ones)."""
        n = len(slots)
        p, h, pos = self._begin_rows(features, z, slots)
        cat = self._rows("_cat", n)
        cat2 = self._rows("_cat2", n)
        y, t = self._rows("_y", n), self._rows("_t", n)
        for R, base, off, w_conv, b_conv, w_mix, b_mix in self._layers:
            # write this layer's input (frame t), then gather frames t - j d (j = k-1..0)
            K_.cnn_ring(self._flat, h, slots, pos, self.rows_per_slot, base, R, off, cat)
            np.dot(cat2, w_conv, out=y)
            K_.bias_leaky(y, b_conv)
            np.dot(y, w_mix, out=t)
            K_.residual(h, t, b_mix)
        return self._end_rows(h, p, pos, features, slots, out_harm, out_noise)

    def _make_row_views(self) -> None:
        super()._make_row_views()
        # one tuple per layer (a loop over it makes no tuples)
        self._layers = tuple(zip(self.rings, self.base, self.off,
                                 self.w_conv, self.b_conv, self.w_mix, self.b_mix))
        if self.row_views is not None:
            kc = self.kernel * self.channels
            self.row_views["_cat2"] = [v.reshape(m, kc)
                                       for m, v in enumerate(self.row_views["_cat"])]

    def fused_args(self, taper_coef: float = 0.0):
        """The arguments of :func:`fast_kernels.cnn_rows` after ``n``: ``(w, geo, st, wk, par,
        h_scaled)``, over this decoder's weights, state and work buffers (a :meth:`fork` has
        its own work). ``taper_coef``: the instrument's range taper (its ``_TAPER_COEF``)."""
        if getattr(self, "_fused_w", None) is None:
            self._fused_w = (self.w_pre, self.b_pre, self.w_inp, self.b_inp,
                             np.ascontiguousarray(np.stack(self.w_conv)),
                             np.ascontiguousarray(np.stack(self.b_conv)),
                             np.ascontiguousarray(np.stack(self.w_mix)),
                             np.ascontiguousarray(np.stack(self.b_mix)),
                             self.w_head_y, self.w_head_p, self.b_head)
            self._fused_geo = (np.array(self.rings, np.int64), np.array(self.base, np.int64),
                               np.ascontiguousarray(np.stack(self.off)))
        clip = self.pitch_clip
        par = np.array([0.0 if clip is None else clip[0], 0.0 if clip is None else clip[1],
                        float(clip is not None), self.amp_max, self.noise_max, self.f0_off,
                        self.mask_c0, taper_coef], np.float64)
        if getattr(self, "_fused_tap", None) is None or len(self._fused_tap) != self.max_rows:
            self._fused_tap = np.zeros(self.max_rows, np.float32)
        wk = (self._x, self._p, self._h, self._cat, self._y, self._t, self._pos, self._o,
              self._o2, self._hx, self._gx, self._bad, self._fused_tap)
        return (self._fused_w, self._fused_geo, (self._flat, self.pos), wk, par,
                np.ascontiguousarray(self.h_scaled, dtype=np.float32))

    _fused_w = None
    _fused_kernel = "cnn_step"

    def _rows(self, name: str, n: int) -> np.ndarray:
        v = self.row_views
        if v is not None:
            return v[name][n]
        if name == "_cat2":
            return self._cat[:n].reshape(n, self.kernel * self.channels)
        return getattr(self, name)[:n]


class FastAttentionDecoder(_Fused, _FeedForwardDecoder):
    """A windowed-attention ``Decoder`` (see ``WindowAttentionBackbone.step_slots``).

    State: ``k{i} [n_slots, D, W]``, ``v{i} [n_slots, D, W]`` (rings of the last W frames'
    keys and values per layer, transposed, heads side by side) and ``pos [n_slots]``. The
    attention itself is one Numba loop that reads the rings in place (no gather of the
    caches)."""

    kind = "attention"

    def _setup(self, w, m, rows):
        b = "backbone."
        kw = self.kw
        self.dim = D = int(kw["dim"])
        self.heads = int(kw["heads"])
        self.n_layers = L = int(kw["layers"])
        self.window = W = int(kw["window"])
        ff = int(kw["ff_mult"]) * D
        self.scale = 1.0 / math.sqrt(D // self.heads)
        f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
        self.w_inp, self.b_inp = _T(w[f"{b}inp.weight"]), f32(w[f"{b}inp.bias"])
        self.g1 = [f32(w[f"{b}norm1.{i}.weight"]) for i in range(L)]
        self.n1 = [f32(w[f"{b}norm1.{i}.bias"]) for i in range(L)]
        self.g2 = [f32(w[f"{b}norm2.{i}.weight"]) for i in range(L)]
        self.n2 = [f32(w[f"{b}norm2.{i}.bias"]) for i in range(L)]
        self.w_qkv = [_T(w[f"{b}qkv.{i}.weight"]) for i in range(L)]
        self.b_qkv = [f32(w[f"{b}qkv.{i}.bias"]) for i in range(L)]
        self.w_proj = [_T(w[f"{b}proj.{i}.weight"]) for i in range(L)]
        self.b_proj = [f32(w[f"{b}proj.{i}.bias"]) for i in range(L)]
        self.w_ff1 = [_T(w[f"{b}ff1.{i}.weight"]) for i in range(L)]
        self.b_ff1 = [f32(w[f"{b}ff1.{i}.bias"]) for i in range(L)]
        self.w_ff2 = [_T(w[f"{b}ff2.{i}.weight"]) for i in range(L)]
        self.b_ff2 = [f32(w[f"{b}ff2.{i}.bias"]) for i in range(L)]
        self.rel_bias = f32(w[f"{b}rel_bias"])                                # [H, W]
        self.rel_rev = K_.rel_reversed(self.rel_bias)   # as attend reads it (public: fork skips)
        self.state = {}
        # every layer's rings in one array (the fused step indexes them by layer)
        self._kr = np.zeros((L, m, D, W), np.float32)                  # keys transposed
        self._vr = np.zeros((L, m, D, W), np.float32)                  # values transposed
        for i in range(L):
            self.state[f"k{i}"] = self._kr[i]
            self.state[f"v{i}"] = self._vr[i]
        self.pos = np.zeros(m, np.int64)
        self.state["pos"] = self.pos
        self._h = np.zeros((rows, D), np.float32)
        self._a = np.zeros((rows, D), np.float32)
        self._t = np.zeros((rows, D), np.float32)
        self._qkv = np.zeros((rows, 3 * D), np.float32)
        self._att = np.zeros((rows, D), np.float32)
        self._f = np.zeros((rows, ff), np.float32)
        self._pos = np.zeros(rows, np.int64)
        self._sc = np.zeros(W, np.float64)
        self._sw = np.zeros(W, np.float32)
        st = lambda a: np.ascontiguousarray(np.stack(a))  # noqa: E731
        self._fused_w_parts = (st(self.g1), st(self.n1), st(self.w_qkv), st(self.b_qkv),
                               st(self.w_proj), st(self.b_proj), st(self.g2), st(self.n2),
                               st(self.w_ff1), st(self.b_ff1), st(self.w_ff2), st(self.b_ff2),
                               self.rel_rev)
        self.n_heads = np.array([self.heads], np.int64)  # (public: fork and prefault skip it)
        self._fused_tap = np.zeros(rows, np.float32)
        return D

    @property
    def _fused_geo(self):
        return self.n_heads

    def _fused_weights(self):
        return ((self.w_pre, self.b_pre, self.w_inp, self.b_inp) + self._fused_w_parts
                + (self.head_y_pad, self.head_p_pad, self.b_head))

    def _fused_work(self):
        return (self._x, self._p, self._h, self._a, self._t, self._qkv, self._att, self._f,
                self._pos, self._o_pad, self._o2_pad, self._hx, self._gx, self._bad, self._fused_tap,
                self._sc, self._sw)

    def _fused_state(self):
        return (self._kr, self._vr, self.pos)

    def _fused_par(self) -> list:
        return [self.scale]

    _fused_kernel = "attention_step"

    def step(self, features: np.ndarray, z: np.ndarray | None, slots: np.ndarray,
             out_harm: np.ndarray, out_noise: np.ndarray) -> np.ndarray:
        """One frame (or several, rows in frame order) for ``slots``; writes the controls and
        returns the bool mask of bad rows (real-time path: allocates nothing after warm-up,
        up to :attr:`ROW_VIEWS_MAX` rows). One nogil kernel
        (:func:`fast_kernels.attention_fused`), or the NumPy path where NumPy's BLAS cannot
        be called from the kernels."""
        if self._fused_ready():
            return self._fused_step(features, z, slots, out_harm, out_noise)
        _need_jit()
        n = len(slots)
        p, h, pos = self._begin_rows(features, z, slots)
        a, t, qkv, att = (self._rows("_a", n), self._rows("_t", n), self._rows("_qkv", n),
                          self._rows("_att", n))
        f = self._rows("_f", n)
        sl = slots if _is_int64_rows(slots) else np.ascontiguousarray(slots, dtype=np.int64)
        rel_rev, scale, heads, sc, sw = self.rel_rev, self.scale, self.heads, self._sc, self._sw
        for (g1, n1, w_qkv, b_qkv, k_ring, v_ring, w_proj, b_proj, g2, n2, w_ff1, b_ff1,
             w_ff2, b_ff2) in self._layers:
            K_.layer_norm(h, g1, n1, a)
            np.dot(a, w_qkv, out=qkv)
            K_.add_bias(qkv, b_qkv)
            K_.attend(qkv, k_ring, v_ring, sl, pos, rel_rev, scale, heads, att, sc, sw)
            np.dot(att, w_proj, out=t)
            K_.residual(h, t, b_proj)
            K_.layer_norm(h, g2, n2, a)
            np.dot(a, w_ff1, out=f)
            K_.bias_leaky(f, b_ff1)
            np.dot(f, w_ff2, out=t)
            K_.residual(h, t, b_ff2)
        return self._end_rows(h, p, pos, features, slots, out_harm, out_noise)

    def _make_row_views(self) -> None:
        super()._make_row_views()
        # one tuple per layer, its rings looked up once (no f-string keys per step)
        L = self.n_layers
        self._layers = tuple(zip(
            self.g1, self.n1, self.w_qkv, self.b_qkv,
            [self.state[f"k{i}"] for i in range(L)], [self.state[f"v{i}"] for i in range(L)],
            self.w_proj, self.b_proj, self.g2, self.n2, self.w_ff1, self.b_ff1,
            self.w_ff2, self.b_ff2))


def _aot_workload(inst) -> None:
    """For the ahead-of-time build's workload (rtsynth.aot), on a CNN instrument: the CNN's
    NumPy step, which :meth:`FastCNNDecoder.step` takes only where NumPy's BLAS cannot be
    called from the kernels (its small kernels are exported for it)."""
    inst.allocate(4, max_rows=8)
    dec = inst._fast
    for slots in ([0], [0, 1, 2], [0, 1, 0, 1]):
        s = np.array(slots, np.int64)
        f = np.zeros((len(s), dec.w_pre.shape[0]), np.float32)
        f[:, 0] = 0.5
        dec.pitch_clip = (0.0, 1.0) if len(s) == 3 else None
        dec.numpy_step(f, None, s, np.zeros((len(s), dec.k), np.float32),
                       np.zeros((len(s), len(dec.b_head) - 1 - dec.k), np.float32))


_BLAS: list = []


def blas_pointers() -> np.ndarray | None:
    """``[sgemm, sgemv]``: the addresses of NumPy's own ILP64 ``cblas_sgemm``/``cblas_sgemv``
    (its bundled OpenBLAS, the library ``np.dot`` calls), for :func:`fast_kernels.cnn_rows`;
    None when they cannot be found (another BLAS build): the caller steps through NumPy."""
    if not _BLAS:
        _BLAS.append(_find_blas())
    return _BLAS[0]


def _find_blas():
    import ctypes
    import glob
    import os
    libs = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    for path in sorted(glob.glob(os.path.join(libs, "lib*openblas64*.so*"))):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for pre in ("scipy_", ""):
            try:
                mm = getattr(lib, f"{pre}cblas_sgemm64_")
                mv = getattr(lib, f"{pre}cblas_sgemv64_")
            except AttributeError:
                continue
            return np.array([ctypes.cast(mm, ctypes.c_void_p).value,
                             ctypes.cast(mv, ctypes.c_void_p).value], np.int64)
    return None


def _is_int64_rows(a: np.ndarray) -> bool:
    """Whether ``a`` is already what ``np.ascontiguousarray(a, dtype=np.int64)`` returns."""
    return a.dtype == np.int64 and a.flags.c_contiguous


FAST = {"gru": FastGRUDecoder, "cnn": FastCNNDecoder, "attention": FastAttentionDecoder}


def fast_decoder(decoder, n_slots: int, arch: dict[str, Any] | None = None,
                 max_rows: int | None = None):
    """The NumPy path for a decoder: a torch ``Decoder``, or (``arch`` given) its NumPy state
    dict (:func:`rtsynth.nn.io.load_weights`). ``max_rows``: the most rows per step (default
    ``n_slots``)."""
    kind = decoder.backbone_kind if arch is None else arch["backbone"]
    return FAST[kind](decoder, n_slots, arch, max_rows)
