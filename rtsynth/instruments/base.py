"""The streaming-instrument interface that the engine drives.

An instrument turns per-voice control features (see :mod:`rtsynth.spec`) into per-voice synthesis
controls (harmonic amplitudes and noise band gains), one control frame at a time, for any subset
of its voice slots in one batched call. The engine owns the voices, the audio-rate synthesis and
the effects; the instrument owns only its per-slot state (hidden state, convolution caches, KV
caches, envelope state), kept batch-first over slots.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from .. import spec


class StreamingInstrument(ABC):
    """A voice-slot-batched, streaming control generator.

    Real-time contract for :meth:`step`: it is called from the generator thread once per block
    for the slots whose next control frame starts inside that block; it must not block on I/O or
    locks and should not allocate large buffers (preallocate in :meth:`allocate`).
    """

    name: str = "instrument"
    sample_rate: int = spec.SAMPLE_RATE
    hop: int = spec.HOP
    n_harmonics: int = spec.N_HARMONICS
    n_noise_bands: int = spec.N_NOISE_BANDS
    n_features: int = spec.N_FEATURES
    #: a short free-text description for ``rtsynth devices``/``info`` and the play banner
    description: str = ""
    #: True when :meth:`step` accepts several consecutive frames of a slot in one call: rows in
    #: frame order, a slot at most once per frame (the engine then batches the rounds of a
    #: block, which an offline render with large blocks gains from)
    multi_frame: bool = False

    @abstractmethod
    def allocate(self, n_slots: int) -> None:
        """Preallocate state for ``n_slots`` voice slots (all reset)."""

    @abstractmethod
    def reset(self, slots: np.ndarray) -> None:
        """Reset the state of the given slots (int64 ``[n]``) to that of a fresh voice."""

    @abstractmethod
    def step(self, features: np.ndarray, slots: np.ndarray,
             out_harm: np.ndarray, out_noise: np.ndarray) -> None:
        """Advance the given slots by one control frame.

        features  ``[n, n_features]`` float32 (see :mod:`rtsynth.spec`)
        slots     ``[n]`` int64, distinct slot indices (with :attr:`multi_frame`: several frames of
                  a slot may follow each other, in frame order)
        out_harm  ``[n, n_harmonics]`` float32, written: linear harmonic amplitudes, band-limited
        out_noise ``[n, n_noise_bands]`` float32, written: noise band RMS gains
        """

    def snapshot(self) -> dict[str, Any]:
        """A copy of the whole per-slot state (to restore later with :meth:`restore`)."""
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        """Restore a state from :meth:`snapshot`."""

    def warmup(self) -> None:
        """Run every code path once (JIT compilation, first-call allocations) before playing."""
        n = 4
        if getattr(self, "n_slots", 0) < n:     # allocated already (an engine's): step in it
            self.allocate(max(n, getattr(self, "n_slots", n)))  # (a neural one: ~6 ms)
        slots = np.arange(n, dtype=np.int64)
        f = np.zeros((n, self.n_features), dtype=np.float32)
        f[:, 1] = 0.5
        f[:, 2] = 1.0
        h = np.zeros((n, self.n_harmonics), dtype=np.float32)
        z = np.zeros((n, self.n_noise_bands), dtype=np.float32)
        for _ in range(3):
            self.step(f, slots, h, z)
        self.reset(slots)

    # Timbre control, for instruments with a timbre latent (VAE). Others ignore it.
    def set_timbre(self, position: float) -> None:
        """Move along the instrument's timbre path, ``position`` in [0, 1] (mod wheel / a CC)."""

    def sample_timbre(self, seed: int | None = None) -> None:
        """Draw a new timbre from the latent prior (no-op for instruments without one)."""

    @property
    def has_timbre(self) -> bool:
        return False
