"""A small held-out check set that a test regenerates with FluidSynth: the first ``n`` held-out
single notes of an instrument's dynamics set (``rtsynth dataset soundfont --dynamics``, unseen
pitches and velocities; FluidSynth's float samples, no int16 floor), rendered through a model's real-time step (:func:`metrics.render_step`)
and scored with :func:`metrics.mss_distance`. ``config.json`` ``metrics.check_set`` holds a
shipped model's numbers; ``tests/test_nn_cards.py`` checks that the model still meets them."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np


def check_notes(instrument: str, n: int = 3) -> list:
    from ..data import load_dataset
    from ..dataset import build as bd

    notes, _ = bd.plan_dynamics(instrument)
    held = [x for x in notes if x["split"] == "test" and x["kind"] == "note"][:n]
    with tempfile.TemporaryDirectory() as tmp:
        bd.render_instrument(instrument, tmp, notes=held, quiet=True, float32=True)
        return load_dataset(Path(tmp) / instrument)


def check_scores(model: str, instrument: str, n: int = 3) -> list[float]:
    from ..instruments import load_instrument
    from .melody import for_engine
    from .metrics import mss_distance, render_step

    inst = for_engine(load_instrument(model))
    out = []
    for ex in check_notes(instrument, n):
        y = render_step(inst, ex)
        out.append(round(float(mss_distance(ex.audio.astype(np.float64), y)), 4))
    return out
