"""The life of the source measured on held-out notes (issue 12.4): vibrato rate and depth of
the model's notes against the source's, and how far its pitch curve is from the source's.

For each held-out plain note of 0.5 s or more (a dataset's test split, e.g. ``rtsynth dataset
soundfont --dynamics --test-only --float32``): the source's f0 and the model's (the note through
the engine, as ``rtsynth render`` plays it) tracked per frame by
:func:`rtsynth.dataset.life.track_f0`, each curve fitted by :func:`rtsynth.dataset.life.fit_note`
(rate, depth); ``curve_cents``: the RMS of model minus source over the frames both track
(frame 0 and the release left out), against ``static_cents``: the same for a note held at its
MIDI pitch (the source's own movement, what a model without life misses).
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
    return {"pitch": int(ex.pitch), "velocity": int(ex.velocity),
            "rate_source": fs["rate"], "rate_model": fm["rate"],
            "depth_source": fs["depth"], "depth_model": fm["depth"],
            "curve_cents": float(np.sqrt(np.mean((cm[both] - cs[both]) ** 2))),
            "static_cents": float(np.sqrt(np.mean(cs[both] ** 2)))}


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
            "static_cents")} if rows else {}
    if rows:
        med["rate_error_hz"] = round(float(np.median([abs(r["rate_model"] - r["rate_source"])
                                                      for r in rows])), 3)
        med["depth_ratio"] = round(float(np.median([r["depth_model"] / max(r["depth_source"],
                                                                           1e-9)
                                                    for r in rows])), 3)
    return {"model": model, "dataset": str(d), "notes": len(rows), **med, "rows": rows}
