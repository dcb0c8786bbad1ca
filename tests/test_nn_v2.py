"""Contract v2 (dynamics, brightness): training features from the audio against the play-time
features from MIDI, the inputs' documented directions on a shipped v2 model, and a tiny CPU
training run of a 9-feature model."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from rtsynth import data as rd
from rtsynth import spec
from rtsynth.eval.melody import KeyboardV2, brightness_response, render_features, swell_response
from rtsynth.nn.io import load_neural_instrument

ROOT = Path(__file__).resolve().parents[1]
SF2 = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
HAVE_FS = shutil.which("fluidsynth") is not None and SF2.exists()


@pytest.fixture(scope="module")
def trumpet_notes(tmp_path_factory):
    """FluidR3's trumpet: plain notes at five velocities on three pitches, and two CC11 swells."""
    if not HAVE_FS:
        pytest.skip("fluidsynth / FluidR3_GM.sf2 not installed")
    from rtsynth.dataset import build as bd
    tick = lambda s: int(round(s * spec.SAMPLE_RATE / bd.TICK))  # noqa: E731
    notes = [dict(pitch=p, velocity=v, held=tick(0.7), split="train", kind="note")
             for p in (60, 67, 74) for v in (40, 64, 88, 112, 127)]
    rng = np.random.default_rng(3)
    for p, kind in ((64, 0), (70, 1)):
        n = tick(1.6)
        notes.append(dict(pitch=p, velocity=100, held=n, split="test", kind="swell",
                          expression=bd.expression_curve(n, rng, kind)))
    out = tmp_path_factory.mktemp("trumpet")
    bd.render_instrument("trumpet", str(out), notes=notes, quiet=True)
    return rd.load_dataset(out / "trumpet"), rd.read_index(out / "trumpet")["calibration"]


def test_plain_note_dynamics_from_audio_agree_with_midi(trumpet_notes):
    exs, cal = trumpet_notes
    plain = [e for e in exs if rd.is_plain(e)]
    err = []
    for ex in plain:
        a, b = rd.held_frames(ex.n_frames, ex.release_sample,
                              hold_s=cal["dynamics"]["attack_hold_s"])
        d = float(np.median(rd.measured_dynamics(ex.audio, ex.pitch_frames, cal)[a:b]))
        err.append(d - ex.velocity / 127.0)
        # the training features of a plain note are the play-time features from its MIDI
        f_train = rd.features_v2(ex, cal)
        f_play = rd.midi_features_v2(ex.n_frames, ex.pitch_frames, ex.velocity, ex.release_sample)
        np.testing.assert_allclose(f_train, f_play, atol=1e-6)
    assert np.median(np.abs(err)) < 0.03, err
    assert np.max(np.abs(err)) < 0.12, err


def test_swell_dynamics_follow_the_audio(trumpet_notes):
    exs, cal = trumpet_notes
    up, down = [e for e in exs if e.kind == "swell"]
    for ex, sign in ((up, 1), (down, -1)):
        f = rd.features_v2(ex, cal)
        a, b = rd.held_frames(ex.n_frames, ex.release_sample,
                              hold_s=cal["dynamics"]["attack_hold_s"])
        d = f[:, spec.F_DYNAMICS]
        assert sign * (d[b - 1] - d[a]) > 0.3, (d[a], d[b - 1])
        assert np.all(d[:a] == d[a]) and np.all(d[b:] == d[b - 1])   # held attack and release
        assert f[0, 1] == pytest.approx(d[0])                         # velocity column
        assert np.all((f[:, spec.F_BRIGHTNESS] >= 0) & (f[:, spec.F_BRIGHTNESS] <= 1))


def test_source_velocity_layers_brighten(trumpet_notes):
    """FluidR3's trumpet is brighter played loud (its velocity layers): the calibration's
    typical brightness rises with dynamics."""
    exs, cal = trumpet_notes
    lo = rd.typical_brightness(np.array([67.0]), np.array([40 / 127]), cal)[0]
    hi = rd.typical_brightness(np.array([67.0]), np.array([1.0]), cal)[0]
    assert hi - lo > 0.2


@pytest.fixture(scope="module")
def trumpet_v2():
    d = ROOT / "models" / "trumpet-v2"
    if not d.is_dir():
        pytest.skip("models/trumpet-v2 not shipped")
    return load_neural_instrument(d)


def test_v2_dynamics_raise_level_and_brighten(trumpet_v2):
    r = swell_response(trumpet_v2, [62, 69])
    assert r["level_rise_db"] > 10.0
    assert r["log_centroid_rise"] > 0.05


def test_v2_brightness_raises_centroid(trumpet_v2):
    r = brightness_response(trumpet_v2, [62, 69])
    assert r["log_centroid_change"] > 0.05


def test_engine_plays_v2_from_a_keyboard_with_velocity_dynamics(trumpet_v2):
    """A keyboard note (no pressure, breath, CC11 or CC74) gives a v2 model dynamics =
    velocity / 127 and the default brightness on every frame, and CC74 / CC11 then move them."""
    from rtsynth.engine import Engine

    seen = []
    step = trumpet_v2.step

    def recording_step(features, slots, out_harm, out_noise):
        seen.append(features.copy())
        step(features, slots, out_harm, out_noise)

    trumpet_v2.step = recording_step
    eng = Engine(trumpet_v2, block=128, n_slots=4, master=False)
    eng.push(10, bytes((0x90, 67, 90)))
    for _ in range(40):
        eng.render()
    f = np.concatenate(seen)
    assert f.shape[1] == spec.N_FEATURES_V2 and len(f) >= 25
    np.testing.assert_allclose(f[:, spec.F_DYNAMICS], 90 / 127, rtol=1e-6)
    np.testing.assert_allclose(f[:, spec.F_BRIGHTNESS], spec.DEFAULT_BRIGHTNESS, rtol=1e-6)
    np.testing.assert_allclose(f[:, 1], 90 / 127, rtol=1e-6)
    seen.clear()
    eng.push(eng.time, bytes((0xB0, 74, 127)))
    eng.push(eng.time, bytes((0xB0, 11, 40)))
    for _ in range(60):
        eng.render()
    last = seen[-1][-1]
    assert last[spec.F_BRIGHTNESS] > 0.95
    assert last[spec.F_DYNAMICS] < 0.5 * 90 / 127


def test_keyboard_plays_v2_with_velocity_dynamics(trumpet_v2):
    """Seven columns from a keyboard (no expression) -> dynamics = velocity / 127, brightness
    default: the same controls as the nine-column features from MIDI."""
    T = 120
    f9 = rd.midi_features_v2(T, 67.0, 90.0, 80 * spec.HOP)
    h9, g9 = trumpet_v2.render_note(f9)
    kb = KeyboardV2(trumpet_v2)
    kb.allocate(1)
    slot = np.zeros(1, np.int64)
    kb.reset(slot)
    h = np.zeros((1, spec.N_HARMONICS), np.float32)
    g = np.zeros((1, spec.N_NOISE_BANDS), np.float32)
    for t in range(T):
        kb.step(np.ascontiguousarray(f9[t:t + 1, :spec.N_FEATURES]), slot, h, g)
        np.testing.assert_allclose(h[0], h9[t], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(g[0], g9[t], rtol=1e-5, atol=1e-7)


def test_tiny_v2_training_on_cpu(tmp_path):
    from rtsynth.train.core import TrainConfig, train_and_export
    from rtsynth.train.dataset import synthetic_dataset

    d = synthetic_dataset(tmp_path / "ds", n_train=6, n_test=1, seconds=0.4)
    cfg = TrainConfig(data=[str(d)], out=str(tmp_path / "m"), backbone="cnn", steps=3, batch=2,
                      crop=16, tiny=True, device="cpu", quiet=True, run_dir=str(tmp_path / "r"),
                      n_features=9, tilt_fraction=0.5, velocity_dropout=0.5, loss_normalize=True)
    out = train_and_export(cfg)
    conf = json.loads((out / "config.json").read_text())
    assert conf["architecture"]["n_features"] == 9
    assert conf["pitch_range"][0] < conf["pitch_range"][1]
    assert 1000 < conf["bandwidth_hz"] <= spec.SAMPLE_RATE / 2
    inst = load_neural_instrument(out)
    assert inst.n_features == 9
    y = render_features(inst, rd.midi_features_v2(50, 67.0, 100.0, None), 67.0)
    assert np.isfinite(y).all() and np.abs(y).max() < 1.0


def test_attack_and_level_terms_of_the_training_loss():
    """--onset-weight's term sees an attack 2 ms late on onset crops only; --level-weight's term
    a level 6 dB off anywhere; both are zero for the target itself."""
    import torch
    from rtsynth.train.core import level_loss, onset_loss
    g = torch.Generator().manual_seed(0)
    t = torch.randn(2, 256 * spec.HOP, generator=g) * 0.1
    late = t.clone()
    late[:, :96] = 0.0                                  # the first 2 ms silent
    both = torch.tensor([True, True])
    assert float(onset_loss(t, t, both)) == 0.0 == float(level_loss(t, t))
    assert float(onset_loss(late, t, both)) > 0.5
    assert float(onset_loss(late, t, torch.tensor([False, False]))) == 0.0
    assert float(level_loss(late, t)) < 0.05          # 2 ms of a 1 s crop: the level term barely
    assert abs(float(level_loss(0.5 * t, t)) - np.log(2.0)) < 0.01
