"""What the metrics (:mod:`.metrics`) and the melody measures (:mod:`.melody`) share: the
STFT magnitude, the engine render of an event list and of a held-out note, and a model's config, programs and timbre.
Both import it; neither imports the other back (``tests/test_imports.py``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..data import Example


def _stft_mag(x: np.ndarray, n_fft: int) -> np.ndarray:
    hop = n_fft // 4
    n = max(len(x), n_fft)
    n_frames = 1 + -(-(n - n_fft) // hop)
    xp = np.zeros((n_frames - 1) * hop + n_fft)
    xp[: len(x)] = x
    idx = np.arange(n_frames)[:, None] * hop + np.arange(n_fft)[None, :]
    win = np.hanning(n_fft + 1)[:-1]
    return np.abs(np.fft.rfft(xp[idx] * win, axis=1))


#: the engine's ``life`` (a model's own pitch movement, rtsynth.nn.life) in evaluations:
#: ``rtsynth eval --life``
LIFE_SCALE = 1.0


def _engine(inst, block: int = 128):
    from rtsynth.engine import Engine
    eng = Engine(inst, block=block, n_slots=8, gain=1.0, reverb=0.0, master=False,
                 life=LIFE_SCALE)
    try:
        chan = float(eng._target_gain()[0])  # CC7 100 by default -> (100/127)^2
    except Exception:  # pragma: no cover
        chan = (100 / 127) ** 2
    return eng, chan


def render_events_mono(inst, events: list[tuple[int, tuple]], n: int, block: int = 128
                       ) -> np.ndarray:
    """Events ``[(sample, message)]`` through the engine -> mono ``[n]`` at unit voice gain.

    Uses :func:`rtsynth.render.render_events` (the offline path of ``rtsynth render``) when it
    exists, else drives :class:`rtsynth.engine.Engine` block by block the same way.
    """
    eng, chan = _engine(inst, block)
    try:
        from rtsynth.render import render_events
    except ImportError:
        render_events = None
    if render_events is not None:
        y = render_events(eng, [(t, bytes(m)) for t, m in events], tail=n / eng.sr + 0.1)
        mono = y[:, :2].mean(1).astype(np.float64)
    else:
        for when, msg in events:
            eng.push(when, msg)
        mono = np.zeros(n + block)
        pos = 0
        while pos < n:
            mono[pos: pos + block] = eng.render(block)[:, :2].mean(1)
            pos += block
    out = np.zeros(n)
    m = min(n, len(mono))
    out[:m] = mono[:m]
    return out / chan


def model_config(model: str) -> dict:
    if model == "basic":
        return {}
    from rtsynth.instruments import model_folder
    p = model_folder(model) or Path(model)
    if not (p / "config.json").is_file():
        raise ValueError(f"no model {model!r}: not a shipped or user model name, nor a folder "
                         f"with a config.json (`rtsynth -i help` lists them)")
    return json.loads((p / "config.json").read_text())


def model_programs(model: str) -> list[int] | None:
    """GM programs a model was trained on (config ``program`` int or list, or ``programs``);
    None: measure on every dataset."""
    cfg = model_config(model)
    for key in ("programs", "program"):
        v = cfg.get(key)
        if v is None and isinstance(cfg.get("source"), dict):
            v = cfg["source"].get(key)
        if v is not None:
            progs = [int(x) for x in (v if isinstance(v, list) else [v])]
            return [p for p in progs if p >= 0] or None
    return None


def select_timbre(inst, cfg: dict, dataset_name: str) -> float | None:
    """For a multi-instrument (VAE) model: put the timbre at the dataset's instrument on the
    model's timbre path (``config.timbre.path``), i.e. ``set_timbre(i / (m - 1))``."""
    path = (cfg.get("timbre") or {}).get("path") or []
    if not getattr(inst, "has_timbre", False) or dataset_name not in path:
        return None
    m = len(path)
    pos = path.index(dataset_name) / (m - 1) if m > 1 else 0.0
    inst.set_timbre(pos)
    return pos


def note_events(ex: Example, bend_range: int = 2) -> list[tuple[int, tuple]]:
    """The MIDI events of one held-out note (channel 0), in voice samples."""
    return bent_note_events(ex, ex.meta.get("bend", []) or [], bend_range)


def bent_note_events(ex: Example, bends, bend_range: int) -> list[tuple[int, tuple]]:
    """Note-on at sample 0 and note-off at the release of ``ex`` (channel 0), the RPN 0 bend
    range, and a pitch bend to ``semitones`` at each ``(frame, semitones)`` of ``bends`` where
    the 14-bit value changes; controllers before a note-on at the same sample."""
    ev = [(0, (0xB0, 101, 0)), (0, (0xB0, 100, 0)), (0, (0xB0, 6, bend_range)),
          (0, (0xB0, 38, 0)), (0, (0xB0, 101, 127)), (0, (0xB0, 100, 127))]
    hop = len(ex.audio) // max(ex.n_frames, 1)
    last = None
    for fr, semis in bends:
        v = int(np.clip(round(semis / bend_range * 8192), -8192, 8191)) + 8192
        if v != last:
            ev.append((int(fr) * hop, (0xE0, v & 0x7F, v >> 7)))
            last = v
    for fr, val in ex.meta.get("expression", []) or []:   # CC11 steps of a swell
        ev.append((int(fr) * hop, (0xB0, 11, int(val))))
    ev.append((0, (0x90, int(ex.pitch), int(ex.velocity))))
    ev.append((int(ex.release_sample), (0x80, int(ex.pitch), 0)))
    ev.sort(key=lambda e: (e[0], 0 if e[1][0] in (0xB0, 0xE0) else 1))
    return ev


def render_engine(inst, ex: Example, block: int = 128) -> np.ndarray:
    """The engine path (what ``rtsynth render`` runs), one voice at unit gain, mono."""
    return render_events_mono(inst, note_events(ex), len(ex.audio), block)
