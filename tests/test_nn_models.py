"""The shipped neural instruments in models/: load, sizes, sources, every backbone selectable."""

import json
from pathlib import Path

import numpy as np
import pytest

from rtsynth import spec
from rtsynth.nn.io import load_neural_instrument

MODELS = Path(__file__).resolve().parent.parent / "models"
INSTRUMENTS = {"flute": 73, "violin": 40, "trumpet": 56, "cello": 42}
FOLDERS = sorted(p for p in MODELS.glob("*") if (p / "config.json").exists()) if MODELS.is_dir() else []

pytestmark = pytest.mark.skipif(not FOLDERS, reason="no shipped models")


def test_every_instrument_and_backbone_is_shipped():
    names = {p.name for p in FOLDERS}
    for inst in INSTRUMENTS:
        assert inst in names
        for bb in ("gru", "cnn", "attention"):
            assert f"{inst}-{bb}" in names
    assert "morph" in names


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_shipped_model_loads_and_steps(folder):
    size = sum(f.stat().st_size for f in folder.iterdir())
    assert size <= 10 * 1024 * 1024
    cfg = json.loads((folder / "config.json").read_text())
    assert (folder / "README.md").exists() and (folder / "model.safetensors").exists()
    src = cfg["source"]
    if src.get("type") == "recordings":  # trained on a folder of recordings (no MIDI labels)
        assert src["files"] and "pitch_tracker" in src and src.get("origin")
        assert "## Data" in (folder / "README.md").read_text()
    else:
        assert "program" in src and src["soundfont"] == "FluidR3_GM.sf2" and src["bank"] == 0
    inst_name = folder.name.split("-")[0]
    if inst_name in INSTRUMENTS:
        assert src["program"] == INSTRUMENTS[inst_name] == cfg["program"]
        assert cfg["training"]["gan"] is False
    inst = load_neural_instrument(folder)
    inst.allocate(8)
    inst.warmup()
    if inst.has_timbre:
        inst.set_timbre(0.5)
    feats = spec.note_features(60, 67.0, 100, 40 * spec.HOP)
    if inst.n_features == spec.N_FEATURES_V2:      # dynamics from the velocity, CC74 64
        from rtsynth.data import midi_features_v2
        feats = midi_features_v2(60, 67.0, 100, 40 * spec.HOP)
    h = np.zeros((1, spec.N_HARMONICS), np.float32)
    g = np.zeros((1, spec.N_NOISE_BANDS), np.float32)
    amps = []
    for t in range(60):
        inst.step(feats[t:t + 1], np.array([3]), h, g)
        assert np.isfinite(h).all() and np.isfinite(g).all()
        amps.append(h.sum())
    # a trained instrument sounds while the key is held and fades after release
    assert max(amps[10:40]) > 0.01
    assert amps[-1] < max(amps[10:40])


def test_morph_path_covers_the_four_instruments():
    cfg = json.loads((MODELS / "morph" / "config.json").read_text())
    assert cfg["timbre"]["path"] == list(INSTRUMENTS)
    assert sorted(cfg["source"]["program"]) == sorted(INSTRUMENTS.values())


def test_morph_moves_smoothly_between_instruments():
    """Rendering one note along the timbre path: neighbouring positions sound alike, the ends
    differ; a sampled timbre is a valid sound too."""
    inst = load_neural_instrument(MODELS / "morph")
    feats = spec.note_features(50, 62.0, 100, None)

    def spectrum(pos=None, seed=None):
        if seed is None:
            inst.set_timbre(pos)
        else:
            inst.sample_timbre(seed)
        h, g = inst.render_note(feats)
        return np.log(h[20:].mean(0) + 1e-6)

    specs = [spectrum(p) for p in np.linspace(0, 1, 31)]
    steps = [np.abs(a - b).mean() for a, b in zip(specs, specs[1:])]
    ends = np.abs(specs[0] - specs[-1]).mean()
    assert ends > 0.2
    assert max(steps) < 0.35 * ends
    s = spectrum(seed=7)
    assert np.isfinite(s).all()
