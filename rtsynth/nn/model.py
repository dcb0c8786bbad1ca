"""The DDSP-style decoder, the VAE timbre encoder and the GAN discriminators.

Decoder (one voice per batch row, one row per control frame):

    features [B, T, 7] (+ timbre z [B, Z]) -> MLP -> backbone -> head ->
        amp   [B, T]       overall amplitude, exp-sigmoid scaled (> 0)
        dist  [B, T, K]    harmonic distribution (softmax), band-limited with the Nyquist mask
                           of the frame's f0 and renormalised (:func:`rtsynth.nn.synth.harmonic_amplitudes`)
        noise [B, T, Bn]   noise band RMS gains, exp-sigmoid scaled
    -> harm = amp * dist  [B, T, K], noise [B, T, Bn]   (the controls of :mod:`rtsynth.spec`)
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from .. import spec
from .arch import BACKBONE_DEFAULTS
from .backbones import make_backbone, State


LOG10 = math.log(10.0)


#: the backbones' defaults (one table, :data:`rtsynth.nn.arch.BACKBONE_DEFAULTS`)
DEFAULT_BACKBONE_KW = BACKBONE_DEFAULTS


class Decoder(nn.Module):
    def __init__(self, backbone: str = "gru", backbone_kw: dict | None = None, pre_dim: int = 128,
                 z_dim: int = 0, n_features: int = spec.N_FEATURES,
                 n_harmonics: int = spec.N_HARMONICS, n_noise: int = spec.N_NOISE_BANDS,
                 sample_rate: int = spec.SAMPLE_RATE, amp_max: float = 2.0,
                 noise_max: float = 0.5):
        super().__init__()
        self.backbone_kind = backbone
        self.n_features, self.z_dim = n_features, z_dim
        self.n_harmonics, self.n_noise = n_harmonics, n_noise
        self.sample_rate, self.amp_max, self.noise_max = sample_rate, amp_max, noise_max
        self.pre = nn.Linear(n_features + z_dim, pre_dim)
        self.backbone = make_backbone(backbone, pre_dim, **(backbone_kw or {}))
        self.head = nn.Linear(self.backbone.out_dim + pre_dim, 1 + n_harmonics + n_noise)
        nyq = sample_rate / 2.0
        # ln f0 = slope * feature0 + offset
        self._f0_log_slope, self._f0_log_offset = spec.log_hz_of_pitch_feature()
        fade = spec.nyquist_fade_hz(sample_rate)
        self._mask_c0 = spec.NYQUIST_MARGIN * nyq / fade
        self.register_buffer("h_scaled", torch.arange(1, n_harmonics + 1, dtype=torch.float32)
                             / fade, persistent=False)
        scale = torch.zeros(1 + n_harmonics + n_noise)
        scale[0] = amp_max
        scale[1 + n_harmonics:] = noise_max
        self.register_buffer("_gain_scale", scale, persistent=False)
        self.register_buffer("_eps", torch.tensor(1e-7), persistent=False)
        self.register_buffer("_f0_log_offset_t", torch.tensor(self._f0_log_offset), persistent=False)
        self.register_buffer("_mask_c0_t", torch.tensor(self._mask_c0), persistent=False)
        with torch.no_grad():  # start with quiet noise and a falling harmonic slope
            self.head.bias[1 + n_harmonics:] = -3.0
            self.head.bias[1:1 + n_harmonics] = -torch.log(torch.arange(1, n_harmonics + 1.0))

    def init_state(self, batch: int, device=None, dtype=torch.float32) -> State:
        return self.backbone.init_state(batch, device, dtype)

    def set_bandwidth(self, hz: float) -> None:
        """Harmonics fade out between 0.95 ``hz`` and ``hz`` when ``hz`` is below 0.9 of
        Nyquist (:meth:`rtsynth.nn.fast._FastDecoder.set_bandwidth`)."""
        if hz < 0.9 * self.sample_rate / 2.0:
            fade = 0.05 * hz
            self._mask_c0_t = torch.tensor(hz / fade, device=self.h_scaled.device)
            self.h_scaled = (torch.arange(1, self.n_harmonics + 1, dtype=torch.float32,
                                          device=self.h_scaled.device) / fade)

    #: (lo, hi) of the pitch feature the model was trained on, or None: the model's input is
    #: clamped to it (the heads keep the true pitch: Nyquist mask); see rtsynth.nn.neural
    pitch_clip: tuple[float, float] | None = None

    def _inputs(self, features: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        x = features
        if self.pitch_clip is not None:
            x = torch.cat([x[..., :1].clamp(*self.pitch_clip), x[..., 1:]], dim=-1)
        if self.z_dim:
            if z is None:
                z = features.new_zeros(*features.shape[:-1], self.z_dim)
            elif z.dim() < features.dim():
                z = z[:, None, :].expand(-1, features.shape[1], -1)
            x = torch.cat([x, z], dim=-1)
        return F.leaky_relu(self.pre(x), 0.1)

    def _heads(self, y: torch.Tensor, p: torch.Tensor, features: torch.Tensor):
        """Lean on ops (it runs every frame for every voice): one sigmoid/pow/addcmul for the
        amplitude and the noise gains; softmax, Nyquist mask and renormalisation fold into
        ``exp(l - max) * mask / sum``; ``f0 * h`` is one exp and one addcmul."""
        o = self.head(torch.cat([y, p], dim=-1))
        k = self.n_harmonics
        # [amp, logits..., noise...] -> scale * sigmoid(o) ** log(10) + 1e-7 (logits scaled by 0)
        sg = torch.addcmul(self._eps, torch.sigmoid(o) ** LOG10, self._gain_scale)
        amp = sg[..., :1]
        noise = sg[..., 1 + k:]
        logits = o[..., 1:1 + k]
        e = torch.exp(logits - logits.amax(-1, keepdim=True))
        # mask = clamp(c0 - f0 * h / fade, 0, 1) (spec.nyquist_mask), f0 = exp(a * pitch + b)
        f0 = torch.exp(torch.add(self._f0_log_offset_t, features[..., :1],
                                 alpha=self._f0_log_slope))
        mask = torch.clamp(torch.addcmul(self._mask_c0_t, f0, self.h_scaled, value=-1.0), 0.0, 1.0)
        e = e * mask
        harm = e * (amp / torch.clamp(e.sum(-1, keepdim=True), min=1e-30))
        return harm, noise

    def forward(self, features: torch.Tensor, z: torch.Tensor | None = None,
                state: State | None = None):
        """``[B, T, 7]`` (+ ``[B, Z]``) -> harm ``[B, T, K]``, noise ``[B, T, Bn]``, state."""
        p = self._inputs(features, z)
        y, state = self.backbone(p, state)
        harm, noise = self._heads(y, p, features)
        return harm, noise, state

    def step_slots(self, features: torch.Tensor, z: torch.Tensor | None, state: State,
                   idx: torch.Tensor):
        """One frame ``[n, 7]`` for rows ``idx`` of a slot state (updated in place) ->
        harm ``[n, K]``, noise ``[n, Bn]``. Same numbers as :meth:`forward`, the real-time path."""
        p = self._inputs(features, z)
        y = self.backbone.step_slots(p, state, idx)
        return self._heads(y, p, features)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 30.0,
                   fmax: float | None = None) -> np.ndarray:
    """``[n_mels, n_fft//2+1]`` triangular mel filters (HTK mel scale)."""
    fmax = fmax or sample_rate / 2.0
    mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)  # noqa: E731
    imel = lambda m: 700.0 * (10.0 ** (m / 2595.0) - 1.0)  # noqa: E731
    pts = imel(np.linspace(mel(fmin), mel(fmax), n_mels + 2))
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    fb = np.zeros((n_mels, len(freqs)), dtype=np.float32)
    for i in range(n_mels):
        lo, c, hi = pts[i], pts[i + 1], pts[i + 2]
        up = (freqs - lo) / max(c - lo, 1e-9)
        down = (hi - freqs) / max(hi - c, 1e-9)
        fb[i] = np.clip(np.minimum(up, down), 0.0, None)
    return fb


def build_decoder(arch: dict) -> Decoder:
    """An ``architecture`` dict (:func:`rtsynth.nn.arch.decoder_config`) -> a fresh ``Decoder``."""
    return Decoder(backbone=arch["backbone"], backbone_kw=arch["backbone_kw"],
                   pre_dim=arch["pre_dim"], z_dim=arch["z_dim"], n_features=arch["n_features"],
                   n_harmonics=arch["n_harmonics"], n_noise=arch["n_noise"],
                   sample_rate=arch["sample_rate"], amp_max=arch["amp_max"],
                   noise_max=arch["noise_max"])


class TimbreEncoder(nn.Module):
    """Audio ``[B, N]`` -> log-mel -> conv -> time average -> (mean ``[B, Z]``, logvar ``[B, Z]``)."""

    def __init__(self, z_dim: int = 8, sample_rate: int = spec.SAMPLE_RATE, n_fft: int = 1024,
                 hop: int = 256, n_mels: int = 64, channels: int = 128):
        super().__init__()
        self.z_dim, self.n_fft, self.hop = z_dim, n_fft, hop
        self.register_buffer("mel", torch.from_numpy(mel_filterbank(sample_rate, n_fft, n_mels)),
                             persistent=False)
        self.register_buffer("win", torch.hann_window(n_fft), persistent=False)
        self.conv1 = nn.Conv1d(n_mels, channels, 3, padding=1)
        self.conv2 = nn.Conv1d(channels, channels, 3, padding=1)
        self.out = nn.Linear(channels, 2 * z_dim)

    def forward(self, audio: torch.Tensor):
        s = torch.stft(audio, self.n_fft, self.hop, window=self.win.to(audio.dtype),
                       return_complex=True).abs()
        m = torch.log(torch.matmul(self.mel.to(audio.dtype), s) + 1e-5)       # [B, M, T]
        m = m - m.mean(dim=(1, 2), keepdim=True)    # timbre, not loudness
        h = F.leaky_relu(self.conv1(m), 0.1)
        h = F.leaky_relu(self.conv2(h), 0.1)
        mu, logvar = self.out(h.mean(-1)).chunk(2, dim=-1)
        return mu, logvar.clamp(-10.0, 5.0)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.mean(torch.sum(mu ** 2 + logvar.exp() - 1.0 - logvar, dim=-1))


# --- discriminators (GAN phase) ------------------------------------------------------------------

class _SpecDisc(nn.Module):
    def __init__(self, n_fft: int, ch: int = 16):
        super().__init__()
        self.n_fft = n_fft
        self.register_buffer("win", torch.hann_window(n_fft), persistent=False)
        self.layers = nn.ModuleList([
            nn.Conv2d(1, ch, (3, 9), padding=(1, 4)),
            nn.Conv2d(ch, ch, (3, 9), stride=(1, 2), padding=(1, 4)),
            nn.Conv2d(ch, ch, (3, 9), stride=(1, 2), padding=(1, 4)),
            nn.Conv2d(ch, ch, (3, 3), padding=(1, 1)),
        ])
        self.out = nn.Conv2d(ch, 1, (3, 3), padding=(1, 1))

    def forward(self, x):
        s = torch.stft(x, self.n_fft, self.n_fft // 4, window=self.win, return_complex=True).abs()
        h = torch.log(s + 1e-5).transpose(1, 2)[:, None]          # [B, 1, T, F]
        feats = []
        for layer in self.layers:
            h = F.leaky_relu(layer(h), 0.2)
            feats.append(h)
        return self.out(h), feats


class _WaveDisc(nn.Module):
    def __init__(self, pool: int, ch: int = 16):
        super().__init__()
        self.pool = pool
        self.layers = nn.ModuleList([
            nn.Conv1d(1, ch, 15, padding=7),
            nn.Conv1d(ch, 2 * ch, 41, stride=4, padding=20, groups=4),
            nn.Conv1d(2 * ch, 4 * ch, 41, stride=4, padding=20, groups=16),
            nn.Conv1d(4 * ch, 4 * ch, 5, padding=2),
        ])
        self.out = nn.Conv1d(4 * ch, 1, 3, padding=1)

    def forward(self, x):
        h = x[:, None]
        if self.pool > 1:
            h = F.avg_pool1d(h, self.pool * 2, self.pool, padding=self.pool // 2)
        feats = []
        for layer in self.layers:
            h = F.leaky_relu(layer(h), 0.2)
            feats.append(h)
        return self.out(h), feats


class Discriminator(nn.Module):
    """Multi-resolution spectrogram discriminators plus multi-scale waveform discriminators."""

    def __init__(self, fft_sizes=(512, 1024, 2048), pools=(1, 2, 4)):
        super().__init__()
        self.discs = nn.ModuleList([_SpecDisc(n) for n in fft_sizes] + [_WaveDisc(p) for p in pools])

    def forward(self, x):
        return [d(x) for d in self.discs]


def d_hinge_loss(real_out, fake_out) -> torch.Tensor:
    loss = 0.0
    for (r, _), (f, _) in zip(real_out, fake_out):
        loss = loss + F.relu(1.0 - r).mean() + F.relu(1.0 + f).mean()
    return loss / len(real_out)


def g_hinge_loss(fake_out) -> torch.Tensor:
    return sum(-f.mean() for f, _ in fake_out) / len(fake_out)


def feature_matching_loss(real_out, fake_out) -> torch.Tensor:
    loss, n = 0.0, 0
    for (_, rf), (_, ff) in zip(real_out, fake_out):
        for a, b in zip(rf, ff):
            loss = loss + (a.detach() - b).abs().mean() / (a.detach().abs().mean() + 1e-5)
            n += 1
    return loss / max(n, 1)
