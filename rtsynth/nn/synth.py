"""Differentiable torch synthesis, exactly the convention of :mod:`rtsynth.spec`.

The engine renders audio with Numba (:mod:`rtsynth.dsp`); training renders the same signal here so
that what the model learns is what the engine plays. Shapes are batch first:

    harm  ``[B, T, K]``  linear harmonic amplitudes per frame (already band-limited)
    noise ``[B, T, Bn]`` noise band RMS gains per frame
    f0    ``[B, T*hop]`` Hz per sample
    ->    ``[B, T*hop]`` audio

Works in the dtype of ``harm`` (float64 in tests against :func:`rtsynth.spec.synthesize_reference`,
float32 in training; the phase is accumulated in float64 either way).
"""

from __future__ import annotations

import math

import torch

from .. import spec


def upsample_controls(frames: torch.Tensor, hop: int = spec.HOP,
                      first: torch.Tensor | int = 0) -> torch.Tensor:
    """``[B, T, C]`` frame controls -> ``[B, T*hop, C]`` by the causal ramp of :mod:`rtsynth.spec`.

    A value is reached at the end of its frame; frame ``-1`` is zero (every voice starts silent).
    ``first``: the frame that is the note's first (per item ``[B]``, or one for all; -1: none),
    which rises over ``spec.FIRST_RAMP`` samples instead of the hop.
    """
    b, t, c = frames.shape
    prev = torch.cat([frames.new_zeros(b, 1, c), frames[:, :-1]], dim=1)
    a = torch.as_tensor(spec.ramp_alphas(hop), device=frames.device, dtype=frames.dtype)
    f = torch.as_tensor(first, device=frames.device).reshape(-1, 1)          # [B or 1, 1]
    is_first = torch.arange(t, device=frames.device)[None, :] == f           # [B or 1, T]
    alpha = torch.where(is_first[:, :, None], a[0], a[1])                    # [B or 1, T, hop]
    out = prev[:, :, None, :] + alpha[:, :, :, None] * (frames - prev)[:, :, None, :]
    return out.reshape(b, t * hop, c)


def f0_per_sample(pitch_feature: torch.Tensor, hop: int = spec.HOP) -> torch.Tensor:
    """Frame-start pitch features ``[B, T]`` -> per-sample f0 ``[B, T*hop]`` in Hz.

    The pitch is linearly interpolated between frame starts in midi units and held after the last
    frame start (training convention; for a held note it is a constant).
    """
    midi = spec.pitch_feature_to_midi(pitch_feature)
    nxt = torch.cat([midi[:, 1:], midi[:, -1:]], dim=1)
    alpha = torch.arange(hop, device=midi.device, dtype=midi.dtype) / hop
    m = midi[:, :, None] + alpha[None, None, :] * (nxt - midi)[:, :, None]
    m = m.reshape(midi.shape[0], -1)
    return spec.A4_HZ * torch.pow(2.0, (m - spec.A4_MIDI) / 12.0)     # spec.midi_to_hz


def nyquist_mask(f0: torch.Tensor, n_harmonics: int = spec.N_HARMONICS,
                 sample_rate: int = spec.SAMPLE_RATE) -> torch.Tensor:
    """``[...]`` Hz -> ``[..., K]`` weights: 1 well below Nyquist, 0 at or above 0.95 of it."""
    nyq = sample_rate / 2.0
    h = torch.arange(1, n_harmonics + 1, device=f0.device, dtype=f0.dtype)
    fh = f0[..., None] * h
    return torch.clamp((spec.NYQUIST_MARGIN * nyq - fh) / spec.nyquist_fade_hz(sample_rate),
                       0.0, 1.0)


def harmonic_amplitudes(amp: torch.Tensor, dist: torch.Tensor, f0: torch.Tensor,
                        sample_rate: int = spec.SAMPLE_RATE) -> torch.Tensor:
    """Torch twin of :func:`rtsynth.spec.harmonic_amplitudes`: ``[...]``, ``[..., K]`` -> ``[..., K]``."""
    d = dist * nyquist_mask(f0, dist.shape[-1], sample_rate)
    d = d / torch.clamp(d.sum(-1, keepdim=True), min=1e-7)
    return amp[..., None] * d


class NoiseTables:
    """The spec noise tables on a device, cached per (device, dtype)."""

    def __init__(self, sample_rate: int = spec.SAMPLE_RATE, n_bands: int = spec.N_NOISE_BANDS):
        self.np_tables = spec.noise_tables(sample_rate, n_bands)
        self._cache: dict = {}

    def get(self, device, dtype) -> torch.Tensor:
        key = (str(device), dtype)
        if key not in self._cache:
            self._cache[key] = torch.as_tensor(self.np_tables, dtype=dtype, device=device)
        return self._cache[key]


_TABLES: dict[tuple[int, int], NoiseTables] = {}


def noise_tables(sample_rate: int, n_bands: int, device, dtype) -> torch.Tensor:
    key = (sample_rate, n_bands)
    if key not in _TABLES:
        _TABLES[key] = NoiseTables(sample_rate, n_bands)
    return _TABLES[key].get(device, dtype)


def harmonic_signal(harm: torch.Tensor, f0: torch.Tensor, hop: int = spec.HOP,
                    sample_rate: int = spec.SAMPLE_RATE,
                    first: torch.Tensor | int = 0) -> torch.Tensor:
    """Harmonic bank: ``[B, T, K]`` amplitudes, ``[B, N]`` f0 -> ``[B, N]``."""
    A = upsample_controls(harm, hop, first)
    n = A.shape[1]
    inc = 2.0 * math.pi * f0[:, : n - 1].to(torch.float64) / sample_rate
    theta = torch.cat([inc.new_zeros(inc.shape[0], 1), torch.cumsum(inc, dim=1)], dim=1)
    theta = torch.remainder(theta, 2.0 * math.pi)
    k = harm.shape[-1]
    h = torch.arange(1, k + 1, device=harm.device, dtype=torch.float64 if harm.dtype == torch.float64
                     else harm.dtype)
    ph = theta.to(h.dtype)[:, :, None] * h
    return (A * torch.sin(ph).to(A.dtype)).sum(-1)


def noise_signal(noise: torch.Tensor, offset: torch.Tensor | int = 0, hop: int = spec.HOP,
                 sample_rate: int = spec.SAMPLE_RATE,
                 first: torch.Tensor | int = 0) -> torch.Tensor:
    """Filtered noise: ``[B, T, Bn]`` gains, per-item table offsets -> ``[B, N]``."""
    G = upsample_controls(noise, hop, first)
    b, n, nb = G.shape
    tables = noise_tables(sample_rate, nb, noise.device, noise.dtype)
    length = tables.shape[1]
    off = torch.as_tensor(offset, device=noise.device, dtype=torch.int64).reshape(-1)
    if off.numel() == 1:
        off = off.expand(b)
    idx = (off[:, None] + torch.arange(n, device=noise.device)[None, :]) % length   # [B, N]
    t = tables[:, idx]                                                               # [Bn, B, N]
    return torch.einsum("bnk,kbn->bn", G, t)


def synthesize(harm: torch.Tensor, noise: torch.Tensor, f0: torch.Tensor,
               offset: torch.Tensor | int = 0, hop: int = spec.HOP,
               sample_rate: int = spec.SAMPLE_RATE,
               first: torch.Tensor | int = 0) -> torch.Tensor:
    """Harmonic bank plus filtered noise, the spec's ``y(n)``; ``[B, T*hop]``. ``first``: the
    note's first frame (:func:`upsample_controls`; frame 0 by default, as in the spec)."""
    return (harmonic_signal(harm, f0, hop, sample_rate, first)
            + noise_signal(noise, offset, hop, sample_rate, first))

