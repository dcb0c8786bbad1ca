"""Training batches from :func:`rtsynth.data.load_dataset` folders.

Every example is one voice from its onset (sample 0 = the note-on, frame grid onset-aligned). A
batch holds whole notes, padded to a fixed number of frames ``T`` with the note's own features
(released, decaying: :func:`rtsynth.spec.note_features` is defined for any length) and silent
audio, so the backbone always runs from the onset like a live voice. Loss is taken on a random
crop of ``crop`` frames of each note (the synthesis and the STFTs are the expensive part): the
crop starts at the onset with probability ``onset_prob``, elsewhere at a random frame, and the
backbone has been warmed up on all the preceding frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import spec


@dataclass
class TrainSet:
    features: torch.Tensor   # [N, T, 7] float32
    audio: torch.Tensor      # [N, T*hop] float32
    f0: torch.Tensor         # [N, T*hop] float32 Hz
    n_frames: torch.Tensor   # [N] int64 frames of real audio (before padding)
    label: torch.Tensor      # [N] int64 dataset index (instrument)
    names: list[str]
    sources: list[dict]
    ids: list[str]

    def __len__(self) -> int:
        return self.features.shape[0]

    def to(self, device) -> "TrainSet":
        return TrainSet(self.features.to(device), self.audio.to(device), self.f0.to(device),
                        self.n_frames.to(device), self.label.to(device), self.names,
                        self.sources, self.ids)


def tilt(audio: np.ndarray, f0: float, beta: float) -> np.ndarray:
    """``audio`` through a static spectral tilt ``(max(f, f0) / f0) ** beta`` (beta > 0
    brighter), rescaled to the same A-weighted energy: a brightness augmentation whose
    brightness is then measured from the result like any other target."""
    from .. import data as rdata

    x = np.asarray(audio, dtype=np.float64)
    X = np.fft.rfft(x)
    f = np.fft.rfftfreq(len(x), 1.0 / spec.SAMPLE_RATE)
    y = np.fft.irfft(X * (np.maximum(f, f0) / f0) ** beta, n=len(x))
    wa = 10.0 ** (rdata.a_weighting_db(np.maximum(f, 1.0)) / 10.0)
    ea = np.sum(np.abs(X) ** 2 * wa)
    eb = np.sum(np.abs(np.fft.rfft(y)) ** 2 * wa)
    y *= np.sqrt(ea / max(eb, 1e-30))
    peak = np.abs(y).max()
    if peak > 0.99:
        y *= 0.99 / peak
    return y.astype(np.float32)


def load_train_set(dirs: list[str | Path], split: str = "train", max_frames: int | None = None,
                   pad_frames: int = 32, n_features: int = spec.N_FEATURES,
                   tilt_fraction: float = 0.0, seed: int = 0,
                   source_f0: bool = False) -> TrainSet:
    """Load one or more dataset folders (one instrument each) into padded tensors.

    ``n_features`` 9 (contract v2): the dynamics and brightness columns are measured from each
    target's audio with its dataset's calibration (``index.json`` ``calibration``, else computed
    from the notes): :func:`rtsynth.data.features_v2`. ``tilt_fraction``: that fraction of the
    examples is added again through a random spectral tilt (:func:`tilt`, +-0.8), whose
    brightness is measured from the tilted audio.

    ``source_f0``: the pitch column and the synthesis f0 follow the source's own tracked pitch
    (:func:`rtsynth.dataset.life.source_pitch_frames`: the sample's vibrato, settling and tuning)
    instead of the MIDI pitch, the f0 linear between frame starts; the tracked cents are cached
    in each dataset folder (``f0_cents.npz``)."""
    from .. import data as rdata

    if n_features not in (spec.N_FEATURES, spec.N_FEATURES_V2):
        raise ValueError(f"n_features must be {spec.N_FEATURES} or {spec.N_FEATURES_V2}")
    rng = np.random.default_rng(seed + 101)
    exs, labels, names, sources, cals = [], [], [], [], []
    for i, d in enumerate(dirs):
        idx = rdata.read_index(d)
        names.append(idx.get("name", Path(d).name))
        sources.append(idx.get("source", {}))
        part = rdata.load_dataset(d, split=split)
        if not part:
            raise ValueError(f"{d}: no {split!r} examples")
        if source_f0:
            from ..dataset import life as dlife
            cents = dlife.source_cents(part, d)
            part = [_with_pitch(ex, dlife.source_pitch_frames(ex, cents[ex.id])) for ex in part]
        if n_features == spec.N_FEATURES_V2:
            cal = idx.get("calibration") or rdata.calibrate(
                rdata.load_dataset(d, split="train") if split != "train" else part)
            extra = []
            if tilt_fraction > 0:
                pick = rng.choice(len(part), size=int(round(tilt_fraction * len(part))),
                                  replace=False)
                for j in pick:
                    ex = part[int(j)]
                    f0 = float(spec.midi_to_hz(np.median(ex.pitch_frames)))
                    beta = float(rng.choice([-1, 1]) * rng.uniform(0.25, 0.8))
                    extra.append(rdata.Example(
                        audio=tilt(ex.audio, f0, beta), pitch_frames=ex.pitch_frames, f0=ex.f0,
                        velocity=ex.velocity, release_sample=ex.release_sample, split=ex.split,
                        features=ex.features, kind=ex.kind, id=ex.id + f"-tilt{beta:+.2f}",
                        program=ex.program, name=ex.name, pitch=ex.pitch,
                        meta=dict(ex.meta, tilt=beta, plain_audio=ex.audio)))
            part = part + extra
            cals += [cal] * len(part)
        else:
            cals += [None] * len(part)
        exs += part
        labels += [i] * len(part)
    lens = [ex.n_frames for ex in exs]
    t = max(lens) + pad_frames
    if max_frames is not None:
        t = min(t, max_frames)
    hop = spec.HOP
    n = len(exs)
    feats = np.zeros((n, t, n_features), np.float32)
    audio = np.zeros((n, t * hop), np.float32)
    f0 = np.zeros((n, t * hop), np.float32)
    for j, ex in enumerate(exs):
        m = min(ex.n_frames, t)
        pf = np.concatenate([ex.pitch_frames[:m], np.full(t - m, ex.pitch_frames[m - 1])])
        if cals[j] is not None:
            feats[j] = rdata.features_v2(ex, cals[j], t, pf)
        else:
            feats[j] = spec.note_features(t, pf, float(ex.velocity), int(ex.release_sample))
        audio[j, : m * hop] = ex.audio[: m * hop]
        if source_f0:
            k = np.arange(t * hop) / hop
            f0[j] = spec.midi_to_hz(np.interp(k, np.arange(t), pf))
        else:
            f0[j] = np.repeat(spec.midi_to_hz(pf), hop)
    return TrainSet(torch.from_numpy(feats), torch.from_numpy(audio), torch.from_numpy(f0),
                    torch.tensor([min(x, t) for x in lens]), torch.tensor(labels), names, sources,
                    [ex.id for ex in exs])


def _with_pitch(ex, pitch_frames: np.ndarray):
    """``ex`` with another pitch per frame (its features and f0 from it); the MIDI pitch
    stays in ``meta['midi_pitch_frames']``."""
    from dataclasses import replace
    pf = np.asarray(pitch_frames, np.float64)
    return replace(ex, pitch_frames=pf, f0=np.repeat(spec.midi_to_hz(pf), spec.HOP),
                   features=spec.note_features(len(pf), pf, float(ex.velocity),
                                               int(ex.release_sample)),
                   meta=dict(ex.meta, midi_pitch_frames=ex.pitch_frames))


def synthetic_dataset(out_dir: str | Path, name: str = "synth", program: int = 0, n_train: int = 8,
                      n_test: int = 2, seconds: float = 0.5, seed: int = 0) -> Path:
    """A tiny dataset in the :mod:`rtsynth.data` format rendered with the spec synthesis
    (a decaying harmonic tone with a little noise): for tests and CPU smoke runs."""
    from .. import data as rdata

    rng = np.random.default_rng(seed)
    hop = spec.HOP
    examples, audios = [], {}
    slope = 1.0 + 0.5 * (program % 3)
    for i in range(n_train + n_test):
        split = "train" if i < n_train else "test"
        pitch = int(rng.integers(55, 80))
        vel = int(rng.integers(40, 127))
        t = int(seconds * spec.SAMPLE_RATE / hop)
        rel = (t * 2 // 3) * hop
        feats = spec.note_features(t, float(pitch), vel, rel)
        env = (vel / 127.0) * 0.3 * (1 - feats[:, 3]) * (feats[:, 2] + feats[:, 6] * (1 - feats[:, 2]))
        dist = 1.0 / np.arange(1, spec.N_HARMONICS + 1) ** slope
        f0 = np.full(t, spec.midi_to_hz(pitch))
        harm = spec.harmonic_amplitudes(env, np.broadcast_to(dist, (t, spec.N_HARMONICS)), f0)
        noise = np.outer(env, np.full(spec.N_NOISE_BANDS, 0.01))
        y = spec.synthesize_reference(harm, noise, np.repeat(f0, hop), offset=i * 1000)
        key = f"e{i:04d}"
        audios[key] = y.astype(np.float32)
        examples.append({"id": key, "split": split, "kind": "note", "pitch": pitch, "velocity": vel,
                         "release_sample": rel, "n_samples": t * hop, "bend": [],
                         "peak": float(np.abs(y).max())})
    index = {"sample_rate": spec.SAMPLE_RATE, "hop": hop, "name": name,
             "source": {"type": "synthetic", "program": program, "name": name},
             "train_pitches": [], "test_pitches": [], "examples": examples}
    rdata.write_dataset(out_dir, index, audios)
    return Path(out_dir)
