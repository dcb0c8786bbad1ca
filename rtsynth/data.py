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
            a16 = npz[meta["id"]]
            audio = a16.astype(np.float32) if a16.dtype.kind == "f" else \
                a16.astype(np.float32) / 32767.0
        else:
            import soundfile as sf
            from .train.inputs import inside     # the index names files in its folder only
            audio, fsr = sf.read(str(inside(d, meta["file"])), dtype="float32", always_2d=True)
            audio = audio.mean(1)
            if fsr != sr:
                raise ValueError(f"{meta['file']}: sample rate {fsr} != {sr}")
        out.append(example_from_arrays(audio, meta, source, name, hop, sr))
    return out


def write_dataset(out_dir: str | os.PathLike, index: dict, audios: dict[str, np.ndarray],
                  flac: bool = False, npz: bool = True, float32: bool = False) -> None:
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
        # float32: the renderer's samples as they are (int16's -96 dBFS quantisation floor,
        # white up to 24 kHz, is not the instrument's: evaluation references use float32)
        np.savez_compressed(d / "audio.npz", **({k: np.asarray(a, np.float32)
                                                  for k, a in audios.items()} if float32 else ints))
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


# ----------------------------------------------------------------------------------------------
# Contract v2 features measured from the audio: dynamics (A-weighted loudness on the velocity
# scale) and brightness (spectral centroid relative to what is typical at the pitch and dynamics)

#: seconds after the onset from which the dynamics / brightness of a note are measured (the
#: calibration measures each dataset's own, this is the default); before it (the attack) the
#: first measured value is held, as at play time a note starts at the dynamics it was struck with
ATTACK_HOLD_S = 0.12
#: smoothing of the measured curves (frames, moving average)
SMOOTH_FRAMES = 9
#: brightness units per octave of centroid ratio: CC74 127 asks for about twice the typical
#: centroid, CC74 0 for about half
BRIGHTNESS_PER_OCTAVE = 0.5
#: the velocity curve assumed when a dataset has too few velocities to calibrate one
#: (recordings): loudness = 40 log10(v / 127) dB re the loudest note
FALLBACK_DB_PER_DECADE = 40.0


def _smooth(x: np.ndarray, n: int = SMOOTH_FRAMES) -> np.ndarray:
    if n <= 1 or len(x) < 2:
        return np.asarray(x, dtype=np.float64)
    k = np.ones(n) / n
    xp = np.concatenate([np.full(n // 2, x[0]), x, np.full(n - 1 - n // 2, x[-1])])
    return np.convolve(xp, k, mode="valid")[: len(x)]


def held_frames(n_frames: int, release_sample: int, hop: int = spec.HOP,
                sample_rate: int = spec.SAMPLE_RATE, hold_s: float | None = None
                ) -> tuple[int, int]:
    """``(a, b)``: the frames ``[a, b)`` of a note where its dynamics are measured: from
    ``hold_s`` (the calibration's attack time, default :data:`ATTACK_HOLD_S`) after the onset to
    the release (at least one frame). Before ``a`` the value at ``a`` is held, from ``b`` on the
    value at ``b - 1``: the player's dynamics do not follow the attack or the release tail,
    which are the instrument's own."""
    hold_s = ATTACK_HOLD_S if hold_s is None else hold_s
    b = int(np.clip(-(-int(release_sample) // hop), 1, n_frames))
    a = int(min(round(hold_s * sample_rate / hop), b - 1))
    return max(a, 0), b


def _hold(curve: np.ndarray, a: int, b: int) -> np.ndarray:
    out = np.array(curve, dtype=np.float64)
    out[:a] = out[a]
    out[b:] = out[b - 1]
    return out


def spectral_centroid(audio: np.ndarray, sample_rate: int = spec.SAMPLE_RATE,
                      hop: int = spec.HOP, n_fft: int = 1024, fmax: float = 16000.0
                      ) -> np.ndarray:
    """Magnitude-weighted spectral centroid in Hz per frame (the frames of :func:`loudness_db`)."""
    x = np.asarray(audio, dtype=np.float64)
    T = max(1, -(-len(x) // hop))
    pad = n_fft // 2
    xp = np.concatenate([np.zeros(pad), x, np.zeros(T * hop - len(x) + n_fft)])
    idx = (np.arange(T) * hop + hop // 2)[:, None] + np.arange(n_fft)[None, :]
    win = np.hanning(n_fft + 1)[:-1]
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    keep = (freqs > 20.0) & (freqs < fmax)
    out = np.empty(T)
    for s in range(0, T, 2048):
        X = np.abs(np.fft.rfft(xp[idx[s:s + 2048]] * win, axis=1))[:, keep]
        out[s:s + 2048] = (X @ freqs[keep]) / np.maximum(X.sum(1), 1e-20)
    return out


def _note_level(ex: Example, loud: np.ndarray, hold_s: float | None = None) -> float:
    a, b = held_frames(ex.n_frames, ex.release_sample, hold_s=hold_s)
    seg = loud[a:b]
    return float(np.median(seg)) if len(seg) else float(loud.max())


def _plain(ex: Example) -> bool:
    """A single note at one dynamic (no expression controller, no recording)."""
    return ex.kind in ("note", "vibrato", "bend") and not ex.meta.get("expression")


def is_plain(ex: Example) -> bool:
    """The note was struck at its velocity and no controller moved its loudness."""
    return _plain(ex)


def calibrate(examples: list[Example]) -> dict:
    """The dataset's calibration of the v2 features, from its plain training notes.

    dynamics: the A-weighted level of a note held at velocity v and pitch p is modelled as
    ``offset(p) + gain(v)`` (least squares over the notes; ``gain(127) = 0``, made monotone);
    a measured level L at pitch p is then the velocity ``gain^-1(L - offset(p))``.
    brightness: ``log2(centroid / f0)`` over the held frames of all the notes, fitted by a
    quadratic in (pitch, dynamics): what is typical at a pitch and a dynamic.
    """
    notes = [ex for ex in examples if _plain(ex) and ex.split == "train"]
    # recordings (no plain notes) carry no struck velocities: their velocity was derived from
    # each note's own peak level (the importer's 40 dB per decade), so the velocity curve is
    # that one; a least-squares fit over their (nearly all distinct) velocities is
    # underdetermined and on a few dozen notes maps louder notes to lower dynamics
    labelled = bool(notes)
    if not notes:
        notes = [ex for ex in examples if ex.split == "train"] or list(examples)
    if not notes:
        raise ValueError("calibrate: no examples")
    louds = {id(ex): loudness_db(ex.audio) for ex in notes}
    # the attack time: when a plain note held >= 0.6 s first comes within 3 dB of its level
    # over the second half of its hold (at most the flat start of a swell, SWELL_FLAT_S 0.35 s)
    ts = []
    for ex in notes:
        b = ex.release_sample // spec.HOP
        if b * spec.HOP >= 0.6 * spec.SAMPLE_RATE:
            Lx = louds[id(ex)]
            ref = float(np.median(Lx[b // 2: b]))
            ts.append(int(np.argmax(_smooth(Lx[:b], 5) >= ref - 3.0)) * spec.HOP / spec.SAMPLE_RATE)
    hold_s = float(np.clip(np.median(ts), 0.04, 0.34)) if ts else ATTACK_HOLD_S
    L = np.array([_note_level(ex, louds[id(ex)], hold_s) for ex in notes])
    P = np.array([float(np.median(ex.pitch_frames)) for ex in notes])
    V = np.array([int(ex.velocity) for ex in notes])
    vels = np.unique(V)
    pitches = np.unique(np.round(P).astype(int))
    if len(vels) >= 3 and labelled:
        g = {int(v): 0.0 for v in vels}
        off = {int(p): 0.0 for p in pitches}
        pi = np.round(P).astype(int)
        for _ in range(20):  # alternating least squares: L = off[p] + g[v]
            for p in off:
                sel = pi == p
                off[p] = float(np.mean(L[sel] - np.array([g[int(v)] for v in V[sel]])))
            for v in g:
                sel = V == v
                g[v] = float(np.mean(L[sel] - np.array([off[int(p)] for p in pi[sel]])))
            top = g[int(vels[-1])]
            g = {v: x - top for v, x in g.items()}
            off = {p: x + top for p, x in off.items()}
        gv = np.maximum.accumulate(np.array([g[int(v)] for v in vels]))
        if vels[-1] < 127:  # extend to 127 along the last slope
            s = (gv[-1] - gv[-2]) / max(vels[-1] - vels[-2], 1)
            vels = np.append(vels, 127)
            gv = np.append(gv, gv[-1] + s * (127 - vels[-2]))
            top = gv[-1]
            gv -= top
            off = {p: x + top for p, x in off.items()}
        vel_curve = {"velocity": [int(v) for v in vels], "gain_db": [round(float(x), 3) for x in gv]}
    else:
        vv = np.array([1, 8, 16, 32, 64, 96, 127])
        gv = FALLBACK_DB_PER_DECADE * np.log10(vv / 127.0)
        vel_curve = {"velocity": [int(v) for v in vv], "gain_db": [round(float(x), 3) for x in gv]}
        pi = np.round(P).astype(int)
        gl = FALLBACK_DB_PER_DECADE * np.log10(np.maximum(V, 1) / 127.0)
        off = {int(p): float(np.mean(L[pi == p] - gl[pi == p])) for p in pitches}
    cal = {"dynamics": {"pitch": [int(p) for p in sorted(off)],
                        "offset_db": [round(off[p], 3) for p in sorted(off)], **vel_curve,
                        "loudness": "rtsynth.data.loudness_db (A-weighted RMS, n_fft 1024)",
                        "attack_hold_s": round(hold_s, 4), "smooth_frames": SMOOTH_FRAMES}}
    # brightness: typical log2(centroid / f0) at (pitch, dynamics)
    rows, ys, ws = [], [], []
    for ex in notes:
        a, b = held_frames(ex.n_frames, ex.release_sample, hold_s=hold_s)
        d = np.full(b - a, ex.velocity / 127.0)     # a plain note's dynamics (see below)
        c = spectral_centroid(ex.audio)[a:b]
        f0 = spec.midi_to_hz(ex.pitch_frames[a:b])
        lv = louds[id(ex)][a:b]
        ok = lv > lv.max() - 30.0
        rows.append(_bright_basis(ex.pitch_frames[a:b][ok], d[ok]))
        ys.append(np.log2(np.maximum(c[ok], 1.0) / f0[ok]))
        ws.append(np.full(int(ok.sum()), 1.0 / max(int(ok.sum()), 1)))
    X = np.concatenate(rows)
    y = np.concatenate(ys)
    w = np.sqrt(np.concatenate(ws))
    coef = np.linalg.lstsq(X * w[:, None], y * w, rcond=None)[0]
    # what the quadratic leaves at each pitch (the SoundFont's sample zones): the mean residual
    # of the notes there, so "typical" is the instrument's own at that pitch
    res: dict[int, list[float]] = {}
    for ex, Xr, yr in zip(notes, rows, ys):
        if len(yr):
            res.setdefault(int(round(float(np.median(ex.pitch_frames)))), []).append(
                float(np.mean(yr - Xr @ coef)))
    cal["brightness"] = {"basis": "1, q, q^2, d, d^2, q*d with q = (pitch - 60) / 24",
                         "coef": [round(float(c), 6) for c in coef],
                         "pitch": sorted(res),
                         "residual": [round(float(np.mean(res[p])), 5) for p in sorted(res)],
                         "per_octave": BRIGHTNESS_PER_OCTAVE, "default": spec.DEFAULT_BRIGHTNESS,
                         "centroid": "rtsynth.data.spectral_centroid / f0, log2"}
    return cal


def _bright_basis(pitch: np.ndarray, d: np.ndarray) -> np.ndarray:
    q = (np.asarray(pitch, dtype=np.float64) - 60.0) / 24.0
    d = np.asarray(d, dtype=np.float64)
    return np.stack([np.ones_like(q), q, q * q, d, d * d, q * d], axis=-1)


def typical_brightness(pitch: np.ndarray, d: np.ndarray, cal: dict) -> np.ndarray:
    """log2(centroid / f0) typical of the source at this pitch and dynamics."""
    c = cal["brightness"]
    out = _bright_basis(pitch, d) @ np.asarray(c["coef"], dtype=np.float64)
    if c.get("pitch"):
        out = out + np.interp(np.asarray(pitch, dtype=np.float64), c["pitch"], c["residual"])
    return out


def dynamics_from_loudness(loud_db: np.ndarray, pitch: np.ndarray, cal: dict) -> np.ndarray:
    """Measured A-weighted level (dB, per frame) at a pitch -> dynamics in [0, 1] (velocity
    scale: the velocity at which the source's notes have that level, / 127)."""
    c = cal["dynamics"]
    off = np.interp(np.asarray(pitch, dtype=np.float64), c["pitch"], c["offset_db"])
    x = np.asarray(loud_db, dtype=np.float64) - off
    v = np.asarray(c["velocity"], dtype=np.float64)
    g = np.asarray(c["gain_db"], dtype=np.float64)
    # strictly increasing for the inverse; linear extrapolation below the softest velocity
    g = g + np.arange(len(g)) * 1e-6
    out = np.interp(x, g, v)
    lo = x < g[0]
    if len(g) >= 2 and lo.any():
        s = (v[1] - v[0]) / max(g[1] - g[0], 1e-6)
        out[lo] = v[0] + (x[lo] - g[0]) * s
    return np.clip(out / 127.0, 0.0, 1.0)


def _padded(x: np.ndarray, T: int, fill: float) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)[:T]
    if len(x) < T:
        x = np.concatenate([x, np.full(T - len(x), x[-1] if len(x) else fill)])
    return x


def measured_dynamics(audio: np.ndarray, pitch_frames: np.ndarray, cal: dict) -> np.ndarray:
    """Per-frame dynamics of any audio by the absolute calibration (smoothed, not held)."""
    T = len(pitch_frames)
    loud = _padded(loudness_db(audio), T, -120.0)
    return _smooth(dynamics_from_loudness(loud, np.asarray(pitch_frames, np.float64)[:T], cal))


def expression_curves(audio: np.ndarray, pitch_frames: np.ndarray, release_sample: int,
                      cal: dict, n_frames: int | None = None, velocity: float | None = None,
                      plain: bool = False, plain_audio: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Dynamics and brightness ``[T]`` of one note measured from its audio (contract v2,
    columns 7 and 8): smoothed, held through the attack and after the release.

    dynamics: the measured A-weighted level mapped onto the velocity scale by the dataset's
    calibration (:func:`dynamics_from_loudness`). A ``plain`` note (struck at ``velocity``, no
    controller moved its loudness) is anchored to its velocity: its level at the end of the
    attack is what ``velocity`` gives, and its later decay is the instrument's own, not the
    player's, so its dynamics stay ``velocity / 127`` as a keyboard's do at play time.

    brightness: ``DEFAULT_BRIGHTNESS + BRIGHTNESS_PER_OCTAVE * log2(centroid / typical)``, where
    typical is the calibration's centroid at the pitch and dynamics (:func:`typical_brightness`)
    or, for a plain note given with its unprocessed ``plain_audio`` (a spectral-tilt
    augmentation of it), that note's own centroid; a plain note itself is the default.
    """
    T = len(pitch_frames) if n_frames is None else n_frames
    pf = _padded(pitch_frames, T, 60.0)
    a, b = held_frames(T, release_sample, hold_s=cal["dynamics"].get("attack_hold_s"))
    if plain and velocity is not None:
        d = np.full(T, float(velocity) / 127.0)
    else:
        d = _hold(measured_dynamics(audio, pf, cal), a, b)
    loud = _padded(loudness_db(audio), T, -120.0)
    cen = _padded(spectral_centroid(audio), T, 1.0)
    if plain and plain_audio is None:
        rel = np.zeros(T)
    else:
        if plain:
            typ = np.log2(np.maximum(_padded(spectral_centroid(plain_audio), T, 1.0), 1.0))
            rel = np.log2(np.maximum(cen, 1.0)) - typ
        else:
            rel = (np.log2(np.maximum(cen, 1.0) / spec.midi_to_hz(pf))
                   - typical_brightness(pf, d, cal))
        # only where the note sounds (the centroid of a near-silent frame is noise)
        quiet = loud < loud[a:b].max() - 30.0 if b > a else np.zeros(T, bool)
        rel = np.where(quiet, 0.0, rel)
        rel = _hold(_smooth(rel), a, b)
    bright = np.clip(spec.DEFAULT_BRIGHTNESS + BRIGHTNESS_PER_OCTAVE * rel, 0.0, 1.0)
    return np.clip(d, 0.0, 1.0).astype(np.float32), bright.astype(np.float32)


def features_v2(ex: Example, cal: dict, n_frames: int | None = None,
                pitch_frames: np.ndarray | None = None) -> np.ndarray:
    """Contract-v2 features ``[T, 9]`` of a training example: the v1 columns from its MIDI, the
    dynamics and brightness measured from its audio (:func:`expression_curves`; a plain note's
    tilted copy carries ``meta["plain_audio"]``). The velocity column is the dynamics at the
    note-on (what a keyboard's velocity asks for)."""
    T = ex.n_frames if n_frames is None else n_frames
    pf = ex.pitch_frames if pitch_frames is None else pitch_frames
    if len(pf) < T:
        pf = np.concatenate([pf, np.full(T - len(pf), pf[-1])])
    f = np.zeros((T, spec.N_FEATURES_V2), np.float32)
    d, b = expression_curves(ex.audio, ex.pitch_frames, ex.release_sample, cal,
                             velocity=ex.velocity, plain=_plain(ex),
                             plain_audio=ex.meta.get("plain_audio"))
    d = np.concatenate([d, np.full(max(T - len(d), 0), d[-1])])[:T]
    b = np.concatenate([b, np.full(max(T - len(b), 0), b[-1])])[:T]
    f[:, : spec.N_FEATURES] = spec.note_features(T, pf[:T], 127.0 * float(d[0]),
                                                  int(ex.release_sample))
    f[:, spec.F_DYNAMICS] = d
    f[:, spec.F_BRIGHTNESS] = b
    return f


def midi_features_v2(n_frames: int, pitch: np.ndarray | float, velocity: float,
                     release_sample: int | None, dynamics: np.ndarray | float | None = None,
                     brightness: np.ndarray | float = spec.DEFAULT_BRIGHTNESS) -> np.ndarray:
    """Contract-v2 features ``[T, 9]`` as the engine makes them from MIDI: dynamics
    ``velocity / 127`` unless given (per frame), brightness CC74 / 127 (default 64)."""
    f = np.zeros((n_frames, spec.N_FEATURES_V2), np.float32)
    f[:, : spec.N_FEATURES] = spec.note_features(n_frames, pitch, velocity, release_sample)
    f[:, spec.F_DYNAMICS] = velocity / 127.0 if dynamics is None else dynamics
    f[:, spec.F_BRIGHTNESS] = brightness
    return f


def source_bandwidth(examples: list[Example], below_db: float = 90.0, n_fft: int = 2048) -> float:
    """The source's bandwidth in Hz: the highest frequency where the long-term average power
    spectrum of the examples comes within ``below_db`` of its peak (FluidR3's samples hold
    nothing above 16-22 kHz, depending on the instrument)."""
    freqs = np.fft.rfftfreq(n_fft, 1.0 / spec.SAMPLE_RATE)
    acc = np.zeros(len(freqs))
    win = np.hanning(n_fft)
    for ex in examples:
        x = np.asarray(ex.audio, dtype=np.float64)
        k = len(x) // n_fft
        if k:
            acc += (np.abs(np.fft.rfft(x[: k * n_fft].reshape(k, n_fft) * win, axis=1)) ** 2).sum(0)
    s = 10.0 * np.log10(acc + 1e-30)
    s = _smooth(s - s.max(), 9)
    above = np.nonzero(s > -below_db)[0]
    return float(freqs[above.max()]) if len(above) else float(spec.SAMPLE_RATE / 2)
