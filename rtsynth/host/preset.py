"""Presets: a TOML file (stdlib ``tomllib``) that says what the command line can say.

```toml
instrument = "flute-lite"        # -i: one instrument on every channel
gain = 0.4                       # -g
reverb = 0.2                     # --reverb
polyphony = 24                   # --polyphony
timbre_cc = 1                    # --timbre-cc

[channels]                       # --channel N=SPEC (1-based)
1 = "violin"
2 = "lv2:http://synthv1.sourceforge.net/lv2"

[[fx]]                           # --fx, in order
uri = "http://plugin.org.uk/swh-plugins/amp"
gain = -6                        # control symbol = value

[controllers]                    # controller mappings (expression), passed to the engine
```

Command-line options override the preset's. ``--preset NAME`` (no ``.toml``, no folder) is
looked up in ``$XDG_CONFIG_HOME/rtsynth/`` (``~/.config/rtsynth/``).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

KNOWN = {"instrument", "gain", "reverb", "polyphony", "timbre_cc", "channels", "fx",
         "controllers", "name", "description"}


class PresetError(ValueError):
    """A preset that cannot be found or read (one clear line)."""


@dataclass
class Preset:
    path: Path
    instrument: str | None = None
    gain: float | None = None
    reverb: float | None = None
    polyphony: int | None = None
    timbre_cc: int | None = None
    channels: dict[int, str] = field(default_factory=dict)     # 0-based channel -> spec
    fx: list[tuple[str, dict]] = field(default_factory=list)
    controllers: dict | None = None


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "rtsynth"


def find_preset(name: str) -> Path:
    p = Path(name).expanduser()
    if p.is_file():
        return p
    if os.sep not in name and not name.endswith(".toml"):
        for cand in (config_dir() / f"{name}.toml", config_dir() / name):
            if cand.is_file():
                return cand
    elif os.sep not in name:
        cand = config_dir() / name
        if cand.is_file():
            return cand
    found = sorted(q.stem for q in config_dir().glob("*.toml")) if config_dir().is_dir() else []
    raise PresetError(f"no preset {name!r} (a TOML file, or a name in {config_dir()}"
                      + (f": {', '.join(found)})" if found else ", which holds none)"))


def load_preset(name: str) -> Preset:
    path = find_preset(name)
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise PresetError(f"preset {path} is not valid TOML: {e}") from None
    except OSError as e:
        raise PresetError(f"cannot read preset {path}: {e.strerror or e}") from None
    unknown = sorted(set(data) - KNOWN)
    if unknown:
        raise PresetError(f"preset {path}: unknown key {unknown[0]!r} (known: "
                          + ", ".join(sorted(KNOWN)) + ")")
    pr = Preset(path=path)

    def num(key, typ):
        v = data.get(key)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or \
                (typ is int and not isinstance(v, int)):
            raise PresetError(f"preset {path}: {key} must be a{'n integer' if typ is int else ' number'}, "
                              f"not {v!r}")
        return typ(v)

    pr.gain = num("gain", float)
    pr.reverb = num("reverb", float)
    pr.polyphony = num("polyphony", int)
    pr.timbre_cc = num("timbre_cc", int)
    inst = data.get("instrument")
    if inst is not None and not isinstance(inst, str):
        raise PresetError(f"preset {path}: instrument must be a name, not {inst!r}")
    pr.instrument = inst
    chans = data.get("channels", {})
    if not isinstance(chans, dict):
        raise PresetError(f"preset {path}: [channels] must be a table of N = \"SPEC\"")
    for k, v in chans.items():
        pr.channels[parse_channel_number(k, f"preset {path}: channel")] = _spec(v, path, k)
    fx = data.get("fx", [])
    if isinstance(fx, dict):
        fx = [fx]
    if not isinstance(fx, list):
        raise PresetError(f"preset {path}: fx must be [[fx]] tables with uri = \"...\"")
    for item in fx:
        if isinstance(item, str):
            from ..dsp.effects import parse_fx
            pr.fx.append(parse_fx(item))
            continue
        if not isinstance(item, dict) or not isinstance(item.get("uri"), str):
            raise PresetError(f"preset {path}: each [[fx]] needs uri = \"...\"")
        params = dict(item.get("params", {}))
        params.update({k: v for k, v in item.items() if k not in ("uri", "params")})
        pr.fx.append((item["uri"], params))
    ctl = data.get("controllers")
    if ctl is not None and not isinstance(ctl, dict):
        raise PresetError(f"preset {path}: [controllers] must be a table")
    pr.controllers = ctl
    return pr


def _spec(v, path, k) -> str:
    if not isinstance(v, str) or not v:
        raise PresetError(f"preset {path}: channel {k} must be an instrument name, a path, "
                          f"'basic' or 'lv2:URI', not {v!r}")
    return v


def parse_channel_number(k, what: str = "--channel") -> int:
    """``'1'..'16'`` -> 0-based channel."""
    try:
        n = int(str(k).strip())
    except ValueError:
        n = 0
    if not 1 <= n <= 16:
        raise PresetError(f"{what} {k!r}: MIDI channels are 1 to 16")
    return n - 1
