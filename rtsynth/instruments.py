"""Finding instruments by name, and the built-in ``basic`` DSP instrument.

``load_instrument(name)`` accepts ``basic``, the name of a folder under ``models/`` (the shipped
instruments), or a path to a model folder (``model.safetensors`` + ``config.json``).
"""

from __future__ import annotations

import os
from pathlib import Path

import math

import numpy as np

from . import spec
from .instrument import StreamingInstrument
from .jit import kernel

#: the instrument `rtsynth play` and `rtsynth render` use when none is named: the 48-channel CNN
#: flute, the lowest held-out spectral distance of the flutes (0.998; `flute`, 96 channels:
#: 1.003) at a third of the model arithmetic: the cheapest real-time step, and offline renders
#: faster than FluidSynth's (docs/BENCH.md)
DEFAULT_INSTRUMENT = "flute-lite"


class InstrumentError(Exception):
    """An instrument that cannot be found or loaded (one clear line for the user)."""


def models_dir() -> Path:
    """The shipped models: ``$RTSYNTH_MODELS`` or ``models/`` beside the package."""
    env = os.environ.get("RTSYNTH_MODELS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "models"


def available_instruments() -> list[str]:
    names = ["basic"]
    d = models_dir()
    if d.is_dir():
        names += sorted(p.name for p in d.iterdir() if (p / "config.json").is_file())
    return names


def default_instrument() -> str:
    return DEFAULT_INSTRUMENT if DEFAULT_INSTRUMENT in available_instruments() else "basic"


def load_instrument(name: str | os.PathLike | None = None) -> StreamingInstrument:
    """Return a fresh instrument by name or path; raises :class:`InstrumentError`."""
    name = default_instrument() if name is None else str(name)
    if name == "basic":
        return BasicInstrument()
    path = Path(name)
    if not (path.is_dir() and (path / "config.json").exists()):
        cand = models_dir() / name
        if cand.is_dir():
            path = cand
        elif os.sep in name or path.exists():
            raise InstrumentError(f"no model at {name} (a model folder holds config.json and "
                                  f"model.safetensors)")
        else:
            raise InstrumentError(f"unknown instrument {name!r}; choose one of: "
                                  + ", ".join(available_instruments()))
    try:
        from .nn.io import load_neural_instrument
    except ImportError as e:  # pragma: no cover - the nn package is part of rtsynth
        raise InstrumentError(f"neural instruments are unavailable: {e}") from e
    try:
        return load_neural_instrument(path)
    except InstrumentError:
        raise
    except Exception as e:  # ModelLoadError and anything a hostile file provokes
        raise InstrumentError(f"cannot load model {path}: {e}") from e


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

    def __init__(self, sample_rate: int = spec.SAMPLE_RATE):
        self.sample_rate = sample_rate
        self.n_slots = 0

    def allocate(self, n_slots: int) -> None:
        self.n_slots = n_slots

    def reset(self, slots: np.ndarray) -> None:
        pass

    def step(self, features, slots, out_harm, out_noise) -> None:
        _basic_step(features, out_harm, out_noise, float(self.sample_rate), spec.NYQUIST_MARGIN)


@kernel
def _basic_step(f, out_harm, out_noise, sample_rate, margin):
    n, K = out_harm.shape
    B = out_noise.shape[1]
    nyq = sample_rate / 2.0
    for i in range(n):
        vel = f[i, 1]
        gate = f[i, 2]
        env = (1.0 - 0.9 * f[i, 3]) * (0.7 + 0.3 * f[i, 4]) * (gate + (1.0 - gate) * f[i, 5])
        amp = (0.02 + 0.16 * vel * vel) * env
        p = 2.2 - 1.2 * vel
        f0 = 440.0 * 2.0 ** ((f[i, 0] * 24.0 + 60.0 - 69.0) / 12.0)
        total = 0.0
        for k in range(K):
            mask = (margin * nyq - f0 * (k + 1)) / (0.05 * nyq)
            mask = min(max(mask, 0.0), 1.0)
            d = math.exp(-p * math.log(k + 1.0)) * mask
            out_harm[i, k] = d
            total += d
        scale = amp / max(total, 1e-7)
        for k in range(K):
            out_harm[i, k] *= scale
        for b in range(B):
            out_noise[i, b] = 0.04 * amp * 0.3 / (1.0 + b)
