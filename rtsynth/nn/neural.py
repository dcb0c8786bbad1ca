"""A trained decoder as a :class:`rtsynth.instruments.base.StreamingInstrument`.

State is one row per voice slot, NumPy arrays owned by the decoder's NumPy real-time path
(:mod:`rtsynth.nn.fast`, every backbone): :meth:`step` runs one frame for the given slots in one
batched call and writes the controls into the engine's arrays. Nothing here imports torch; a
torch ``Decoder`` is accepted (and built on demand from the weights, :attr:`decoder`) for
training and analysis only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import spec
from ..instruments.base import StreamingInstrument
from . import fast_kernels as K_
from .fast import decoder_weights, fast_decoder
from .guard import OutputGuard, probe

#: how fast a neural instrument fades beyond the pitch range it was trained on
TAPER_DB_PER_OCTAVE = 12.0


def _config_hz(config: dict, key: str, sample_rate: int) -> float | None:
    """A bandwidth of the config (``bandwidth_hz``, ``noise_bandwidth_hz``): None when absent,
    else a number in (0, Nyquist]; anything else is one clear error at load (a NaN or negative
    one silently kept or removed every noise band)."""
    v = config.get(key)
    if v is None:
        return None
    nyquist = sample_rate / 2.0
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 < v <= nyquist:
        raise ValueError(f"config {key} must be a number of Hz in (0, {nyquist:g}], not {v!r}")
    return float(v)


class NeuralInstrument(StreamingInstrument):
    def __init__(self, decoder, config: dict[str, Any], name: str = "neural"):
        """``decoder``: the NumPy state dict of a model file (:func:`rtsynth.nn.io.load_weights`,
        names without the ``decoder.`` prefix; ``config['architecture']`` describes it), or a
        torch ``Decoder``."""
        if isinstance(decoder, dict):
            self.weights = decoder
            self._decoder = None
            self.arch = config["architecture"]
        else:
            self._decoder = decoder.eval()
            for p in self._decoder.parameters():
                p.requires_grad_(False)
            self.weights, self.arch = decoder_weights(self._decoder)
        self.config = config
        self.name = name
        self.sample_rate = int(config.get("sample_rate", spec.SAMPLE_RATE))
        self.hop = int(config.get("hop", spec.HOP))
        #: 7 (contract v1) or 9 (v2: + dynamics, brightness): the columns :meth:`step` takes
        self.n_features = int(self.arch["n_features"])
        #: the MIDI pitch range it was trained on (config ``pitch_range``), or None. Beyond it
        #: the model is given the nearest pitch inside (its timbre there, at the true f0) and
        #: its controls are tapered by TAPER_DB_PER_OCTAVE: never noise, never louder than
        #: inside. The real-time step only counts such rows (``guard.out_of_range``); the
        #: one line on stderr comes from :func:`rtsynth.nn.guard.report`.
        pr = config.get("pitch_range")
        self.pitch_range = (float(pr[0]), float(pr[1])) if pr else None
        self._clip = None if pr is None else ((self.pitch_range[0] - 60.0) / 24.0,
                                              (self.pitch_range[1] - 60.0) / 24.0)
        self._taper = np.zeros(0, np.float32)
        #: the source's bandwidth (config ``bandwidth_hz``, measured from the training data by
        #: :func:`rtsynth.data.source_bandwidth`), or None: harmonics above it fade out as they
        #: do below Nyquist, noise bands mostly above it are held at their floor (the
        #: SoundFont's samples hold nothing there; the model's leakage there was its largest
        #: error on melodies)
        self.bandwidth_hz = _config_hz(config, "bandwidth_hz", self.sample_rate)
        #: the source's noise bandwidth (config ``noise_bandwidth_hz``, fitted on the training
        #: notes by :func:`rtsynth.eval.bandwidth.fit_noise_bandwidth`; default the bandwidth):
        #: noise bands mostly above it are held at their floor. FluidR3's trumpet has
        #: harmonics up to 19 kHz but no noise above 15 (the model put it there)
        nbw = _config_hz(config, "noise_bandwidth_hz", self.sample_rate)
        self.noise_bandwidth_hz = self.bandwidth_hz if nbw is None else nbw
        if self.noise_bandwidth_hz is not None:
            # both folded into the model, so the step costs nothing more: the heads' mask
            # constants (fast.set_bandwidth) and, for each noise band mostly above the
            # (noise) bandwidth, a head row that holds its gain at the floor (1e-7)
            edges = spec.band_edges(self.sample_rate, self.n_noise_bands)
            inside = (self.noise_bandwidth_hz - edges[:-1]) / (edges[1:] - edges[:-1])
            off = 1 + int(self.arch["n_harmonics"]) + np.nonzero(inside < 0.5)[0]
            if len(off):
                w = dict(self.weights)
                w["head.weight"] = w["head.weight"].copy()
                w["head.bias"] = w["head.bias"].copy()
                w["head.weight"][off] = 0.0
                w["head.bias"][off] = -80.0
                self.weights = w
                if self._decoder is not None:
                    import torch
                    with torch.no_grad():
                        self._decoder.head.weight[off] = 0.0
                        self._decoder.head.bias[off] = -80.0
        arch = self.arch
        src = config.get("source") or {}
        self.description = config.get("description") or (
            f"neural {arch['backbone']} instrument"
            + (f", {src.get('name', '')} (GM program {src['program']})" if "program" in src else ""))
        self.n_slots = 0
        self.state: dict[str, np.ndarray] = {}
        self._fast = None
        timbre = config.get("timbre")
        self.z_dim = int(arch["z_dim"])
        if self.z_dim:
            self._anchors = np.array([timbre["anchors"][n] for n in timbre["path"]], dtype=np.float32)
            self.z = self._anchors[0].copy()
        else:
            self._anchors = None
            self.z = None
        self.timbre_position = 0.0
        #: muted when its controls are not finite or absurd (:mod:`rtsynth.nn.guard`)
        self.guard = OutputGuard(name)
        if self.pitch_range is not None:
            self.guard.range_text = f"MIDI {self.pitch_range[0]:g}-{self.pitch_range[1]:g}"

    def probe_output(self) -> str | None:
        """Check the model on a probe note (a fresh voice of its own, :func:`guard.probe`);
        a faulty one is muted. Returns the fault or None."""
        fast = fast_decoder(self.weights, 1, self.arch)
        z = None if self.z is None else self.z[None, :]
        slot = np.zeros(1, np.int64)
        why = probe(lambda f, h, g: fast.step(f, z, slot, h, g), self.n_features,
                    self.n_harmonics, self.n_noise_bands)
        if why is not None:
            self.guard.mute(why)
        return why

    @property
    def n_params(self) -> int:
        return int(sum(v.size for v in self.weights.values()))

    @property
    def decoder(self):
        """The torch ``Decoder`` with these weights (built on first use; imports torch)."""
        if self._decoder is None:
            import torch

            from .model import build_decoder
            d = build_decoder(self.arch)
            d.load_state_dict({k: torch.from_numpy(v) for k, v in self.weights.items()})
            d.pitch_clip = self._clip
            if self.bandwidth_hz is not None:
                d.set_bandwidth(self.bandwidth_hz)
            self._decoder = d.eval()
            for p in self._decoder.parameters():
                p.requires_grad_(False)
        return self._decoder

    # --- state --------------------------------------------------------------------------------
    def allocate(self, n_slots: int, max_rows: int | None = None) -> None:
        """State for ``n_slots`` voices; ``max_rows``: the most rows one :meth:`step` gets
        (default ``n_slots``; an offline engine batches several frames per voice)."""
        self.n_slots = int(n_slots)
        self._fast = fast_decoder(self.weights, self.n_slots, self.arch, max_rows)
        self._fast.pitch_clip = self._clip
        if self.bandwidth_hz is not None:
            self._fast.set_bandwidth(self.bandwidth_hz)
        self._taper = np.zeros(2 * self._fast.max_rows, np.float32)
        self._taper_views = _row_views(self._taper, self._fast)
        self.state = self._fast.state

    @property
    def max_rows(self) -> int:
        """The most rows one :meth:`step` accepts (set by :meth:`allocate`)."""
        return self._fast.max_rows if self._fast is not None else 0

    def steppers(self, k: int) -> list:
        """``k`` step functions (same signature as :meth:`step`) over this instrument's state,
        each with its own work buffers: they may run at the same time from ``k`` threads on
        disjoint sets of slots. The first is :meth:`step` itself. Only one for a recurrent
        decoder without its fused step (NumPy's BLAS not callable from the kernels): its
        NumPy step runs one small recurrence per frame, bound by the GIL, so two threads
        only halve its batches."""
        out = [self.step]
        if self.arch["backbone"] == "gru" and not self._fast._fused_ready():
            return out
        for _ in range(k - 1):
            out.append(_Stepper(self, self._fast.fork()).step)
        return out

    def reset(self, slots: np.ndarray) -> None:
        if self._fast is None:
            return
        slots = np.asarray(slots, dtype=np.int64)
        if slots.size:
            self._fast.reset(slots)

    def snapshot(self) -> dict[str, Any]:
        return {"state": {k: v.copy() for k, v in self.state.items()},
                "z": None if self.z is None else self.z.copy()}

    def restore(self, snap: dict[str, Any]) -> None:
        st = snap["state"]
        if st:
            if self._fast is None:
                self.allocate(next(iter(st.values())).shape[0])
            self._fast.load_state(st)
            self.state = self._fast.state
            self.n_slots = self._fast.n_slots
        if snap.get("z") is not None:
            self.z = np.array(snap["z"], dtype=np.float32)

    # --- the real-time step -------------------------------------------------------------------
    @property
    def multi_frame(self) -> bool:  # type: ignore[override]
        return bool(getattr(self._fast, "multi_frame", False))

    def step(self, features: np.ndarray, slots: np.ndarray,
             out_harm: np.ndarray, out_noise: np.ndarray) -> None:
        """Real-time path (the engine's generator thread or JACK callback): no locks, no I/O,
        and after warm-up no allocation (the decoder's work buffers and their row views, this
        instrument's taper buffer, all made in :meth:`allocate`)."""
        _step(self, self._fast, self._taper, self._taper_views, features, slots, out_harm,
              out_noise)

    def _z_row(self):
        """``z[None, :]`` (a view made once per timbre, not per step), or None."""
        z = self.z
        if z is None:
            return None
        row = self._z_view
        if row is None or row.base is not z:
            row = self._z_view = z[None, :]
        return row

    _z_view = None

    # --- timbre (VAE models) --------------------------------------------------------------------
    @property
    def has_timbre(self) -> bool:
        return self.z_dim > 0

    def set_timbre(self, position: float) -> None:
        """Piecewise-linear path through the instruments' mean latents, ``position`` in [0, 1]."""
        if not self.z_dim:
            return
        p = float(np.clip(position, 0.0, 1.0))
        self.timbre_position = p
        m = len(self._anchors)
        if m == 1:
            z = self._anchors[0]
        else:
            s = p * (m - 1)
            i = min(int(s), m - 2)
            a = s - i
            z = (1.0 - a) * self._anchors[i] + a * self._anchors[i + 1]
        self.z = np.asarray(z, dtype=np.float32).copy()

    def sample_timbre(self, seed: int | None = None) -> None:
        """A new timbre: a random mixture of the instruments' latents plus prior noise."""
        if not self.z_dim:
            return
        rng = np.random.default_rng(seed)
        w = rng.dirichlet(np.ones(len(self._anchors)))
        z = w @ self._anchors + 0.3 * rng.standard_normal(self.z_dim) * self._anchors.std(0)
        self.z = z.astype(np.float32)

    def render_note(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Offline helper: whole-note features ``[T, 7]`` -> (harm ``[T, K]``, noise ``[T, Bn]``),
        one fresh voice stepped frame by frame (the same numbers as the whole-sequence pass)."""
        f = np.ascontiguousarray(features, dtype=np.float32)
        fast = fast_decoder(self.weights, 1, self.arch)
        fast.pitch_clip = self._clip
        if self.bandwidth_hz is not None:
            fast.set_bandwidth(self.bandwidth_hz)
        z = None if self.z is None else self.z[None, :]
        T = len(f)
        h = np.zeros((T, self.n_harmonics), np.float32)
        g = np.zeros((T, self.n_noise_bands), np.float32)
        slot = np.zeros(1, np.int64)
        buf = np.zeros(2, np.float32)
        for t in range(T):
            fast.step(f[t:t + 1], z, slot, h[t:t + 1], g[t:t + 1])
            self._bound(f[t:t + 1], 1, h[t:t + 1], g[t:t + 1], buf)
        return h, g

    def post_controls(self, features, out_harm, out_noise) -> None:
        """What :meth:`step` does to the decoder's controls after it (the range taper), for
        controls from elsewhere (the torch decoder); allocates."""
        n = len(features)
        self._bound(features, n, out_harm, out_noise, np.zeros(2 * n, np.float32))

    def _taper_fast(self, features, n, out_harm, out_noise, buf, views) -> None:
        """:meth:`_bound` for a step whose decoder found rows beyond the range (the same float32
        operations, in kernels and on views made once: nothing allocated)."""
        self.guard.out_of_range += 1
        lo, hi = self._clip
        a = views[n] if views is not None else buf[:n]
        K_.taper_args(features, n, lo, hi, _TAPER_COEF, buf)
        np.exp(a, out=a)
        K_.scale_rows(out_harm, out_noise, n, buf)

    def _bound(self, features, n, out_harm, out_noise, buf) -> None:
        """Taper the rows whose pitch is beyond the trained range, for :meth:`render_note` and
        :meth:`post_controls` (NumPy ops into ``buf``, ``[2 n]``; slices allocate: the real-time
        step uses :meth:`_taper_fast`, the same float32 operations)."""
        if self._clip is None or n == 0:
            return
        lo, hi = self._clip
        p = features[:n, 0]
        if p.min() >= lo and p.max() <= hi:
            return
        self.guard.out_of_range += 1
        a = buf[:n]
        b = buf[n:2 * n]
        np.subtract(p, hi, out=a)
        np.maximum(a, 0.0, out=a)
        np.subtract(lo, p, out=b)
        np.maximum(b, 0.0, out=b)
        a += b                     # pitch-feature units outside (1 unit = 24 semitones)
        a *= np.float32(_TAPER_COEF)
        np.exp(a, out=a)
        out_harm[:n] *= a[:, None]
        out_noise[:n] *= a[:, None]


#: the taper's exponent per pitch-feature unit outside the range (1 unit = 24 semitones)
_TAPER_COEF = float(np.float32(-2.0 * TAPER_DB_PER_OCTAVE / 20.0 * np.log(10.0)))


def _row_views(buf: np.ndarray, fast) -> list | None:
    """``buf[:n]`` for every row count a step of ``fast`` may get (None: too many; slice)."""
    rows = fast.max_rows
    return [buf[:m] for m in range(rows + 1)] if fast.row_views is not None else None


def _zero_rows(a: np.ndarray, n: int) -> None:
    if len(a) == n:
        a.fill(0.0)
    else:
        a[:n] = 0.0


def _step(inst, fast, buf, views, features, slots, out_harm, out_noise) -> None:
    """One step of ``inst`` through ``fast`` (its own decoder or a fork): decoder, range
    taper, output guard. Allocates nothing after warm-up."""
    n = len(slots)
    if n == 0:
        return
    guard = inst.guard
    if guard.fault is not None:
        _zero_rows(out_harm, n)
        _zero_rows(out_noise, n)
        return
    bad = fast.step(features, inst._z_row(), slots, out_harm, out_noise)
    if fast.n_outside:
        inst._taper_fast(features, n, out_harm, out_noise, buf, views)
    if fast.n_bad:
        guard.check(bad, n, out_harm, out_noise)


class _Stepper:
    """:meth:`NeuralInstrument.step` through a forked decoder (own work buffers, shared state)."""

    def __init__(self, inst: NeuralInstrument, fast):
        self.inst = inst
        self.fast = fast
        self._taper = np.zeros(2 * fast.max_rows, np.float32)
        self._taper_views = _row_views(self._taper, fast)

    def step(self, features, slots, out_harm, out_noise) -> None:
        _step(self.inst, self.fast, self._taper, self._taper_views, features, slots, out_harm,
              out_noise)
