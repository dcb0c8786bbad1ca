"""Datasets: format, loader, loudness, held-out split, and a tiny aligned FluidSynth render."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from rtsynth.dataset import build as bd  # noqa: E402
from rtsynth import spec  # noqa: E402
from rtsynth.data import (a_weighting_db, load_dataset, loudness_db, pitch_curve,  # noqa: E402
                          write_dataset)

SR, HOP = spec.SAMPLE_RATE, spec.HOP
HAVE_FS = shutil.which("fluidsynth") is not None and Path(bd.SF2).exists()


def test_loudness_of_sines():
    t = np.arange(SR) / SR
    L = loudness_db(0.5 * np.sin(2 * np.pi * 1000 * t))
    assert abs(np.median(L) - 20 * np.log10(0.5 / np.sqrt(2))) < 0.1
    L100 = loudness_db(0.5 * np.sin(2 * np.pi * 100 * t))
    # at 100 Hz the 1024-point window's main lobe spans bins where the weight varies: ~0.8 dB
    assert abs(np.median(L100 - L) - a_weighting_db(100.0)) < 1.0
    assert abs(a_weighting_db(100.0) + 19.1) < 0.1 and abs(a_weighting_db(1000.0)) < 0.01
    assert len(loudness_db(np.zeros(1000))) == -(-1000 // HOP)


def test_pitch_curve_steps_at_frames():
    pc = pitch_curve(60, [[3, 0.5], [0, -1.0], [10, 0.0]], 12)
    assert list(pc) == [59, 59, 59, 60.5, 60.5, 60.5, 60.5, 60.5, 60.5, 60.5, 60, 60]


def test_roundtrip_and_padding(tmp_path):
    rng = np.random.default_rng(0)
    a = (0.1 * rng.standard_normal(1000)).astype(np.float32)  # not a multiple of hop
    ex = dict(id="e0", split="train", kind="bend", pitch=62, velocity=90, release_sample=600,
              n_samples=1000, bend=[[2, 1.0]])
    ex2 = dict(ex, id="e1", split="test", kind="recording", bend=[],
               pitch_curve=[62.0, 62.1, 62.2])
    write_dataset(tmp_path / "x", dict(sample_rate=SR, hop=HOP, name="x",
                                       source=dict(type="soundfont", program=7),
                                       examples=[ex]),
                  {"e0": a, "e1": a})
    assert (tmp_path / "x" / "audio.npz").exists()
    assert load_dataset(tmp_path / "x", split="nope") == []
    (e,) = load_dataset(tmp_path / "x", split="train")
    T = 6
    assert e.audio.dtype == np.float32 and len(e.audio) == T * HOP and e.n_frames == T
    assert np.max(np.abs(e.audio[:1000] - a)) < 1e-4 and np.all(e.audio[1000:] == 0)
    assert list(e.pitch_frames) == [62, 62, 63, 63, 63, 63]
    assert np.allclose(e.f0, np.repeat(spec.midi_to_hz(e.pitch_frames), HOP))
    assert np.array_equal(e.features, spec.note_features(T, e.pitch_frames, 90, 600))
    assert e.program == 7 and e.name == "x" and e.velocity == 90 and e.release_sample == 600
    # a tracked pitch curve (recordings) is used as is, held after its end
    with open(tmp_path / "x" / "index.json") as f:
        import json
        idx = json.load(f)
    idx["examples"] = [ex, ex2]
    with open(tmp_path / "x" / "index.json", "w") as f:
        json.dump(idx, f)
    (e1,) = load_dataset(tmp_path / "x", split="test")
    assert np.allclose(e1.pitch_frames, [62.0, 62.1, 62.2, 62.2, 62.2, 62.2])


def test_flac_only_roundtrip(tmp_path):
    pytest.importorskip("soundfile")
    a = (0.25 * np.sin(np.arange(3 * HOP) * 0.05)).astype(np.float32)
    ex = dict(id="e0", split="train", kind="note", pitch=60, velocity=64, release_sample=HOP,
              n_samples=3 * HOP, bend=[])
    idx = dict(sample_rate=SR, hop=HOP, name="f", source={}, examples=[ex])
    write_dataset(tmp_path / "f", idx, {"e0": a}, flac=True, npz=False)
    assert not (tmp_path / "f" / "audio.npz").exists()
    (e,) = load_dataset(tmp_path / "f")
    assert np.max(np.abs(e.audio - a)) < 1e-4


@pytest.mark.parametrize("name", list(bd.INSTRUMENTS))
def test_plan_holds_out_pitches_and_velocities(name):
    notes, meta = bd.plan_notes(name)
    train = [n for n in notes if n["split"] == "train"]
    test = [n for n in notes if n["split"] == "test"]
    assert len(test) >= 8 and len(train) >= 50
    assert not {n["pitch"] for n in train} & {n["pitch"] for n in test}
    assert not {n["velocity"] for n in train} & {n["velocity"] for n in test}
    assert {n["kind"] for n in train} == {"note", "vibrato", "bend"}
    _, lo, hi = bd.INSTRUMENTS[name]
    assert all(lo <= n["pitch"] <= hi for n in notes)


@pytest.mark.skipif(not HAVE_FS, reason="fluidsynth / FluidR3_GM not installed")
def test_fluidsynth_render_is_onset_aligned_and_bends_are_exact(tmp_path):
    n = 150
    ramp = [(k, 2.0 * min(1.0, max(0.0, (k - 30) / 60))) for k in range(n)]  # 0 -> +2 st
    notes = [dict(pitch=62, velocity=100, held=60, split="train", kind="note"),
             dict(pitch=62, velocity=90, held=n, split="test", kind="bend", bend=ramp),
             dict(pitch=70, velocity=40, held=20, split="train", kind="note")]
    idx = bd.render_instrument("clarinet", str(tmp_path), notes=notes, quiet=True)
    assert idx["source"]["program"] == 71 and idx["sample_rate"] == SR
    assert idx["alignment"]["max_onset_delay_samples"] <= bd.ONSET_TOL
    exs = load_dataset(tmp_path / "clarinet")
    assert [e.split for e in exs] == ["train", "test", "train"]
    for e, nt in zip(exs, notes):
        nz = np.flatnonzero(e.audio)
        assert nz[0] <= bd.ONSET_TOL  # sound starts at the onset sample
        assert e.release_sample == nt["held"] * HOP
        assert len(e.audio) % HOP == 0 and len(e.audio) >= e.release_sample
        L = loudness_db(e.audio)
        # the tail is kept, and decays after the release
        assert L[-1] < L.max() - 30
    from rtsynth.eval import metrics as ev
    e = exs[1]
    assert e.pitch_frames[0] == 62 and abs(e.pitch_frames[100] - 64) < 1e-3
    L = loudness_db(e.audio)
    sel = (L > L.max() - 20) & (np.arange(e.n_frames) * HOP < e.release_sample - 4 * HOP)
    dev = np.abs(1200 * np.log2(ev.track_f0(e.audio, e.pitch_frames)
                                / spec.midi_to_hz(e.pitch_frames)))[sel]
    assert np.median(dev) < 6, np.median(dev)
    # the same audio against the curve shifted by 8 frames (32 ms) is clearly worse
    shifted = np.concatenate([np.full(8, 62.0), e.pitch_frames[:-8]])
    dev2 = np.abs(1200 * np.log2(ev.track_f0(e.audio, shifted)
                                 / spec.midi_to_hz(shifted)))[sel]
    assert np.mean(dev2) > 2 * np.mean(dev) + 5
