"""The source's noise bandwidth, fitted on a model's training notes (issue 12.3).

FluidR3's samples hold nothing above their bandwidth (``bandwidth_hz``, the -90 dB point of
the long-term spectrum: :func:`rtsynth.data.source_bandwidth`), and the loader already holds
the model's noise bands above it at their floor. But the trumpet's harmonics reach 19 kHz while
its noise does not: a model trained with the MR-STFT loss puts noise in the 15-18 kHz bands that
the source fills only with (low notes: no) harmonics, the largest part of its melody distance
(trumpet-life 0.629 -> 0.574 with the bands above 15.1 kHz held).

``fit_noise_bandwidth`` renders plain TRAINING notes (FluidSynth float samples: the datasets'
int16 floor would favour noise everywhere) through the engine with the
noise bands above each candidate edge held at the floor (``noise_bandwidth_hz`` in the config,
:class:`rtsynth.nn.neural.NeuralInstrument`) and keeps the edge with the lowest mean distance
(:func:`rtsynth.eval.melody.melody_distance`, the issue's metric, on each note to 50 ms after
its release: the silence after it, where any noise floor costs most, is not what a melody
holds); among edges within ``tol``
of the best, the highest (the least change). Held-out melodies and notes are not used.

    python -m rtsynth.eval.bandwidth models/trumpet-life trumpet [--write]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from .. import spec


def candidates(sample_rate: int, n_bands: int, top_hz: float, low_hz: float = 6000.0
               ) -> list[float]:
    """The noise bands' upper edges from ``low_hz`` up to ``top_hz``: with ``noise_bandwidth_hz``
    at one of them, the bands below it play and those above are held."""
    edges = spec.band_edges(sample_rate, n_bands)
    return [float(e) for e in edges[1:] if low_hz <= e <= top_hz]


def _instrument(folder: Path, noise_hz: float | None):
    from ..nn.io import load_weights
    from ..nn.neural import NeuralInstrument
    from .melody import for_engine

    weights, cfg = load_weights(folder)
    cfg = dict(cfg)
    if noise_hz is not None:
        cfg["noise_bandwidth_hz"] = noise_hz
    else:
        cfg.pop("noise_bandwidth_hz", None)
    return for_engine(NeuralInstrument(weights, cfg, name=folder.name)), cfg


def train_notes_float(instrument: str, n: int = 24) -> list:
    """``n`` of the instrument's plain training notes (its dynamics set's plan: training pitches
    and velocities, evenly spread), rendered again by FluidSynth as float samples: the datasets
    are int16, whose -96 dBFS floor fills every band (the held-out references are float)."""
    import tempfile

    from ..data import load_dataset
    from ..dataset import build as bd

    notes, _ = bd.plan_dynamics(instrument)
    train = [x for x in notes if x["split"] == "train" and x["kind"] == "note"]
    if len(train) > n:
        train = [train[i] for i in np.linspace(0, len(train) - 1, n).round().astype(int)]
    with tempfile.TemporaryDirectory() as tmp:
        bd.render_instrument(instrument, tmp, notes=train, quiet=True, float32=True)
        return load_dataset(Path(tmp) / instrument)


def fit_noise_bandwidth(model: str | Path, instrument: str, n_notes: int = 24,
                        tol: float = 1e-3, verbose: bool = False) -> dict:
    """The fit (see the module): ``noise_bandwidth_hz`` (None: the bandwidth itself is best),
    the mean training-note distance per candidate, and the notes used."""
    from .common import render_engine
    from .melody import melody_distance

    folder = Path(model)
    notes = train_notes_float(instrument, n_notes)
    _, cfg = _instrument(folder, None)
    sr = int(cfg.get("sample_rate", spec.SAMPLE_RATE))
    n_bands = int(cfg["architecture"]["n_noise"])
    top = float(cfg.get("bandwidth_hz") or sr / 2)
    scores: dict[str, float] = {}
    for c in [None] + candidates(sr, n_bands, top):
        inst, _ = _instrument(folder, c)
        d = []
        for ex in notes:        # the sounding note: to its release and 50 ms after
            n = min(len(ex.audio), int(ex.release_sample) + sr // 20)
            d.append(melody_distance(np.asarray(ex.audio[:n], np.float64),
                                     render_engine(inst, ex)[:n]))
        scores["none" if c is None else f"{c:.0f}"] = float(np.mean(d))
        if verbose:
            print(f"  noise bandwidth {'(bandwidth)' if c is None else f'{c:.0f} Hz':>12s}: "
                  f"{np.mean(d):.4f}", file=sys.stderr)
    best = min(scores.values())
    ok = [k for k, v in scores.items() if v <= best + tol]
    pick = "none" if "none" in ok else max(ok, key=float)
    return {"noise_bandwidth_hz": None if pick == "none" else float(pick),
            "train_note_distance": {k: round(v, 4) for k, v in scores.items()},
            "notes": len(notes), "instrument": instrument, "tol": tol,
            "how": "rtsynth.eval.bandwidth.fit_noise_bandwidth (training notes, FluidSynth float)"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rtsynth.eval.bandwidth", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("instrument", help="its dynamics set's training notes (flute, trumpet, ...)")
    ap.add_argument("--notes", type=int, default=24)
    ap.add_argument("--write", action="store_true",
                    help="write noise_bandwidth_hz and the fit into the model's config.json")
    a = ap.parse_args(argv)
    fit = fit_noise_bandwidth(a.model, a.instrument, a.notes, verbose=True)
    print(json.dumps(fit, indent=1))
    if a.write:
        p = Path(a.model) / "config.json"
        cfg = json.loads(p.read_text())
        if fit["noise_bandwidth_hz"] is None:
            cfg.pop("noise_bandwidth_hz", None)
        else:
            cfg["noise_bandwidth_hz"] = fit["noise_bandwidth_hz"]
        cfg["noise_bandwidth_fit"] = fit
        p.write_text(json.dumps(cfg, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
