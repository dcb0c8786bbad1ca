"""The built-in ``basic`` instrument: analytic harmonics + noise, no neural network."""

from __future__ import annotations

import math

import numpy as np

from .. import spec
from ..jit import kernel
from ..spec import midi_to_hz_scalar
from .base import StreamingInstrument


class BasicInstrument(StreamingInstrument):
    """A small analytic harmonic + noise instrument: the baseline and a fallback.

    Envelope: 50 ms attack, slow decay to 70 %, ~50 ms release; spectrum ``1/h^p`` that gets
    brighter with velocity, plus a little breath noise. Stateless apart from its features, so
    ``reset`` has nothing to do.
    """

    name = "basic"
    description = "built-in harmonic + noise DSP instrument (no neural network)"
    #: each frame depends on its own features only: any number of a voice's frames per call
    multi_frame = True
    #: its release is its features' envelopes: the engine runs them faster for a fast key-up
    #: (note-off velocity, rtsynth.engine.channels.Channels._release_speed)
    release_velocity = True

    def __init__(self, sample_rate: int = spec.SAMPLE_RATE):
        self.sample_rate = sample_rate
        self.n_slots = 0

    def allocate(self, n_slots: int) -> None:
        self.n_slots = n_slots

    def reset(self, slots: np.ndarray) -> None:
        pass

    def step(self, features, slots, out_harm, out_noise) -> None:
        _basic_step(features, out_harm, out_noise, float(self.sample_rate), spec.NYQUIST_MARGIN,
                    spec.nyquist_fade_hz(self.sample_rate))


@kernel
def _basic_step(f, out_harm, out_noise, sample_rate, margin, fade_hz):
    n, K = out_harm.shape
    B = out_noise.shape[1]
    nyq = sample_rate / 2.0
    for i in range(n):
        vel = f[i, 1]
        gate = f[i, 2]
        env = (1.0 - 0.9 * f[i, 3]) * (0.7 + 0.3 * f[i, 4]) * (gate + (1.0 - gate) * f[i, 5])
        amp = (0.02 + 0.16 * vel * vel) * env
        p = 2.2 - 1.2 * vel
        f0 = midi_to_hz_scalar(f[i, 0] * spec.PITCH_SPAN + spec.PITCH_CENTER)
        total = 0.0
        for k in range(K):
            mask = (margin * nyq - f0 * (k + 1)) / fade_hz
            mask = min(max(mask, 0.0), 1.0)
            d = math.exp(-p * math.log(k + 1.0)) * mask
            out_harm[i, k] = d
            total += d
        scale = amp / max(total, 1e-7)
        for k in range(K):
            out_harm[i, k] *= scale
        for b in range(B):
            out_noise[i, b] = 0.04 * amp * 0.3 / (1.0 + b)
