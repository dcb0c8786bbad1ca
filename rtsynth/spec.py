"""The contract between the engine, the instruments and training.

Everything that must agree between live synthesis (Numba, :mod:`rtsynth.dsp.synth`) and training
(torch, :mod:`rtsynth.nn.synth`) is defined here once: the control frame grid, the per-frame input
features of a voice, the noise tables and the interpolation convention.

Voice clock
    Every voice has its own sample clock ``n = 0, 1, ...`` that starts at the sample where its
    note-on takes effect. Control frames are aligned to that clock: frame ``k`` covers voice
    samples ``[k*hop, (k+1)*hop)``. So a note-on at any sample offset starts a frame there, and
    a note rendered in training (onset at sample 0) sees exactly the frames it sees live.

Features (model inputs), one row per frame, ``N_FEATURES`` columns (:func:`note_features` for
a whole note, :func:`frame_features` for one frame inside a kernel):
    0 pitch      (midi pitch including bend - 60) / 24, at the frame start
    1 velocity   note-on velocity / 127
    2 gate       1 while the key (or the sustain pedal) is held at the frame start, else 0
    3 on_fast    exp(-t_on / 0.05)      t_on: seconds from note-on to the frame start
    4 on_slow    exp(-t_on / 0.5)
    5 off_fast   exp(-t_off / 0.05)     t_off: seconds from release to the frame start; 0 until
    6 off_slow   exp(-t_off / 0.5)      the release (released means release_sample <= frame start)

    Models of contract version 2 (``n_features == N_FEATURES_V2``) take two more columns:

    7 dynamics   the loudness the player asks for, on the velocity scale in [0, 1]: ``d`` asks
                 for the loudness the source instrument has when played at velocity ``127 d``.
                 At play time ``d = velocity / 127`` for the whole note unless an expression
                 control moves it (pressure, breath, CC11: the expression mapping of the
                 engine), so a keyboard with no pressure plays as a velocity-only model would.
                 In training it is the A-weighted loudness measured from the target audio,
                 mapped onto the velocity scale by the dataset's calibration, held through
                 the attack and after the release (rtsynth.data.features_v2); a note that
                 no controller moved is anchored to its velocity (``velocity / 127`` all
                 along, exactly the play-time value), and the velocity column of a v2
                 training row is the dynamics at the note-on.
    8 brightness CC74 / 127 in [0, 1]; ``DEFAULT_BRIGHTNESS`` (CC74 = 64) is the instrument as
                 recorded. In training, the target's spectral brightness relative to what is
                 typical for its pitch and dynamics (rtsynth.data), neutral at the default:
                 ``DEFAULT_BRIGHTNESS + 0.5 * log2(centroid / typical centroid)``, so CC74
                 127 asks for about twice the typical centroid and 0 for about half.

    A v1 model (7 columns) gets dynamics and brightness applied by the engine to its controls
    instead (dynamics as level, brightness as a spectral tilt of the harmonic amplitudes).

Every feature depends only on the voice's state at its frame's first sample, so the engine can
compute a frame exactly (whatever the audio block size) as soon as the block holding that sample
is rendered: a release inside a frame takes effect at the next frame (at most one hop later).

Controls (model outputs, after :func:`harmonic_amplitudes`), one row per frame:
    harm[K]   linear amplitude of harmonic h = 1..K (already band-limited)
    noise[B]  RMS gain of noise band b = 0..B-1

Synthesis of one voice, sample n of frame k (j = n - k*hop):
    alpha   = (j + 1) / hop                       k >= 1
    alpha   = min((j + 1) / R, 1)                 k = 0,  R = min(FIRST_RAMP, hop)
    A(n)    = harm[k-1] + alpha * (harm[k] - harm[k-1])          harm[-1] = 0
    G(n)    = noise[k-1] + alpha * (noise[k] - noise[k-1])       noise[-1] = 0
    theta_0 = 0;  theta_{n+1} = theta_n + 2*pi*f0(n)/sr
    y(n)    = sum_h A_h(n) * sin(h * theta_n) + sum_b G_b(n) * T_b[(offset + n) mod L]

so a control value is reached at the end of its frame (causal: no look-ahead), every voice starts
from silence, and the onset is exactly at the note-on sample. The first frame rises from silence
over ``FIRST_RAMP`` samples (0.21 ms) and holds its value for the rest of the frame: the onset is
heard at once. (A ramp over the whole first hop, 4 ms, made every attack late: a model's first
frame is a fraction of the note's level, so flute-lite reached 2% of its peak 1.5-3.8 ms after
the note-on. A 32-sample ramp still took 16-18 samples, median over keys 60-83: the first frame
is 3-7% of the note's peak, so 2% of the peak is half the ramp; 10 samples take 8 (0.17 ms),
below FluidSynth's median at 128 frames, 0.24 ms, whose events sound from their block's
start.) 10 samples is a de-click ramp: in a 256-sample window around the note-on the energy
above 6 kHz stays below the held note's (flute-life -16.4 dB median, -10.3 worst; FluidSynth's
flute -29.2 / -8.4); 8 would add 3 dB in the worst 64-sample window for one sample sooner.
"""

from __future__ import annotations

import math

import numpy as np

from .jit import subkernel

SAMPLE_RATE = 48000
HOP = 192  # 250 control frames per second at 48 kHz
#: a voice's first control frame ramps up from silence over this many samples (then holds),
#: not over the whole hop: see "Synthesis" above
FIRST_RAMP = 10
N_HARMONICS = 64
N_NOISE_BANDS = 20
NOISE_TABLE_LEN = 1 << 15
NOISE_SEED = 20261123
N_FEATURES = 7          # contract version 1: pitch, velocity, gate, four envelopes
N_FEATURES_V2 = 9       # version 2: + dynamics, brightness
F_DYNAMICS = 7
F_BRIGHTNESS = 8
DEFAULT_BRIGHTNESS = 64.0 / 127.0
TAU_FAST = 0.05
TAU_SLOW = 0.5
#: feature 0 is ``(midi pitch - PITCH_CENTER) / PITCH_SPAN``
PITCH_CENTER = 60.0
PITCH_SPAN = 24.0
#: equal temperament: midi pitch ``A4_MIDI`` sounds at ``A4_HZ``
A4_HZ = 440.0
A4_MIDI = 69.0
#: harmonics fade out linearly over ``NYQUIST_FADE`` of Nyquist, reaching 0 at ``NYQUIST_MARGIN``
#: of it (so between 0.90 and 0.95 of Nyquist): :func:`nyquist_mask`
NYQUIST_MARGIN = 0.95
NYQUIST_FADE = 0.05


def midi_to_hz(pitch: np.ndarray | float) -> np.ndarray | float:
    """Midi pitch (fractional: bend included) -> Hz, as float64 NumPy."""
    return A4_HZ * 2.0 ** ((np.asarray(pitch, dtype=np.float64) - A4_MIDI) / 12.0)


@subkernel
def midi_to_hz_scalar(pitch: float) -> float:
    """:func:`midi_to_hz` of one float, callable inside a kernel (the same formula; NumPy's and
    libm's ``pow`` may differ in the last bit)."""
    return A4_HZ * 2.0 ** ((pitch - A4_MIDI) / 12.0)


def hz_to_midi(f0: np.ndarray | float) -> np.ndarray | float:
    return A4_MIDI + 12.0 * np.log2(np.asarray(f0, dtype=np.float64) / A4_HZ)


def pitch_feature_to_midi(feature: np.ndarray | float) -> np.ndarray | float:
    """Feature 0 -> midi pitch (works on floats, NumPy and torch alike)."""
    return feature * PITCH_SPAN + PITCH_CENTER


def log_hz_of_pitch_feature() -> tuple[float, float]:
    """``(a, b)`` with ``ln(f0 / Hz) = a * feature0 + b``: the fused form of
    ``midi_to_hz(pitch_feature_to_midi(x))`` that the model heads compute."""
    ln2 = math.log(2.0)
    return PITCH_SPAN / 12.0 * ln2, math.log(A4_HZ) + (PITCH_CENTER - A4_MIDI) / 12.0 * ln2


def nyquist_fade_hz(sample_rate: float = SAMPLE_RATE) -> float:
    """The width in Hz over which harmonics fade out below ``NYQUIST_MARGIN`` of Nyquist."""
    return NYQUIST_FADE * (sample_rate / 2.0)


def band_edges(sample_rate: int = SAMPLE_RATE, n_bands: int = N_NOISE_BANDS) -> np.ndarray:
    """Noise band edges in Hz, ``[n_bands + 1]``: the first band starts at 0, then log-spaced."""
    edges = np.geomspace(60.0, sample_rate / 2.0, n_bands + 1)
    edges[0] = 0.0
    return edges


def noise_tables(sample_rate: int = SAMPLE_RATE, n_bands: int = N_NOISE_BANDS,
                 length: int = NOISE_TABLE_LEN, seed: int = NOISE_SEED) -> np.ndarray:
    """Band-limited noise loops, ``[n_bands, length]`` float32, each of unit RMS.

    Deterministic (fixed seed): the same tables are built at training time and at play time, so
    they are never stored in a model file. Each loop is periodic, so reading it modulo ``length``
    has no seam.

    Building them takes 20-30 ms (20 inverse FFTs of 32768 points), a tenth of a render's
    start-up: the result is kept in the user's cache folder (``$XDG_CACHE_HOME/rtsynth`` or
    ``~/.cache/rtsynth``), keyed by the arguments and NumPy's version, and read back in a
    millisecond. A cache that cannot be read or written is ignored.
    """
    import os
    from pathlib import Path

    key = f"noise-{sample_rate}-{n_bands}-{length}-{seed}-np{np.__version__}.npy"
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = Path(root) / "rtsynth" / key
    try:
        t = np.load(path, allow_pickle=False)
        # each loop of unit RMS (a NaN or inf anywhere fails it too): one pass, no temporaries
        # (the square and isfinite arrays took 3-8 ms of play's start-up)
        if (t.shape == (n_bands, length) and t.dtype == np.float32
                and np.allclose(np.sqrt(np.einsum("ij,ij->i", t, t, dtype=np.float64)
                                        / length), 1.0, atol=1e-4)):
            return t
    except (OSError, ValueError):
        pass
    out = _build_noise_tables(sample_rate, n_bands, length, seed)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{key}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.save(f, out, allow_pickle=False)
        os.replace(tmp, path)
    except OSError:
        pass
    return out


def _build_noise_tables(sample_rate: int, n_bands: int, length: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    spec = np.fft.rfft(rng.standard_normal(length))
    freqs = np.fft.rfftfreq(length, 1.0 / sample_rate)
    edges = band_edges(sample_rate, n_bands)
    out = np.empty((n_bands, length), dtype=np.float32)
    for b in range(n_bands):
        mask = (freqs >= edges[b]) & (freqs < edges[b + 1])
        band = np.fft.irfft(spec * mask, n=length)
        out[b] = band / max(np.sqrt(np.mean(band ** 2)), 1e-12)
    return out


def nyquist_mask(f0: np.ndarray, n_harmonics: int = N_HARMONICS,
                 sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """``[..., K]`` weights in [0, 1]: 1 well below Nyquist, 0 at or above 0.95 of it."""
    nyq = sample_rate / 2.0
    h = np.arange(1, n_harmonics + 1, dtype=np.float64)
    fh = np.asarray(f0, dtype=np.float64)[..., None] * h
    return np.clip((NYQUIST_MARGIN * nyq - fh) / nyquist_fade_hz(sample_rate), 0.0, 1.0)


def harmonic_amplitudes(amp: np.ndarray, dist: np.ndarray, f0: np.ndarray,
                        sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Overall amplitude ``[...]`` and harmonic distribution ``[..., K]`` -> amplitudes ``[..., K]``.

    The distribution is masked above Nyquist and renormalised, so a high note keeps its loudness.
    """
    mask = nyquist_mask(f0, dist.shape[-1], sample_rate)
    d = dist * mask
    d = d / np.maximum(d.sum(-1, keepdims=True), 1e-7)
    return (np.asarray(amp)[..., None] * d).astype(np.float32)


def note_features(n_frames: int, pitch: np.ndarray, velocity: float, release_sample: int | None,
                  hop: int = HOP, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Features ``[n_frames, N_FEATURES]`` of one voice, for training and offline tests: the
    reference definition (:func:`frame_features` computes one row of it inside a kernel).

    pitch: ``[n_frames]`` midi pitch (bend included) at each frame start, or a scalar.
    release_sample: voice sample at which the key (and pedal) is released; None if never.
    """
    k = np.arange(n_frames, dtype=np.float64)
    start = k * hop
    f = np.zeros((n_frames, N_FEATURES), dtype=np.float32)
    f[:, 0] = ((np.broadcast_to(np.asarray(pitch, dtype=np.float64), (n_frames,)) - PITCH_CENTER)
               / PITCH_SPAN)
    f[:, 1] = velocity / 127.0
    t_on = start / sample_rate
    f[:, 3] = np.exp(-t_on / TAU_FAST)
    f[:, 4] = np.exp(-t_on / TAU_SLOW)
    if release_sample is None:
        f[:, 2] = 1.0
    else:
        released = release_sample <= start
        f[:, 2] = np.where(released, 0.0, 1.0)
        t_off = np.maximum(start - release_sample, 0.0) / sample_rate
        f[:, 5] = np.where(released, np.exp(-t_off / TAU_FAST), 0.0)
        f[:, 6] = np.where(released, np.exp(-t_off / TAU_SLOW), 0.0)
    return f


@subkernel
def frame_features(out, pitch, velocity, frame_start, release_sample, sample_rate,
                   release_speed=1.0):
    """Columns 0..6 of one frame's features (as :func:`note_features`), written into ``out`` (a
    float32 row of at least ``N_FEATURES``), callable inside a kernel.

    pitch: midi pitch at the frame start (bend included); velocity: 0..127; frame_start: the
    frame's first sample on the voice clock; release_sample: the voice sample of the release
    (any value above ``frame_start`` while the key or pedal is held); release_speed: how fast
    the release envelopes run (1 in training; the engine's note-off velocity scales it).
    """
    out[0] = (pitch - PITCH_CENTER) / PITCH_SPAN
    out[1] = velocity / 127.0
    t_on = frame_start / sample_rate
    out[3] = math.exp(-t_on / TAU_FAST)
    out[4] = math.exp(-t_on / TAU_SLOW)
    if release_sample <= frame_start:
        t_off = (frame_start - release_sample) / sample_rate * release_speed
        out[2] = 0.0
        out[5] = math.exp(-t_off / TAU_FAST)
        out[6] = math.exp(-t_off / TAU_SLOW)
    else:
        out[2] = 1.0
        out[5] = 0.0
        out[6] = 0.0


def first_ramp(hop: int = HOP) -> int:
    """The first frame's ramp length ``R`` in samples (see "Synthesis" above)."""
    return min(FIRST_RAMP, hop)


def ramp_alphas(hop: int = HOP) -> np.ndarray:
    """``[2, hop]`` float64: ``alpha`` over the first frame (row 0) and over any later frame."""
    j = np.arange(hop, dtype=np.float64) + 1.0
    return np.stack([np.minimum(j / first_ramp(hop), 1.0), j / hop])


def upsample_controls(frames: np.ndarray, hop: int = HOP) -> np.ndarray:
    """Frame controls ``[T, C]`` (frame 0 the note's first) -> per-sample ``[T*hop, C]`` by the
    causal ramp of this module."""
    prev = np.concatenate([np.zeros_like(frames[:1]), frames[:-1]], axis=0)
    a = ramp_alphas(hop)
    alpha = np.repeat(a[1:], frames.shape[0], axis=0)
    alpha[:1] = a[0]
    out = prev[:, None, :] + alpha[:, :, None] * (frames - prev)[:, None, :]
    return out.reshape(-1, frames.shape[-1])


def synthesize_reference(harm: np.ndarray, noise: np.ndarray, f0: np.ndarray, offset: int = 0,
                         hop: int = HOP, sample_rate: int = SAMPLE_RATE,
                         tables: np.ndarray | None = None) -> np.ndarray:
    """Slow, plain float64 reference of the synthesis above, for tests.

    harm ``[T, K]``, noise ``[T, B]``, f0 ``[T*hop]`` Hz per sample -> ``[T*hop]`` float64.
    """
    if tables is None:
        tables = noise_tables(sample_rate, noise.shape[-1])
    A = upsample_controls(harm.astype(np.float64), hop)
    G = upsample_controls(noise.astype(np.float64), hop)
    n = A.shape[0]
    theta = np.concatenate([[0.0], np.cumsum(2 * np.pi * f0[: n - 1] / sample_rate)])
    h = np.arange(1, harm.shape[-1] + 1)
    y = np.sum(A * np.sin(theta[:, None] * h[None, :]), axis=1)
    idx = (offset + np.arange(n)) % tables.shape[1]
    y += np.sum(G * tables[:, idx].T, axis=1)
    return y
