"""The NumPy real-time path (rtsynth.nn.fast) computes what torch computes, for every backbone,
and the torch-free load path gives the same instrument as the torch-built one."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rtsynth import spec
from rtsynth.nn.fast import FastCNNDecoder, FastGRUDecoder, decoder_weights, fast_decoder
from rtsynth.nn.io import expected_shapes, load_decoder, load_neural_instrument
from rtsynth.nn.model import Decoder

MODELS = Path(__file__).resolve().parent.parent / "models"
ROOT = Path(__file__).resolve().parent.parent


def perturbed(kind, z_dim, seed, kw=None):
    """A decoder whose every weight matters (random offsets on top of the initialisation)."""
    torch.manual_seed(seed)
    dec = Decoder(kind, kw, z_dim=z_dim).eval()
    with torch.no_grad():
        for p in dec.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return dec


CASES = [("gru", None, 0), ("gru", None, 8), ("gru", {"hidden": 32, "layers": 2}, 0),
         ("cnn", None, 0), ("cnn", None, 8), ("cnn", {"channels": 16, "kernel": 3,
                                                       "dilations": [1, 5, 2]}, 0),
         ("attention", None, 0), ("attention", None, 8),
         ("attention", {"dim": 32, "heads": 2, "layers": 2, "window": 16, "ff_mult": 2}, 0)]


@pytest.mark.parametrize("kind,kw,z_dim", CASES)
def test_fast_matches_torch_step_by_step(kind, kw, z_dim):
    dec = perturbed(kind, z_dim, 0, kw)
    n_slots = 6
    w, arch = decoder_weights(dec)
    fast = fast_decoder(w, n_slots, arch)          # from NumPy weights, as the loader builds it
    state = dec.init_state(n_slots)
    rng = np.random.default_rng(1)
    z = rng.standard_normal(z_dim).astype(np.float32) if z_dim else None
    bb = dec.backbone
    n_frames = {"gru": 40, "cnn": 2 * getattr(bb, "ring", 0) + 40,
                "attention": 2 * getattr(bb, "window", 0) + 20}[kind]
    for t in range(n_frames):      # long enough for the rings to wrap around
        slots = np.sort(rng.choice(n_slots, size=rng.integers(1, n_slots + 1), replace=False))
        f = rng.random((len(slots), spec.N_FEATURES)).astype(np.float32)
        f[:, 0] = rng.uniform(-1, 1.2, len(slots))
        with torch.inference_mode():
            zt = None if z is None else torch.from_numpy(z)[None].expand(len(slots), -1)
            h_ref, g_ref = dec.step_slots(torch.from_numpy(f), zt, state,
                                          torch.from_numpy(slots.astype(np.int64)))
        h = np.zeros((len(slots), spec.N_HARMONICS), np.float32)
        g = np.zeros((len(slots), spec.N_NOISE_BANDS), np.float32)
        bad = fast.step(f, None if z is None else z[None], slots, h, g)
        assert not bad.any()
        np.testing.assert_allclose(h, h_ref.numpy(), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(g, g_ref.numpy(), rtol=1e-4, atol=1e-6)
    if kind == "gru":
        np.testing.assert_allclose(fast.h, state["h"].numpy(), atol=1e-5)
    np.testing.assert_array_equal(fast.state.get("pos", 0), state.get("pos", torch.tensor(0)).numpy())


def test_fast_accepts_a_torch_decoder():
    dec = perturbed("gru", 0, 3)
    a = FastGRUDecoder(dec, 4)
    w, arch = decoder_weights(dec)
    b = FastGRUDecoder(w, 4, arch)
    f = np.full((2, spec.N_FEATURES), 0.5, np.float32)
    out = [np.zeros((2, spec.N_HARMONICS), np.float32) for _ in range(2)]
    g = np.zeros((2, spec.N_NOISE_BANDS), np.float32)
    a.step(f, None, np.array([0, 3]), out[0], g)
    b.step(f, None, np.array([0, 3]), out[1], g)
    np.testing.assert_array_equal(out[0], out[1])


def test_cnn_ring_keeps_only_the_taps():
    dec = Decoder("cnn")        # shipped size: kernel 4, dilations 1, 4, 16, 64, 96 channels
    fast = FastCNNDecoder(dec, 32)
    assert fast.buf.shape == (32, 3 * (1 + 4 + 16 + 64) + 4, 96)
    torch_bytes = dec.init_state(32)["buf"].numel() * 4
    assert fast.buf.nbytes < 0.35 * torch_bytes


@pytest.mark.parametrize("kind,kw,z_dim", CASES + [
    ("gru", {"hidden": 8}, 0), ("cnn", {"kernel": 3}, 0), ("attention", {"heads": 2}, 4)])
def test_expected_shapes_are_the_torch_state_dict(kind, kw, z_dim):
    dec = Decoder(kind, kw if kw is not None else None, z_dim=z_dim)
    _, arch = decoder_weights(dec)
    if kw is not None:             # a config may leave keys out: the constructor defaults apply
        arch = dict(arch, backbone_kw=dict(kw))
    assert expected_shapes(arch) == {k: tuple(v.shape) for k, v in dec.state_dict().items()}


# --- shipped models: the torch-free instrument == the torch decoder ------------------------------

def realistic_features(n_frames, n_voices, seed):
    """Per voice: a note (pitch, velocity, length) starting at some frame; rows of the frames
    each voice sounds in, as the engine would hand them over."""
    rng = np.random.default_rng(seed)
    voices = []
    for v in range(n_voices):
        start = 0 if v == 0 else int(rng.integers(0, n_frames // 3))
        length = n_frames - start
        rel = int(rng.integers(length // 2, length)) * spec.HOP
        pitch = rng.uniform(55, 84) + 0.3 * np.sin(np.arange(length) * 0.15 * rng.uniform(0.5, 1))
        voices.append((start, spec.note_features(length, pitch, float(rng.integers(30, 127)), rel)))
    return voices


def _shipped(name):
    """(torch-free instrument, torch decoder) of a shipped model."""
    folder = MODELS / name
    if not (folder / "model.safetensors").exists():
        pytest.skip("no shipped model")
    inst, dec = load_neural_instrument(folder), load_decoder(folder)[0]
    # the instrument clamps the model's pitch input and folds the source's bandwidth into it
    dec.pitch_clip = inst._clip
    if inst.bandwidth_hz is not None:
        dec.set_bandwidth(inst.bandwidth_hz)
        dec.load_state_dict({k: torch.from_numpy(v) for k, v in inst.weights.items()})
    return inst, dec


def _replay(inst, rec, frames, check_noise=True):
    """Step ``inst`` through recorded frames ``(slots, features, harm, noise)``: same output."""
    for t in frames:
        slots, f, h0, g0 = rec[t]
        h = np.zeros_like(h0)
        g = np.zeros_like(g0)
        inst.step(f, slots, h, g)
        np.testing.assert_allclose(h, h0, atol=1e-6)
        if check_noise:
            np.testing.assert_allclose(g, g0, atol=1e-6)


@pytest.mark.parametrize("name", ["flute-gru", "flute", "flute-lite", "morph", "flute-attention", "trumpet-v2"])
def test_shipped_model_torch_free_equals_torch(name):
    inst, dec = _shipped(name)
    n_slots, n_frames = 8, 300
    inst.allocate(n_slots)
    state = dec.init_state(n_slots)
    voices = realistic_features(n_frames, 6, 0)
    slot_of = np.array([7, 0, 3, 5, 1, 6])
    rec, snap, worst = [], None, 0.0
    z0 = None if inst.z is None else inst.z.copy()
    for t in range(n_frames):
        if inst.has_timbre and t == 100:
            inst.set_timbre(0.4)
        if inst.has_timbre and t == 200:
            inst.sample_timbre(5)
        act = [v for v, (s, f) in enumerate(voices) if s <= t]
        slots = slot_of[act]
        f = np.stack([voices[v][1][t - voices[v][0]] for v in act])
        if inst.n_features == spec.N_FEATURES_V2:   # v2: dynamics from velocity, a CC74 sweep
            f = np.concatenate([f, f[:, 1:2], np.full((len(f), 1), (t % 128) / 127.0,
                                                       np.float32)], 1).astype(np.float32)
        if t == 150:
            snap = inst.snapshot()
        h = np.zeros((len(slots), spec.N_HARMONICS), np.float32)
        g = np.zeros((len(slots), spec.N_NOISE_BANDS), np.float32)
        inst.step(f, slots, h, g)
        with torch.inference_mode():
            z = None if inst.z is None else torch.from_numpy(inst.z)[None].expand(len(slots), -1)
            hr, gr = dec.step_slots(torch.from_numpy(f), z, state, torch.from_numpy(slots))
            hr, gr = hr.numpy().copy(), gr.numpy().copy()
            inst.post_controls(f, hr, gr)      # its range taper and the source's bandwidth
            hr, gr = torch.from_numpy(hr), torch.from_numpy(gr)
        worst = max(worst, float(np.abs(h - hr.numpy()).max()), float(np.abs(g - gr.numpy()).max()))
        rec.append((slots, f, h, g))
    assert worst <= 1e-5
    assert max(float(h.max()) for _, _, h, _ in rec) > 1e-3          # it does play
    # snapshot/restore: replaying frames 150.. from the snapshot gives the same output
    inst.restore(snap)
    _replay(inst, rec, range(150, 200))
    # reset: the slots are fresh voices again
    inst.reset(np.arange(n_slots))
    if inst.has_timbre:
        inst.z = z0                    # the timbre of frame 0
    _replay(inst, rec, range(5), check_noise=False)


@pytest.mark.parametrize("name", ["flute", "flute-lite", "flute-attention"])
def test_render_note_equals_torch_forward(name):
    inst, dec = _shipped(name)
    f = spec.note_features(300, 64.0, 90, 200 * spec.HOP)
    h, g = inst.render_note(f)
    with torch.inference_mode():
        hr, gr, _ = dec(torch.from_numpy(f)[None])
    hr, gr = hr[0].numpy().copy(), gr[0].numpy().copy()
    inst.post_controls(f, hr, gr)
    assert np.abs(h - hr).max() <= 1e-5 and np.abs(g - gr).max() <= 1e-5


def test_play_path_never_imports_torch():
    """Loading every backbone and rendering through the engine: torch stays out of the process."""
    code = """
import sys
from rtsynth.engine import Engine
from rtsynth.instruments import load_instrument
for name in ("flute-gru", "flute", "morph", "flute-attention"):
    e = Engine(load_instrument(name), block=128)
    for i in range(4):
        e.push(0, (0x90, 60 + 3 * i, 100))
    e.push(0, (0xB0, 1, 64))
    for _ in range(20):
        e.render()
    e.push(e.time, (0x80, 60, 0))
    for _ in range(5):
        e.render()
assert "torch" not in sys.modules, "torch was imported"
print("ok")
"""
    if not (MODELS / "flute-attention" / "model.safetensors").exists():
        pytest.skip("no shipped models")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-2000:]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RUSAGE_THREAD is Linux")
def test_cnn_step_does_not_page_fault_on_fresh_state():
    """State memory is written at allocate: stepping never-used slots until their rings wrap
    takes no page faults (lazily mapped rings cost up to 3.6 ms per step here before)."""
    import resource
    dec = Decoder("cnn")
    fast = FastCNNDecoder(dec, 64)
    slots = np.arange(64)
    f = np.full((64, spec.N_FEATURES), 0.5, np.float32)
    h = np.zeros((64, spec.N_HARMONICS), np.float32)
    g = np.zeros((64, spec.N_NOISE_BANDS), np.float32)
    fast.step(f, None, slots, h, g)
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    for _ in range(fast.rows_per_slot):
        fast.step(f, None, slots, h, g)
    faults = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before
    assert faults < 40          # without the prefault: ~1000 (one per 4 kB of ring)
