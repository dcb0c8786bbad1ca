"""Training and evaluation datasets: one voice per example, aligned to its onset.

Needs only numpy (``soundfile`` only for the optional FLAC copies and for reading recordings), so
it loads on the GPU machine as it is.

Format (one folder per instrument, e.g. ``data/flute/``)
--------------------------------------------------------
``index.json``::

    {
      "format": "rtsynth-dataset", "version": 1,
      "sample_rate": 48000, "hop": 192,
      "name": "flute",
      "source": {"type": "soundfont", "soundfont": "FluidR3_GM.sf2", "bank": 0, "program": 73,
                 "name": "flute", "renderer": "fluidsynth 2.3.1", "gain": 0.5,
                 "reverb": false, "chorus": false}
                # or {"type": "recordings", "dir": ..., "pitch_tracker": ...}
      "train_pitches": [...], "test_pitches": [...],
      "train_velocities": [...], "test_velocities": [...],
      "examples": [
        {"id": "e0000",            # key of the audio in audio.npz
         "file": "flac/e0000.flac" or null,   # optional FLAC copy (same samples)
         "split": "train" | "test",
         "kind": "note" | "vibrato" | "bend" | "recording",
         "pitch": 67,              # midi note number of the note-on
         "velocity": 100,          # 1..127 (recordings: from the note's peak loudness)
         "release_sample": 48000,  # note-off, in samples from the onset (a multiple of hop
                                   # for SoundFont renders)
         "n_samples": 96000,       # stored length (a multiple of hop), release tail included
         "bend": [[frame, semitones], ...],   # pitch-bend steps: from voice frame `frame` on
                                   # (sample frame*hop) the pitch is pitch + semitones; [] = none
         "pitch_curve": [...],     # only for recordings: midi pitch per frame (tracked)
         "peak": 0.31}
      ]
    }

``audio.npz``: one int16 array per example id (scale 1/32767), mono (mean of L/R), where sample 0
is the onset sample of the note-on: the audio before it was verified silent when building, and the
sound starts within a few samples of it. FluidSynth processes events at 64-sample block starts;
the builder places every event (note-on, note-off, pitch bend) on a 192-sample (= 1 hop = 4 ms)
MIDI tick, so the bend steps fall exactly on frame boundaries and ``pitch_frames`` below is exact
(FluidSynth holds the pitch constant within its 64-sample block).

The audio is int16 in a plain ``.npz`` (not only FLAC) because the GPU machine's package list
does not show ``soundfile``: :func:`load_dataset` reads ``audio.npz`` with numpy alone. Carry
``data/<name>`` (index.json + audio.npz; ``--flac`` copies are optional and not needed).

:class:`Example` (what :func:`load_dataset` returns)
    audio          float32 ``[T*hop]`` mono from the onset (zero padded / truncated to T*hop)
    pitch_frames   float64 ``[T]`` midi pitch (bend included) at each frame start
    f0             float64 ``[T*hop]`` Hz per sample (piecewise constant per frame)
    velocity       int
    release_sample int (samples from onset)
    split, kind, id, program (GM program or -1), name (instrument name)
    features       float32 ``[T, 7]`` = ``spec.note_features(T, pitch_frames, velocity,
                   release_sample)``
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import spec

FORMAT = "rtsynth-dataset"
VERSION = 1


@dataclass
class Example:
    audio: np.ndarray
    pitch_frames: np.ndarray
    f0: np.ndarray
    velocity: int
    release_sample: int
    split: str
    features: np.ndarray
    kind: str = "note"
    id: str = ""
    program: int = -1
    name: str = ""
    pitch: int = 0
    meta: dict = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return len(self.pitch_frames)


def pitch_curve(pitch: float, bend: list, n_frames: int) -> np.ndarray:
    """Midi pitch per frame from the note's pitch and its ``[[frame, semitones], ...]`` steps."""
    out = np.full(n_frames, float(pitch), dtype=np.float64)
    for fr, semis in sorted(bend, key=lambda e: e[0]):
        fr = int(fr)
        if fr < n_frames:
            out[max(fr, 0):] = float(pitch) + float(semis)
    return out


def example_from_arrays(audio: np.ndarray, meta: dict, source: dict, name: str,
                        hop: int = spec.HOP, sample_rate: int = spec.SAMPLE_RATE) -> Example:
    n = len(audio)
    T = max(1, -(-n // hop))
    a = np.zeros(T * hop, dtype=np.float32)
    a[: min(n, T * hop)] = audio[: T * hop]
    if meta.get("pitch_curve") is not None:
        pc = np.asarray(meta["pitch_curve"], dtype=np.float64)
        pf = np.empty(T, dtype=np.float64)
        m = min(T, len(pc))
        pf[:m] = pc[:m]
        pf[m:] = pc[m - 1] if m else float(meta["pitch"])
    else:
        pf = pitch_curve(meta["pitch"], meta.get("bend", []), T)
    f0 = np.repeat(spec.midi_to_hz(pf), hop)
    rel = int(meta["release_sample"])
    feats = spec.note_features(T, pf, float(meta["velocity"]), rel, hop=hop,
                               sample_rate=sample_rate)
    return Example(audio=a, pitch_frames=pf, f0=f0, velocity=int(meta["velocity"]),
                   release_sample=rel, split=meta.get("split", "train"), features=feats,
                   kind=meta.get("kind", "note"), id=meta.get("id", ""),
                   program=int(source.get("program", -1)), name=name,
                   pitch=int(round(meta["pitch"])), meta=meta)


def read_index(path: str | os.PathLike) -> dict:
    p = Path(path)
    if p.is_dir():
        p = p / "index.json"
    with open(p) as f:
        idx = json.load(f)
    if idx.get("format") != FORMAT:
        raise ValueError(f"{p}: not an rtsynth dataset index (format={idx.get('format')!r})")
    return idx


def load_dataset(path: str | os.PathLike, split: str | None = None,
                 kinds: tuple[str, ...] | None = None) -> list[Example]:
    """Load the examples of one dataset folder (``index.json`` + ``audio.npz``).

    split: ``"train"``, ``"test"`` or None (all). kinds: keep only these kinds (None: all).
    Reads FLAC (with soundfile) only for examples whose id is missing from ``audio.npz``.
    """
    d = Path(path)
    if d.is_file():
        d = d.parent
    idx = read_index(d)
    hop = int(idx.get("hop", spec.HOP))
    sr = int(idx["sample_rate"])
    source = idx.get("source", {})
    name = idx.get("name", source.get("name", d.name))
    npz = np.load(d / "audio.npz") if (d / "audio.npz").exists() else None
    out = []
    for meta in idx["examples"]:
        if split is not None and meta["split"] != split:
            continue
        if kinds is not None and meta["kind"] not in kinds:
            continue
        if npz is not None and meta["id"] in npz.files:
            audio = npz[meta["id"]].astype(np.float32) / 32767.0
        else:
            import soundfile as sf
            audio, fsr = sf.read(str(d / meta["file"]), dtype="float32", always_2d=True)
            audio = audio.mean(1)
            if fsr != sr:
                raise ValueError(f"{meta['file']}: sample rate {fsr} != {sr}")
        out.append(example_from_arrays(audio, meta, source, name, hop, sr))
    return out


def write_dataset(out_dir: str | os.PathLike, index: dict, audios: dict[str, np.ndarray],
                  flac: bool = False, npz: bool = True) -> None:
    """Write ``index.json`` + ``audio.npz`` (int16) and optionally FLAC copies (16-bit).

    ``npz=False`` (with ``flac=True``) writes FLAC only: half the size, but reading it needs
    ``soundfile``."""
    if not (npz or flac):
        raise ValueError("write_dataset: npz or flac (or both)")
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    index = dict(index)
    index.setdefault("format", FORMAT)
    index.setdefault("version", VERSION)
    ints = {}
    for k, a in audios.items():
        ints[k] = np.round(np.clip(a, -1.0, 1.0) * 32767.0).astype(np.int16)
    if npz:
        np.savez_compressed(d / "audio.npz", **ints)
    elif (d / "audio.npz").exists():
        (d / "audio.npz").unlink()
    if flac:
        import soundfile as sf
        (d / "flac").mkdir(exist_ok=True)
        for old in (d / "flac").glob("*.flac"):
            old.unlink()
        for ex in index["examples"]:
            ex["file"] = f"flac/{ex['id']}.flac"
            sf.write(str(d / ex["file"]), ints[ex["id"]], int(index["sample_rate"]),
                     subtype="PCM_16")
    else:
        for ex in index["examples"]:
            ex.setdefault("file", None)
    with open(d / "index.json", "w") as f:
        json.dump(index, f, indent=1)


# ----------------------------------------------------------------------------------------------
# Loudness (A-weighted RMS), shared by the recordings builder and the evaluation

def a_weighting_db(freqs: np.ndarray) -> np.ndarray:
    """IEC 61672 A-weighting in dB (0 dB at 1 kHz)."""
    f2 = np.asarray(freqs, dtype=np.float64) ** 2
    ra = (12194.0 ** 2 * f2 ** 2) / ((f2 + 20.6 ** 2) * np.sqrt((f2 + 107.7 ** 2) * (f2 + 737.9 ** 2))
                                     * (f2 + 12194.0 ** 2))
    with np.errstate(divide="ignore"):
        return 20.0 * np.log10(np.maximum(ra, 1e-30)) + 2.0


def loudness_db(audio: np.ndarray, sample_rate: int = spec.SAMPLE_RATE, hop: int = spec.HOP,
                n_fft: int = 1024, floor_db: float = -120.0) -> np.ndarray:
    """A-weighted RMS level in dB (re full scale 1.0) per frame ``[ceil(len/hop)]``.

    Frame k is a Hann window of ``n_fft`` samples centred on the middle of the frame's samples
    ``[k*hop, (k+1)*hop)`` (zero padding outside the signal). By Parseval the A-weighted mean
    square of the windowed frame is ``sum_f w_A(f)^2 |X(f)|^2 / (n_fft * sum(win^2))`` (rfft bins
    other than DC and Nyquist counted twice), so a 1 kHz sine of amplitude a reads
    ``20*log10(a/sqrt(2))`` dB.
    """
    x = np.asarray(audio, dtype=np.float64)
    T = max(1, -(-len(x) // hop))
    pad = n_fft // 2
    xp = np.concatenate([np.zeros(pad), x, np.zeros(T * hop - len(x) + n_fft)])
    starts = np.arange(T) * hop + hop // 2  # centre in xp coordinates is start + pad
    idx = starts[:, None] + np.arange(n_fft)[None, :]
    win = np.hanning(n_fft + 1)[:-1]
    X = np.fft.rfft(xp[idx] * win, axis=1)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    w = 10.0 ** (a_weighting_db(freqs) / 10.0)  # power weights
    p = np.abs(X) ** 2 * w
    p[:, 1:-1] *= 2.0
    ms = p.sum(1) / (n_fft * np.sum(win ** 2))
    return np.maximum(10.0 * np.log10(np.maximum(ms, 1e-30)), floor_db)
