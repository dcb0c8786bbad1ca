"""The morph model on contract v2 (issue 12 item 6): its dynamics and brightness inputs act on
every instrument of its timbre path as they do on the single instruments (a swell raises the
level and, where the source has velocity layers, brightens as they do; CC74 brightens), through
the engine's controllers too, and a tiny 9-feature VAE trains and exports on the CPU."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from rtsynth import data as rd
from rtsynth import spec
from rtsynth.eval.common import select_timbre
from rtsynth.eval.melody import brightness_response, render_features, swell_response
from rtsynth.nn.io import load_neural_instrument

ROOT = Path(__file__).resolve().parents[1]
MORPH = ROOT / "models" / "morph"
SF2 = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
HAVE_FS = shutil.which("fluidsynth") is not None and SF2.exists()


@pytest.fixture(scope="module")
def morph():
    if not (MORPH / "config.json").exists():
        pytest.skip("models/morph not shipped")
    return load_neural_instrument(MORPH), json.loads((MORPH / "config.json").read_text())


def test_morph_is_contract_v2(morph):
    inst, cfg = morph
    assert inst.n_features == spec.N_FEATURES_V2 == cfg["architecture"]["n_features"]
    assert cfg["training"]["config"]["vae"] is True
    assert cfg["timbre"]["path"] == ["flute", "violin", "trumpet", "cello"]


@pytest.mark.parametrize("name", ["flute", "violin", "trumpet", "cello"])
def test_morph_swell_raises_level_and_cc74_brightens(morph, name):
    """At each instrument of the path: dynamics 30/127 -> 1 raise the level by >= 10 dB (the
    issue's number) and never darken much (the sources without layers stay within 12 %);
    brightness 0 -> 1 raises the centroid."""
    inst, cfg = morph
    select_timbre(inst, cfg, name)
    sw = swell_response(inst, [62, 69])
    assert sw["level_rise_db"] >= 10.0, sw
    assert sw["log_centroid_rise"] > np.log(0.88), sw
    br = brightness_response(inst, [62, 69])
    assert br["log_centroid_change"] > 0.3, br


def test_morph_trumpet_swell_brightens_as_its_velocity_layers(morph):
    """FluidR3's trumpet is brighter played loud (velocity 40 -> 120); at the trumpet on the
    morph's path a swell brightens at least half as much in log centroid (issue 12 item 2). The
    source's rise is measured with FluidSynth when it is here, else the card's number."""
    inst, cfg = morph
    card = cfg["metrics"]["swell"]["trumpet"]
    pitches = card["pitches"]
    if HAVE_FS:
        from rtsynth.eval.melody import source_layers
        src = source_layers(56, pitches)["log_centroid_rise"]
    else:
        src = card["source_log_centroid_rise"]
    assert src > 0.2
    select_timbre(inst, cfg, "trumpet")
    sw = swell_response(inst, pitches)
    assert sw["log_centroid_rise"] >= 0.5 * src, (sw, src)
    assert sw["log_centroid_rise"] >= 0.99 * card["log_centroid_rise"] - 0.01
    assert sw["level_rise_db"] >= 10.0


def test_morph_dynamics_column_direction(morph):
    """The dynamics input alone (velocity column fixed): louder asks for more level, softer for
    less, on a held note at the path's middle."""
    inst, _ = morph
    inst.set_timbre(0.5)
    T = 150
    lv = []
    for d in (0.25, 0.6, 1.0):
        f = rd.midi_features_v2(T, 65.0, 80.0, None, dynamics=d)
        y = render_features(inst, f, 65.0)
        lv.append(float(np.median(rd.loudness_db(y)[60:140])))
    assert lv[0] + 3.0 < lv[1] and lv[1] + 3.0 < lv[2], lv


def test_engine_cc11_and_cc74_move_the_morph(morph):
    """Through the engine, as on a single instrument: CC11 down makes the morph's note quieter,
    CC74 up brighter (the features it steps get the controllers' values)."""
    from rtsynth.engine import Engine

    inst, _ = morph
    inst.set_timbre(2 / 3)          # trumpet
    eng = Engine(inst, block=128, n_slots=4, master=False)
    eng.push(10, bytes((0x90, 67, 100)))

    def block_stats(n):
        out = np.concatenate([eng.render()[:, 0].copy() for _ in range(n)])
        tail = out[len(out) // 2:].astype(np.float64)
        c = rd.spectral_centroid(tail)[4:-4]
        return 20 * np.log10(np.sqrt(np.mean(tail ** 2)) + 1e-12), float(np.median(c))

    l0, c0 = block_stats(120)
    eng.push(eng.time, bytes((0xB0, 11, 30)))
    l1, _ = block_stats(120)
    eng.push(eng.time, bytes((0xB0, 11, 127)))
    eng.push(eng.time, bytes((0xB0, 74, 127)))
    l2, c2 = block_stats(120)
    assert l1 < l0 - 6.0, (l0, l1)
    assert c2 > 1.2 * c0, (c0, c2)


def test_tiny_v2_morph_training_on_cpu(tmp_path):
    from rtsynth.train.core import TrainConfig, train_and_export
    from rtsynth.train.dataset import synthetic_dataset

    a = synthetic_dataset(tmp_path / "a", name="a", n_train=4, n_test=1, seconds=0.4)
    b = synthetic_dataset(tmp_path / "b", name="b", n_train=4, n_test=1, seconds=0.4,
                          seed=1)
    cfg = TrainConfig(data=[str(a), str(b)], out=str(tmp_path / "m"), backbone="cnn", steps=3,
                      batch=2, crop=16, tiny=True, device="cpu", quiet=True, vae=True,
                      run_dir=str(tmp_path / "r"), n_features=9, tilt_fraction=0.5,
                      velocity_dropout=0.5)
    out = train_and_export(cfg)
    conf = json.loads((out / "config.json").read_text())
    assert conf["architecture"]["n_features"] == 9 and conf["architecture"]["z_dim"] > 0
    assert len(conf["timbre"]["path"]) == 2
    inst = load_neural_instrument(out)
    assert inst.n_features == 9 and inst.has_timbre
    inst.set_timbre(1.0)
    y = render_features(inst, rd.midi_features_v2(50, 67.0, 100.0, None), 67.0)
    assert np.isfinite(y).all() and np.abs(y).max() < 1.0


@pytest.mark.skipif(not HAVE_FS, reason="fluidsynth / FluidR3_GM.sf2 not installed")
@pytest.mark.parametrize("name", ["flute", "trumpet"])
def test_morph_meets_its_check_set(morph, name):
    """The card's numbers on the first held-out notes of the dynamics set (regenerated with
    FluidSynth), the timbre at the instrument on the path."""
    from rtsynth.eval.checkset import check_notes
    from rtsynth.eval.melody import for_engine
    from rtsynth.eval.metrics import mss_distance, render_step

    _, cfg = morph
    card = cfg["metrics"]["check_set_timbre"]
    inst = for_engine(load_neural_instrument(MORPH))
    select_timbre(inst, cfg, name)
    got = [float(mss_distance(ex.audio.astype(np.float64), render_step(inst, ex)))
           for ex in check_notes(name, card["notes"])]
    for g, want in zip(got, card["mss_distance"][name]):
        assert g <= want * 1.01 + 1e-3, (got, card["mss_distance"][name])


@pytest.mark.skipif(not HAVE_FS, reason="fluidsynth / FluidR3_GM.sf2 not installed")
def test_morph_flute_onsets_no_later_than_the_source():
    """Issue 12 item 5 at the flute on the path, through the engine: the held-out notes whose
    onsets came late before the onset fix (pitches 62, 66: up to +4.1 ms) and those a two-sided
    attack term made late (86, 90, 94), regenerated with FluidSynth, start no later than the
    source's + 2 ms."""
    import tempfile

    from rtsynth.data import load_dataset
    from rtsynth.dataset import build as bd
    from rtsynth.eval.common import render_engine
    from rtsynth.eval.melody import for_engine, onset_errors_ms

    notes, _ = bd.plan_dynamics("flute")
    held = [x for x in notes if x["split"] == "test" and x["kind"] == "note"
            and x["pitch"] in (62, 66, 86, 90, 94)]
    assert len(held) >= 5
    with tempfile.TemporaryDirectory() as tmp:
        bd.render_instrument("flute", tmp, notes=held, quiet=True, float32=True)
        exs = load_dataset(Path(tmp) / "flute")
    inst = for_engine(load_neural_instrument(MORPH))
    select_timbre(inst, json.loads((MORPH / "config.json").read_text()), "flute")
    err = onset_errors_ms([(ex.audio, render_engine(inst, ex)) for ex in exs])
    assert err.max() <= 2.0, list(zip([ex.velocity for ex in exs], err.round(2)))
