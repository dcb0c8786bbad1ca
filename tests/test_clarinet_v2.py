"""The contract-v2 clarinet from recordings (issue 12 item 6): the recordings importer's notes
get dynamics and brightness measured from their audio, a tiny 9-feature model trains on them on
the CPU, and the shipped v2 clarinet's (models/clarinet, the GM clarinet) dynamics and brightness inputs act in the documented
directions (a swell louder and brighter at least half as much as the source's velocity layers,
CC74 brighter), through the engine's controllers too."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from rtsynth import data as rd
from rtsynth import spec
from rtsynth.dataset import build as bd
from rtsynth.eval.melody import brightness_response, swell_response
from rtsynth.nn.io import load_neural_instrument

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "clarinet"
HAVE_FS = shutil.which("fluidsynth") is not None and Path(bd.SF2).exists()


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """One FluidSynth clarinet phrase given to the importer as a recording (YIN: fast)."""
    if not HAVE_FS:
        pytest.skip("fluidsynth / FluidR3_GM.sf2 not installed")
    tmp = tmp_path_factory.mktemp("rec")
    bd.render_phrases(71, str(tmp / "src"), n=1, n_notes=8, seed=4)
    (tmp / "takes").mkdir()
    shutil.copy(tmp / "src" / "phrase00.wav", tmp / "takes" / "phrase00.wav")
    bd.build_from_recordings(str(tmp / "takes"), str(tmp / "ds"), "mine", tracker="yin",
                             quiet=True)
    return tmp / "ds"


def test_recorded_notes_get_dynamics_from_their_loudness(recorded):
    exs = rd.load_dataset(recorded)
    assert len(exs) >= 5 and all(e.kind == "recording" for e in exs)
    cal = rd.calibrate(exs)
    levels, dyn = [], []
    for ex in exs:
        f = rd.features_v2(ex, cal)
        assert f.shape == (ex.n_frames, spec.N_FEATURES_V2) and np.isfinite(f).all()
        d, b = f[:, spec.F_DYNAMICS], f[:, spec.F_BRIGHTNESS]
        assert (0 <= d).all() and (d <= 1).all() and (0 <= b).all() and (b <= 1).all()
        # the velocity column is the dynamics at the note-on, as a keyboard's velocity
        assert f[0, 1] == pytest.approx(d[0], abs=1e-6)
        a, e = rd.held_frames(ex.n_frames, ex.release_sample,
                              hold_s=cal["dynamics"]["attack_hold_s"])
        levels.append(float(np.median(rd.loudness_db(ex.audio)[a:e])))
        dyn.append(float(np.median(d[a:e])))
    # louder recorded notes ask for more dynamics (rank correlation)
    rl, rdyn = np.argsort(np.argsort(levels)), np.argsort(np.argsort(dyn))
    assert np.corrcoef(rl, rdyn)[0, 1] > 0.8, (levels, dyn)


def test_tiny_v2_training_on_recordings_on_cpu(recorded, tmp_path):
    from rtsynth.train import cli as tcli
    out = tmp_path / "m"
    assert tcli.main([str(recorded), "-o", str(out), "--run-dir", str(tmp_path / "r"), "--tiny",
                      "--backbone", "gru", "--batch", "2", "--crop", "32", "--steps", "3",
                      "--device", "cpu", "--quiet", "--features", "9", "--tilt", "0.3",
                      "--velocity-dropout", "0.5"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architecture"]["n_features"] == 9 and cfg["source"]["type"] == "recordings"
    inst = load_neural_instrument(out)
    h, g = inst.render_note(rd.midi_features_v2(40, 64.0, 90.0, 30 * spec.HOP))
    assert np.isfinite(h).all() and np.isfinite(g).all()


@pytest.fixture(scope="module")
def clarinet_v2():
    if not (MODEL / "config.json").exists():
        pytest.skip("models/clarinet not shipped")
    return load_neural_instrument(MODEL), json.loads((MODEL / "config.json").read_text())


def test_clarinet_v2_is_v2_from_recordings(clarinet_v2):
    inst, cfg = clarinet_v2
    assert inst.n_features == spec.N_FEATURES_V2
    assert cfg["source"]["type"] == "recordings" and cfg["program"] == 71
    assert cfg["training"]["data"] == ["data/clarinet-rec"]
    assert cfg["metrics"]["held_out_v2"]["melodies"]["melody_distance"] <= 0.91


def test_clarinet_v2_swell_brightens_as_the_source_layers(clarinet_v2):
    """A dynamics swell 30 -> 127 raises the level >= 10 dB and the log centroid at least half
    as much as FluidR3's clarinet from velocity 40 to 120 (measured with FluidSynth when it is
    here, else the card's number)."""
    inst, cfg = clarinet_v2
    card = cfg["metrics"]["swell"]
    if HAVE_FS:
        from rtsynth.eval.melody import source_layers
        src = source_layers(71, card["pitches"])["log_centroid_rise"]
    else:
        src = card["source"]["log_centroid_rise"]
    assert src > 0.02
    sw = swell_response(inst, card["pitches"])
    assert sw["level_rise_db"] >= 10.0, sw
    assert sw["log_centroid_rise"] >= 0.5 * src, (sw, src)


def test_clarinet_v2_cc74_changes_the_centroid(clarinet_v2):
    inst, _ = clarinet_v2
    br = brightness_response(inst, [60, 72])
    assert br["log_centroid_change"] > 0.3, br
    dark = brightness_response(inst, [60, 72], lo=spec.DEFAULT_BRIGHTNESS, hi=0.0)
    assert dark["log_centroid_change"] < -0.1, dark


def test_engine_cc11_and_cc74_move_clarinet_v2(clarinet_v2):
    from rtsynth.engine import Engine

    inst, _ = clarinet_v2
    eng = Engine(inst, block=128, n_slots=4, master=False)
    eng.push(10, bytes((0x90, 65, 100)))

    def stats(n):
        out = np.concatenate([eng.render()[:, 0].copy() for _ in range(n)])
        tail = out[len(out) // 2:].astype(np.float64)
        return (20 * np.log10(np.sqrt(np.mean(tail ** 2)) + 1e-12),
                float(np.median(rd.spectral_centroid(tail)[4:-4])))

    l0, c0 = stats(120)
    eng.push(eng.time, bytes((0xB0, 11, 30)))
    l1, c1 = stats(120)
    eng.push(eng.time, bytes((0xB0, 11, 127)))
    eng.push(eng.time, bytes((0xB0, 74, 127)))
    l2, c2 = stats(120)
    assert l1 < l0 - 6.0, (l0, l1)
    assert c2 > 1.2 * c0, (c0, c2)


def test_gm_clarinet_is_the_v2_clarinet():
    """GM program 71 (and the saxes, oboe, bassoon: the reed family) plays models/clarinet, the
    nine-feature clarinet whose swell acts on the network (issue 12 items 1 and 6)."""
    from rtsynth.host import gm
    from rtsynth.instruments import available_instruments, load_instrument
    avail = available_instruments()
    assert gm.model_for(71, avail) == ("clarinet", None)
    assert gm.model_for(65, avail)[0] == "clarinet"
    assert load_instrument("clarinet").n_features == spec.N_FEATURES_V2
    assert load_instrument("clarinet-v1").n_features == spec.N_FEATURES
