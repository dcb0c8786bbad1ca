"""The life of the source measured on held-out notes (issue 12.4): vibrato rate and depth of
the model's notes against the source's, and how far its pitch curve is from the source's.

For each held-out plain note of 0.5 s or more (a dataset's test split, e.g. ``rtsynth dataset
soundfont --dynamics --test-only --float32``): the source's f0 and the model's (the note through
the engine, as ``rtsynth render`` plays it) tracked per frame by
:func:`rtsynth.dataset.life.track_f0`, each curve fitted by :func:`rtsynth.dataset.life.fit_note`
(rate, depth); ``curve_cents``: the RMS of model minus source over the frames both track
(frame 0 and the release left out), against ``static_cents``: the same for a note held at its
MIDI pitch (the source's own movement, what a model without life misses). The level's own
movement (:func:`level_breathing`): ``breath_db_*``, the RMS of the held level less its
envelope, and ``tremolo_db_*``, its amplitude at the source's vibrato rate, model and source.
The drift (:func:`rtsynth.dataset.life.slow_part`: each curve's 0.5 s moving average over the
frames both track): ``drift_cents_*``, its standard deviation (the slow wander, tuning left
out), and ``drift_error_cents``, the RMS of the model's slow part less the source's (tuning
included).
"""

from __future__ import annotations

import numpy as np

from .. import spec


def note_life(inst, ex) -> dict | None:
    from ..dataset import life as dl
    from .common import render_engine
    rel = int(ex.release_sample) // spec.HOP
    if ex.kind != "note" or ex.meta.get("bend") or rel < int(0.5 * spec.SAMPLE_RATE / spec.HOP):
        return None
    cs, ps = dl.track_f0(ex.audio, ex.pitch_frames)
    y = render_engine(inst, ex)
    cm, pm = dl.track_f0(y, ex.pitch_frames)
    oks = dl.trusted(ps, rel)
    okm = dl.trusted(pm, rel)
    both = oks & okm
    both[:2] = False
    fs = dl.fit_note(cs, oks)
    fm = dl.fit_note(cm, okm)
    if fs is None or fm is None or both.sum() < 10:
        return None
    bs, ts = level_breathing(ex.audio, rel, fs["rate"])
    bm, tm = level_breathing(y, rel, fs["rate"])
    # the drift: the curves' parts slower than ~2 Hz (0.5 s moving averages), frames both track
    fr = np.flatnonzero(both)
    ds = dl.slow_part(cs[fr])
    dm = dl.slow_part(cm[fr])
    return {"pitch": int(ex.pitch), "velocity": int(ex.velocity),
            "drift_cents_source": float(np.std(ds)), "drift_cents_model": float(np.std(dm)),
            "drift_error_cents": float(np.sqrt(np.mean((dm - ds) ** 2))),
            "breath_db_source": bs, "breath_db_model": bm,
            "tremolo_db_source": ts, "tremolo_db_model": tm,
            "rate_source": fs["rate"], "rate_model": fm["rate"],
            "depth_source": fs["depth"], "depth_model": fm["depth"],
            "curve_cents": float(np.sqrt(np.mean((cm[both] - cs[both]) ** 2))),
            "static_cents": float(np.sqrt(np.mean(cs[both] ** 2)))}


def level_breathing(audio: np.ndarray, release_frame: int, rate: float,
                    start_s: float = 0.3, window_s: float = 0.4) -> tuple[float, float]:
    """The level's own movement in a held note (issue 12.4's breathing): the A-weighted level
    per frame (:func:`rtsynth.data.loudness_db`) from ``start_s`` to 20 ms before the release,
    less its ``window_s`` moving average (the note's envelope). Returns its RMS in dB and the
    amplitude in dB of its sinusoid at ``rate`` Hz (the tremolo that goes with the vibrato;
    least squares, any phase)."""
    from ..data import loudness_db
    fr = spec.SAMPLE_RATE / spec.HOP
    L = loudness_db(np.asarray(audio, np.float64))
    a, b = int(start_s * fr), min(int(release_frame), len(L)) - int(0.02 * fr)
    k = int(window_s * fr)
    if b - a < k:
        return float("nan"), float("nan")
    seg = L[a:b]
    pad = np.pad(seg, (k // 2, k - k // 2), mode="edge")
    x = seg - np.convolve(pad, np.ones(k) / k, "valid")[: len(seg)]
    t = np.arange(a, b) / fr
    A = np.stack([np.sin(2 * np.pi * rate * t), np.cos(2 * np.pi * rate * t)], 1)
    c = np.linalg.lstsq(A, x, rcond=None)[0]
    return float(np.sqrt(np.mean(x ** 2))), float(np.hypot(c[0], c[1]))


def evaluate_life(model: str, data_dir: str, instrument: str | None = None) -> dict:
    """Per-note rows and medians for a model on its instrument's held-out notes in
    ``data_dir/<instrument>`` (the instrument: ``--instrument``, else the model's source name)."""
    from pathlib import Path

    from .. import data as rdata
    from ..instruments import load_instrument
    from .common import model_config
    from .melody import for_engine
    cfg = model_config(model)
    name = instrument or (cfg.get("source") or {}).get("name")
    d = Path(data_dir) / name if (Path(data_dir) / name).is_dir() else Path(data_dir)
    inst = for_engine(load_instrument(model))
    rows = [r for r in (note_life(inst, ex) for ex in rdata.load_dataset(d, split="test"))
            if r is not None]
    med = {k: round(float(np.median([r[k] for r in rows])), 3) for k in
           ("rate_source", "rate_model", "depth_source", "depth_model", "curve_cents",
            "static_cents", "breath_db_source", "breath_db_model", "tremolo_db_source",
            "tremolo_db_model", "drift_cents_source", "drift_cents_model",
            "drift_error_cents")} if rows else {}
    if rows:
        med["rate_error_hz"] = round(float(np.median([abs(r["rate_model"] - r["rate_source"])
                                                      for r in rows])), 3)
        med["depth_ratio"] = round(float(np.median([r["depth_model"] / max(r["depth_source"],
                                                                           1e-9)
                                                    for r in rows])), 3)
    return {"model": model, "dataset": str(d), "notes": len(rows), **med, "rows": rows}
