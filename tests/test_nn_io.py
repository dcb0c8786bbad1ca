import json
import shutil

import numpy as np
import pytest
import torch

from rtsynth import spec
from rtsynth.instruments.base import StreamingInstrument
from rtsynth.nn.io import (ModelLoadError, load_decoder, load_neural_instrument, load_weights,
                           save_model)
from rtsynth.nn.model import Decoder

TINY = {"gru": {"hidden": 16, "layers": 1},
        "cnn": {"channels": 8, "kernel": 2, "dilations": [1, 2, 4]},
        "attention": {"dim": 8, "heads": 2, "layers": 1, "window": 8, "ff_mult": 2}}


def make(tmp_path, kind="gru", z_dim=0, name="m"):
    torch.manual_seed(0)
    dec = Decoder(kind, TINY[kind], pre_dim=8, z_dim=z_dim)
    timbre = None
    if z_dim:
        timbre = {"z_dim": z_dim, "anchors": {"a": [0.0] * z_dim, "b": [1.0] * z_dim},
                  "path": ["a", "b"]}
    cfg = {"name": name, "program": 73,
           "source": {"soundfont": "FluidR3_GM.sf2", "bank": 0, "program": 73}}
    return save_model(tmp_path / name, dec, cfg, "# card\n", timbre=timbre), dec


@pytest.mark.parametrize("kind", ["gru", "cnn", "attention"])
def test_roundtrip_and_instrument_matches_decoder(tmp_path, kind):
    folder, dec = make(tmp_path, kind)
    assert (folder / "README.md").exists()
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["source"]["program"] == 73 and cfg["architecture"]["backbone"] == kind
    inst = load_neural_instrument(folder)
    assert isinstance(inst, StreamingInstrument)
    inst.allocate(8)
    inst.warmup()
    feats = spec.note_features(40, 64.0, 100, 30 * spec.HOP)
    with torch.no_grad():
        h_ref, n_ref, _ = dec.eval()(torch.from_numpy(feats)[None])
    slots = np.array([5], dtype=np.int64)
    h = np.zeros((1, spec.N_HARMONICS), np.float32)
    g = np.zeros((1, spec.N_NOISE_BANDS), np.float32)
    hs = []
    for t in range(40):
        inst.step(feats[t:t + 1], slots, h, g)
        hs.append(h.copy())
        if t == 19:
            snap = inst.snapshot()
    np.testing.assert_allclose(np.concatenate(hs), h_ref[0].numpy(), atol=1e-5)
    # snapshot/restore: replaying frames 20.. gives the same output
    inst.restore(snap)
    inst.step(feats[20:21], slots, h, g)
    np.testing.assert_allclose(h[0], hs[20][0], atol=1e-6)
    # reset: the slot is a fresh voice again
    inst.reset(slots)
    inst.step(feats[0:1], slots, h, g)
    np.testing.assert_allclose(h[0], hs[0][0], atol=1e-6)


def test_nan_guard_resets_slot(tmp_path):
    folder, _ = make(tmp_path)
    inst = load_neural_instrument(folder)
    inst.allocate(4)
    f = np.zeros((2, 7), np.float32)
    f[:, 1] = 0.5
    f[1, 0] = np.nan
    h = np.ones((2, spec.N_HARMONICS), np.float32)
    g = np.ones((2, spec.N_NOISE_BANDS), np.float32)
    inst.step(f, np.array([0, 1]), h, g)
    assert np.all(h[1] == 0) and np.all(g[1] == 0) and np.all(np.isfinite(h))
    assert float(np.abs(inst.state["h"][1]).sum()) == 0.0
    assert inst.guard.fault == "its controls became non-finite while playing"   # reported


def test_timbre_controls(tmp_path):
    folder, _ = make(tmp_path, z_dim=4)
    inst = load_neural_instrument(folder)
    assert inst.has_timbre
    inst.set_timbre(0.25)
    np.testing.assert_allclose(inst.z, 0.25)
    inst.set_timbre(1.0)
    np.testing.assert_allclose(inst.z, 1.0)
    inst.sample_timbre(3)
    z1 = inst.z.copy()
    inst.sample_timbre(3)
    np.testing.assert_array_equal(z1, inst.z)
    inst.allocate(2)
    h = np.zeros((1, spec.N_HARMONICS), np.float32)
    g = np.zeros((1, spec.N_NOISE_BANDS), np.float32)
    inst.step(np.full((1, 7), 0.5, np.float32), np.array([1]), h, g)
    assert np.isfinite(h).all()


def _corrupt_cases(tmp_path):
    base, _ = make(tmp_path, name="base")

    def variant(name, fn):
        d = tmp_path / name
        shutil.copytree(base, d)
        fn(d)
        return d

    def set_cfg(d, mut):
        cfg = json.loads((d / "config.json").read_text())
        mut(cfg)
        (d / "config.json").write_text(json.dumps(cfg))

    yield variant("no_weights", lambda d: (d / "model.safetensors").unlink())
    yield variant("no_config", lambda d: (d / "config.json").unlink())
    yield variant("bad_json", lambda d: (d / "config.json").write_text("{not json"))
    yield variant("truncated", lambda d: (d / "model.safetensors").write_bytes(
        (d / "model.safetensors").read_bytes()[:200]))
    yield variant("garbage", lambda d: (d / "model.safetensors").write_bytes(b"\x00" * 64))
    yield variant("pickle", lambda d: (d / "model.safetensors").write_bytes(
        b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x02os\x94\x8c\x06system\x94\x93\x94."))
    yield variant("huge_header", lambda d: (d / "model.safetensors").write_bytes(
        (10 ** 15).to_bytes(8, "little") + b"{}"))
    yield variant("wrong_hidden", lambda d: set_cfg(
        d, lambda c: c["architecture"]["backbone_kw"].update(hidden=17)))
    yield variant("wrong_backbone", lambda d: set_cfg(
        d, lambda c: c["architecture"].update(backbone="lstm")))
    yield variant("wrong_harmonics", lambda d: set_cfg(
        d, lambda c: c["architecture"].update(n_harmonics=32)))
    yield variant("bad_type", lambda d: set_cfg(
        d, lambda c: c["architecture"].update(pre_dim="8")))
    yield variant("wrong_format", lambda d: set_cfg(d, lambda c: c.update(format="other")))
    yield variant("not_object", lambda d: (d / "config.json").write_text("[1, 2]"))
    yield variant("huge_state", lambda d: set_cfg(          # 4096 x 4096 state per voice
        d, lambda c: c["architecture"].update(backbone="cnn", backbone_kw={
            "channels": 4096, "kernel": 2, "dilations": [4096]})))
    yield variant("vae_without_anchors", lambda d: set_cfg(
        d, lambda c: c["architecture"].update(z_dim=4)))

    def wrong_dtype(d):
        from safetensors.torch import load_file, save_file
        t = load_file(str(d / "model.safetensors"))
        t = {k: v.double() for k, v in t.items()}
        save_file(t, str(d / "model.safetensors"))
    yield variant("wrong_dtype", wrong_dtype)

    def nan_weights(d):
        from safetensors.torch import load_file, save_file
        t = load_file(str(d / "model.safetensors"))
        k = next(iter(t))
        t[k] = torch.full_like(t[k], float("nan"))
        save_file(t, str(d / "model.safetensors"))
    yield variant("nan_weights", nan_weights)

    def extra_tensor(d):
        from safetensors.torch import load_file, save_file
        t = load_file(str(d / "model.safetensors"))
        t["decoder.evil"] = torch.zeros(3)
        save_file(t, str(d / "model.safetensors"))
    yield variant("extra_tensor", extra_tensor)
    yield tmp_path / "does_not_exist"


def test_bad_folders_raise_one_error(tmp_path):
    n = 0
    for d in _corrupt_cases(tmp_path):
        # the torch path, the torch-free path (what play/render use) and its instrument
        for load in (load_decoder, load_weights, load_neural_instrument):
            with pytest.raises(ModelLoadError) as e:
                load(d)
            assert str(d) in str(e.value) and len(str(e.value)) > len(str(d)) + 5
        n += 1
    assert n >= 18


def test_bad_folders_without_torch(tmp_path):
    """The torch-free loader rejects every bad folder on its own, torch never imported."""
    import subprocess
    import sys
    dirs = [str(d) for d in _corrupt_cases(tmp_path)]
    code = ("import sys\nfrom rtsynth.nn.io import ModelLoadError, load_neural_instrument\n"
            "n = 0\n"
            "for d in sys.argv[1:]:\n"
            "    try:\n        load_neural_instrument(d)\n"
            "    except ModelLoadError:\n        n += 1\n"
            "assert 'torch' not in sys.modules\nprint(n)\n")
    r = subprocess.run([sys.executable, "-c", code, *dirs], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert int(r.stdout.strip()) == len(dirs)


def test_loader_never_unpickles():
    import inspect
    import rtsynth.nn.io as io
    src = inspect.getsource(io)
    assert "torch.load" not in src and "import pickle" not in src


def test_restore_into_another_size(tmp_path):
    folder, _ = make(tmp_path, "cnn")
    a = load_neural_instrument(folder)
    a.allocate(6)
    f = np.full((2, 7), 0.5, np.float32)
    h = np.zeros((2, spec.N_HARMONICS), np.float32)
    g = np.zeros((2, spec.N_NOISE_BANDS), np.float32)
    for _ in range(5):
        a.step(f, np.array([1, 4]), h, g)
    snap = a.snapshot()
    b = load_neural_instrument(folder)          # never allocated
    b.restore(snap)
    c = load_neural_instrument(folder)
    c.allocate(2)                               # another size
    c.restore(snap)
    outs = []
    for inst in (a, b, c):
        assert inst.n_slots == 6
        inst.step(f, np.array([1, 4]), h, g)
        outs.append(h.copy())
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], outs[2])
