"""Issue 12's measures: held-out melody distance, swell brightening, onset error.

melody_distance (the issue's distance)
    Both signals normalised to unit RMS; for each FFT size N in (2048, 1024, 512, 256): Hann
    window of N samples, hop N/4 (:func:`rtsynth.eval.metrics._stft_mag`), the mean absolute
    difference of ``log(|STFT| + 1e-5)``; the mean over the four sizes. Measured on held-back
    melodies: ``rtsynth dataset phrases`` MIDI + FluidSynth WAV pairs (reverb and chorus off),
    each MIDI file through the engine (no reverb, no master chain). Floors from the issue (two
    different real sampled instruments of the same kind): flute 0.65, violin 0.65, trumpet 0.62,
    cello 1.18, clarinet 0.91.

swell (contract v2 models)
    One held note per pitch, velocity 30, its dynamics column held at 30/127 for 0.35 s, then
    raised to 1 over 2 s (as CC11 / pressure would), brightness at its default. Measured on the
    audio: the median log centroid (:func:`rtsynth.data.spectral_centroid`) and the median
    A-weighted level over the last 0.3 s at 30/127 and the last 0.3 s at 1. Source: the same
    measure on FluidSynth notes struck at velocity 40 and 120 at the same pitches.
    ``brightening_ratio`` = model's log-centroid rise / source's (the issue asks >= 0.5), and
    ``level_rise_db`` (>= 10).

onset error
    The audible onset of a note: its first sample whose magnitude reaches 2 % of the note's
    peak. ``onset_ms`` = model onset - source onset per held-out single note (positive: later).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import spec

FLOORS = {"flute": 0.65, "violin": 0.65, "trumpet": 0.62, "cello": 1.18, "clarinet": 0.91}
SIZES = (2048, 1024, 512, 256)
EPS = 1e-5


def melody_distance(ref: np.ndarray, est: np.ndarray, sizes=SIZES) -> float:
    from .common import _stft_mag

    n = max(len(ref), len(est))
    r = np.zeros(n)
    e = np.zeros(n)
    r[: len(ref)] = ref
    e[: len(est)] = est
    r /= max(np.sqrt(np.mean(r ** 2)), 1e-12)
    e /= max(np.sqrt(np.mean(e ** 2)), 1e-12)
    tot = 0.0
    for N in sizes:
        tot += float(np.mean(np.abs(np.log(_stft_mag(r, N) + EPS) - np.log(_stft_mag(e, N) + EPS))))
    return tot / len(sizes)


class KeyboardV2:
    """A contract-v2 instrument stepped with seven-column features (a dataset's, or
    :func:`spec.note_features`'): dynamics = velocity / 127 and brightness at its default added,
    what the engine passes from a keyboard with no expression controller
    (``tests/test_nn_v2.py`` checks the engine does)."""

    n_features = spec.N_FEATURES

    def __init__(self, inst):
        self._inst = inst
        self._buf = np.zeros((0, spec.N_FEATURES_V2), np.float32)

    def __getattr__(self, name):
        return getattr(self._inst, name)

    def _cols(self, features):
        n = len(features)
        if self._buf.shape[0] < n:
            self._buf = np.zeros((max(n, 2 * self._buf.shape[0]), spec.N_FEATURES_V2), np.float32)
        b = self._buf[:n]
        b[:, : spec.N_FEATURES] = features[:, : spec.N_FEATURES]
        b[:, spec.F_DYNAMICS] = features[:, 1]
        b[:, spec.F_BRIGHTNESS] = spec.DEFAULT_BRIGHTNESS
        return b

    def step(self, features, slots, out_harm, out_noise):
        self._inst.step(self._cols(features), slots, out_harm, out_noise)

    def steppers(self, k):
        outs = self._inst.steppers(k)
        wrapped = [self.step]
        for s in outs[1:]:
            w = KeyboardV2(self._inst)
            wrapped.append(lambda f, sl, h, g, s=s, w=w: s(w._cols(f), sl, h, g))
        return wrapped

    def warmup(self):
        self._inst.warmup()


def for_engine(inst):
    """``inst`` ready to be stepped with seven-column features: a v2 model through
    :class:`KeyboardV2`, a v1 model as it is."""
    if getattr(inst, "n_features", spec.N_FEATURES) == spec.N_FEATURES:
        return inst
    return KeyboardV2(inst)


def _phrase_pairs(phrase_dir: Path, programs):
    pairs = []
    for m in sorted(phrase_dir.glob("*.mid")):
        w = m.with_suffix(".wav")
        if not w.exists():
            continue
        j = m.with_suffix(".json")
        prog = json.loads(j.read_text()).get("program") if j.exists() else None
        if programs is None or prog is None or prog in programs:
            pairs.append((m, w))
    return pairs


def evaluate_melodies(models: list[str], phrase_dir: str, instrument: str | None = None,
                      verbose: bool = True) -> list[dict]:
    """:func:`melody_distance` of each model on the held-back melodies of its program(s):
    ``phrase_dir`` holds one sub-folder of phrase pairs per instrument."""
    import soundfile as sf
    import sys

    from ..instruments import load_instrument
    from ..render import read_midi_events
    from .common import model_config, model_programs, render_events_mono, select_timbre

    root = Path(phrase_dir)
    dirs = sorted(d for d in root.iterdir() if d.is_dir() and any(d.glob("*.mid"))) \
        if root.is_dir() else []
    if root.is_dir() and any(root.glob("*.mid")):
        dirs = [root] + dirs
    if instrument:
        dirs = [d for d in dirs if d.name in instrument.split(",")]
    if not dirs:
        raise FileNotFoundError(f"no phrase*.mid + .wav pairs under {phrase_dir} (make them with "
                                f"`rtsynth dataset phrases -p PROGRAM -o {phrase_dir}/NAME`)")
    rows = []
    for model in models:
        progs = model_programs(model)
        cfg = model_config(model)
        for d in dirs:
            pairs = _phrase_pairs(d, progs)
            if not pairs:
                continue
            inst = for_engine(load_instrument(model))
            select_timbre(inst, cfg, d.name)
            dist = []
            for mid, wav in pairs:
                ref, sr = sf.read(str(wav), dtype="float64", always_2d=True)
                ref = ref.mean(1)
                y = render_events_mono(inst, read_midi_events(mid, sr), len(ref))
                dist.append(melody_distance(ref, y))
            row = dict(model=model, dataset=f"melodies:{d.name}", n_melodies=len(dist),
                       melody_distance=float(np.mean(dist)),
                       per_melody=[round(x, 4) for x in dist], floor=FLOORS.get(d.name))
            rows.append(row)
            if verbose:
                print(f"  {model:>18s} on {row['dataset']:<18s} distance {row['melody_distance']:.3f}"
                      f" (floor {row['floor']})", file=sys.stderr)
    return rows


# ----------------------------------------------------------------------------------------------
# swell brightening (v2) and the source's velocity layers

def _held_measure(audio: np.ndarray, pitch: float, a_s: float, b_s: float) -> tuple[float, float]:
    from ..data import loudness_db, spectral_centroid

    hop, sr = spec.HOP, spec.SAMPLE_RATE
    a, b = int(a_s * sr / hop), int(b_s * sr / hop)
    c = spectral_centroid(audio)[a:b]
    L = loudness_db(audio)[a:b]
    return float(np.median(np.log(np.maximum(c, 1.0)))), float(np.median(L))


def source_layers(program: int, pitches: list[int], v_lo: int = 40, v_hi: int = 120) -> dict:
    """Log-centroid and level difference of FluidSynth notes struck at ``v_hi`` vs ``v_lo``
    (held 1.2 s, measured over 0.6-0.9 s), averaged over ``pitches``."""
    import tempfile

    from ..dataset.build import render_midi, build_midi, TICK

    notes = [dict(pitch=p, velocity=v, held=int(1.2 * spec.SAMPLE_RATE / TICK))
             for p in pitches for v in (v_lo, v_hi)]
    with tempfile.TemporaryDirectory() as tmp:
        onsets = build_midi(notes, program, f"{tmp}/n.mid")
        mono = render_midi(f"{tmp}/n.mid", f"{tmp}/n.wav").mean(1).astype(np.float64)
    dc, dl = [], []
    n = int(1.2 * spec.SAMPLE_RATE)
    for i in range(0, len(notes), 2):
        lo = _held_measure(mono[onsets[i] * TICK: onsets[i] * TICK + n], notes[i]["pitch"], 0.6, 0.9)
        hi = _held_measure(mono[onsets[i + 1] * TICK: onsets[i + 1] * TICK + n],
                           notes[i]["pitch"], 0.6, 0.9)
        dc.append(hi[0] - lo[0])
        dl.append(hi[1] - lo[1])
    return {"log_centroid_rise": float(np.mean(dc)), "level_rise_db": float(np.mean(dl)),
            "centroid_ratio": float(np.exp(np.mean(dc))), "velocities": [v_lo, v_hi],
            "pitches": list(pitches)}


def swell_features(pitch: float, seconds: float = 2.6, d0: float = 30 / 127, d1: float = 1.0,
                   flat_s: float = 0.35, ramp_s: float = 2.0,
                   brightness: float = spec.DEFAULT_BRIGHTNESS) -> np.ndarray:
    """Contract-v2 features of one held note whose dynamics rise from ``d0`` to ``d1``."""
    from ..data import midi_features_v2

    T = int(seconds * spec.SAMPLE_RATE / spec.HOP)
    t = np.arange(T) * spec.HOP / spec.SAMPLE_RATE
    u = np.clip((t - flat_s) / ramp_s, 0.0, 1.0)
    d = d0 + (d1 - d0) * u
    return midi_features_v2(T, float(pitch), 127.0 * d0, None, dynamics=d, brightness=brightness)


def render_features(inst, feats: np.ndarray, pitch: float) -> np.ndarray:
    h, g = inst.render_note(feats)
    f0 = np.full(len(feats) * spec.HOP, float(spec.midi_to_hz(pitch)))
    return spec.synthesize_reference(h, g, f0)


def swell_response(inst, pitches: list[int]) -> dict:
    """The model's log-centroid and level rise over a dynamics swell 30/127 -> 1 (see the
    module docstring), averaged over ``pitches``."""
    dc, dl = [], []
    for p in pitches:
        y = render_features(inst, swell_features(p), p)
        lo = _held_measure(y, p, 0.05, 0.35)
        hi = _held_measure(y, p, 2.3, 2.6)
        dc.append(hi[0] - lo[0])
        dl.append(hi[1] - lo[1])
    return {"log_centroid_rise": float(np.mean(dc)), "level_rise_db": float(np.mean(dl)),
            "centroid_ratio": float(np.exp(np.mean(dc)))}


def brightness_response(inst, pitches: list[int], lo: float = 0.0, hi: float = 1.0) -> dict:
    """Log-centroid change of a held note at velocity 100 between brightness ``lo`` and ``hi``."""
    from ..data import midi_features_v2

    T = int(1.0 * spec.SAMPLE_RATE / spec.HOP)
    dc = []
    for p in pitches:
        m = []
        for b in (lo, hi):
            y = render_features(inst, midi_features_v2(T, float(p), 100.0, None, brightness=b), p)
            m.append(_held_measure(y, p, 0.5, 1.0)[0])
        dc.append(m[1] - m[0])
    return {"log_centroid_change": float(np.mean(dc)), "centroid_ratio": float(np.exp(np.mean(dc)))}


def onset_sample(x: np.ndarray, frac: float = 0.02) -> int:
    x = np.abs(np.asarray(x, dtype=np.float64))
    pk = x.max()
    if pk <= 0:
        return -1
    return int(np.argmax(x >= frac * pk))


def onset_errors_ms(pairs) -> np.ndarray:
    """``[(reference, model output), ...]`` of single notes -> model onset - reference onset,
    ms."""
    return np.array([(onset_sample(e) - onset_sample(r)) * 1000.0 / spec.SAMPLE_RATE
                     for r, e in pairs])
