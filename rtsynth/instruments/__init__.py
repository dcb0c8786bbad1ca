"""Finding instruments by name: the registry behind ``-i NAME``.

The interface every instrument implements is :class:`rtsynth.instruments.base.StreamingInstrument`;
the built-in DSP instrument is :mod:`rtsynth.instruments.basic`; neural ones are
:class:`rtsynth.nn.neural.NeuralInstrument`.

``load_instrument(name)`` accepts ``basic``, the name of a folder under ``models/`` (the shipped
instruments), or a path to a model folder (``model.safetensors`` + ``config.json``).
"""

from __future__ import annotations

import os
from pathlib import Path

from .base import StreamingInstrument
from .basic import BasicInstrument

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
    return Path(__file__).resolve().parents[2] / "models"


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
    from ..nn.io import load_neural_instrument
    try:
        return load_neural_instrument(path)
    except InstrumentError:
        raise
    except Exception as e:  # ModelLoadError and anything a hostile file provokes
        raise InstrumentError(f"cannot load model {path}: {e}") from e


__all__ = ["DEFAULT_INSTRUMENT", "InstrumentError", "StreamingInstrument", "BasicInstrument",
           "models_dir", "available_instruments", "default_instrument", "load_instrument"]
