"""Finding instruments by name: the registry behind ``-i NAME``.

The interface every instrument implements is :class:`rtsynth.instruments.base.StreamingInstrument`;
the built-in DSP instrument is :mod:`rtsynth.instruments.basic`; neural ones are
:class:`rtsynth.nn.neural.NeuralInstrument`.

``load_instrument(name)`` accepts ``basic``, the name of a folder under ``models/`` (the shipped
instruments), or a path to a model folder (``model.safetensors`` + ``config.json``).
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from .base import StreamingInstrument
from .basic import BasicInstrument

#: the instrument `rtsynth play` and `rtsynth render` use when none is named: flute-life, the
#: GM flute (rtsynth.host.gm.SHIPPED): contract v2 (dynamics from velocity/pressure/breath/CC11
#: and CC74 brightness reach the network) with the source's own vibrato, at issue 12's floor on
#: held-out melodies (0.632 <= 0.65; flute-lite, v1: 0.652), the same 48-channel CNN as
#: flute-lite: the -lite step cost (plus the life's moving pitch; models/README.md)
DEFAULT_INSTRUMENT = "flute-life"


class InstrumentError(Exception):
    """An instrument that cannot be found or loaded (one clear line for the user)."""


def models_dir() -> Path:
    """The shipped models: ``$RTSYNTH_MODELS`` or ``models/`` beside the package."""
    env = os.environ.get("RTSYNTH_MODELS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "models"


def user_models_dir() -> Path:
    """The user's models: ``$XDG_DATA_HOME/rtsynth/models`` (``~/.local/share/rtsynth/models``).
    A model folder copied there is found by its name, like a shipped one; a user model of the
    same name as a shipped one is the one played (the XDG rule: the user's data comes first)."""
    root = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                          "share")
    return Path(root) / "rtsynth" / "models"


def _model_folders(d: Path) -> dict[str, Path]:
    try:
        return {p.name: p for p in sorted(d.iterdir()) if (p / "config.json").is_file()}
    except OSError:             # missing, or not a readable folder
        return {}


def instrument_folders() -> dict[str, Path]:
    """Every model found by name -> its folder: the user's, then the shipped ones not shadowed."""
    return {**_model_folders(models_dir()), **_model_folders(user_models_dir())}


def available_instruments() -> list[str]:
    """The names ``-i`` takes: ``basic``, then every model folder found, sorted."""
    return ["basic"] + sorted(instrument_folders())


def shipped_instruments() -> list[str]:
    """``basic`` and the shipped models (not the user's): what the bench measures."""
    return ["basic"] + sorted(_model_folders(models_dir()))


def model_folder(name: str | os.PathLike) -> Path | None:
    """The model folder ``-i name`` plays (a path to one, or a name), or None (``basic``, or
    nothing of that name)."""
    path = Path(name)
    if path.is_dir() and (path / "config.json").exists():
        return path
    return instrument_folders().get(str(name))


def default_instrument() -> str:
    return DEFAULT_INSTRUMENT if DEFAULT_INSTRUMENT in available_instruments() else "basic"


def describe_instruments() -> list[tuple[str, str]]:
    """``[(name, one line)]`` for ``-i help``: what each is, its size, where a user model lives.
    Reads the configs only (no weights)."""
    from ..nn.io import ModelLoadError, expected_shapes, read_config

    default = default_instrument()
    user = user_models_dir()
    rows = [("basic", BasicInstrument.description)]
    for name, folder in sorted(instrument_folders().items()):
        try:
            cfg = read_config(folder)
            arch = cfg["architecture"]
            n_params = sum(math.prod(s) for s in expected_shapes(arch).values())
            line = (f"{cfg.get('description') or 'neural ' + arch['backbone'] + ' instrument'} "
                    f"({n_params / 1e3:.1f} k parameters)")
        except (ModelLoadError, OSError, KeyError, TypeError, ValueError) as e:
            line = f"cannot be read: {e}"
        if folder.parent == user:
            line += f" [user: {folder}]"
        rows.append((name, line))
    return [(n, d + (" [default]" if n == default else "")) for n, d in rows]


def help_text() -> str:
    """What ``-i help`` prints."""
    rows = describe_instruments()
    w = max(len(n) for n, _ in rows)
    return "\n".join(["Instruments (-i NAME, or -i PATH to a model folder):"]
                     + [f"  {n:<{w}}  {d}" for n, d in rows]
                     + [f"User models are looked for in {user_models_dir()}."])


class _InstrumentOption(argparse.Action):
    """``-i``: ``help`` prints :func:`help_text` and exits 0 at once (whatever else is missing
    from the command line, like ``--version``)."""

    def __call__(self, parser, namespace, values, option_string=None):
        if values == "help":
            print(help_text())
            parser.exit(0)
        setattr(namespace, self.dest, values)


def add_option(parser: argparse.ArgumentParser) -> None:
    """``-i/--instrument`` for ``play`` and ``render``."""
    parser.add_argument("-i", "--instrument", default=None, action=_InstrumentOption,
                        metavar="NAME", help="instrument: 'basic', a model's name (shipped, or a "
                        "folder in ~/.local/share/rtsynth/models), or a model folder path; "
                        "'-i help' lists them")


def _unknown(name: str) -> InstrumentError:
    names = available_instruments()
    import difflib                   # only for a name that is not there (play's start-up)
    near = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    if not near:            # 'flute2' -> the flutes: a name that starts the same
        near = [n for n in names if n.split("-")[0] == name.split("-")[0]][:3]
    hint = f"did you mean {' or '.join(repr(n) for n in near)}? " if near else ""
    return InstrumentError(f"unknown instrument {name!r}; {hint}"
                           f"'-i help' lists them with a description each")


def load_instrument(name: str | os.PathLike | None = None) -> StreamingInstrument:
    """Return a fresh instrument by name or path; raises :class:`InstrumentError`."""
    name = default_instrument() if name is None else str(name)
    if name == "basic":
        return BasicInstrument()
    path = model_folder(name)
    if path is None:
        if os.sep in name or Path(name).exists():
            raise InstrumentError(f"no model at {name} (a model folder holds config.json and "
                                  f"model.safetensors)")
        else:
            raise _unknown(name)
    from ..nn.io import load_neural_instrument
    try:
        return load_neural_instrument(path)
    except InstrumentError:
        raise
    except Exception as e:  # ModelLoadError and anything a hostile file provokes
        raise InstrumentError(f"cannot load model {path}: {e}") from e


__all__ = ["DEFAULT_INSTRUMENT", "InstrumentError", "StreamingInstrument", "BasicInstrument",
           "models_dir", "user_models_dir", "instrument_folders", "available_instruments",
           "shipped_instruments", "model_folder", "default_instrument", "describe_instruments",
           "help_text", "load_instrument", "add_option"]
