import json

import numpy as np
import pytest

from rtsynth import spec
from rtsynth.nn.io import load_neural_instrument
from rtsynth.train import cli
from rtsynth.train.dataset import synthetic_dataset


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    base = tmp_path_factory.mktemp("data")
    return [synthetic_dataset(base / "a", "a", program=73, n_train=4, n_test=1, seconds=0.3, seed=1),
            synthetic_dataset(base / "b", "b", program=40, n_train=4, n_test=1, seconds=0.3, seed=2)]


def _args(data, out, run, *extra):
    return [*map(str, data), "-o", str(out), "--run-dir", str(run), "--tiny", "--batch", "2",
            "--crop", "16", "--device", "cpu", "--quiet", "--log-every", "1", *extra]


@pytest.mark.parametrize("kind", ["gru", "cnn", "attention"])
def test_tiny_train_export_load_step(tmp_path, datasets, kind):
    out = tmp_path / f"m-{kind}"
    assert cli.main(_args(datasets[:1], out, tmp_path / "run", "--backbone", kind,
                          "--steps", "3")) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["source"]["program"] == 73 and cfg["program"] == 73
    assert cfg["training"]["steps"] == 3 and cfg["training"]["command"].startswith("rtsynth train ")
    assert (out / "README.md").read_text().startswith("# m-")
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 3 and np.isfinite(log[-1]["mrstft"])
    inst = load_neural_instrument(out)
    inst.allocate(4)
    inst.warmup()
    f = spec.note_features(3, 60.0, 100, None)
    h = np.zeros((1, spec.N_HARMONICS), np.float32)
    g = np.zeros((1, spec.N_NOISE_BANDS), np.float32)
    for t in range(3):
        inst.step(f[t:t + 1], np.array([2]), h, g)
    assert np.isfinite(h).all() and h.sum() > 0


def test_resume_continues(tmp_path, datasets):
    out, run = tmp_path / "m", tmp_path / "run"
    assert cli.main(_args(datasets[:1], out, run, "--steps", "2", "--ckpt-every", "1")) == 0
    assert cli.main(_args(datasets[:1], out, run, "--steps", "4", "--resume")) == 0
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert any(r.get("event") == "resumed" and r["step"] == 2 for r in log)
    steps = [r["step"] for r in log if "mrstft" in r]
    assert steps == [1, 2, 3, 4]
    assert json.loads((out / "config.json").read_text())["training"]["steps"] == 4


def test_vae_gan_tiny(tmp_path, datasets):
    out = tmp_path / "morph"
    assert cli.main(_args(datasets, out, tmp_path / "run", "--vae", "--z-dim", "3", "--steps", "2",
                          "--gan-steps", "2", "--export-before-gan",
                          str(tmp_path / "morph-nogan"))) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["program"] == [73, 40] and cfg["training"]["gan_steps"] == 2
    assert set(cfg["timbre"]["anchors"]) == {"a", "b"} and cfg["timbre"]["path"] == ["a", "b"]
    assert json.loads((tmp_path / "morph-nogan" / "config.json").read_text())["training"]["gan"] is False
    inst = load_neural_instrument(out)
    assert inst.has_timbre
    inst.allocate(2)
    inst.set_timbre(0.5)
    inst.sample_timbre(1)
    h = np.zeros((1, spec.N_HARMONICS), np.float32)
    g = np.zeros((1, spec.N_NOISE_BANDS), np.float32)
    inst.step(np.full((1, 7), 0.5, np.float32), np.array([0]), h, g)
    assert np.isfinite(h).all()


def test_distill_from_a_teacher_with_a_narrower_input_layer(tmp_path, datasets):
    """``--teacher``: the student also learns the teacher's controls; its term is logged and
    falls as the student learns them (here from the teacher's own weights: zero at once);
    ``--pre-dim`` sets the input layer's width."""
    from rtsynth.train.core import distill_loss
    import torch
    teacher = tmp_path / "teacher"
    assert cli.main(_args(datasets[:1], teacher, tmp_path / "r0", "--backbone", "gru",
                          "--steps", "2")) == 0
    h = torch.rand(2, 5, 4)
    assert float(distill_loss(h, h[..., :2], h, h[..., :2])) == 0.0
    assert float(distill_loss(h * 2, h[..., :2], h, h[..., :2])) > 0.5
    out = tmp_path / "student"
    assert cli.main(_args(datasets[:1], out, tmp_path / "r1", "--backbone", "gru",
                          "--backbone-kw", '{"hidden": 8, "layers": 1}', "--pre-dim", "12",
                          "--teacher", str(teacher), "--distill-weight", "2", "--steps",
                          "3")) == 0
    arch = json.loads((out / "config.json").read_text())["architecture"]
    assert arch["pre_dim"] == 12 and arch["backbone_kw"]["hidden"] == 8
    log = [json.loads(x) for x in (tmp_path / "r1" / "log.jsonl").read_text().splitlines()]
    d = [r["distill"] for r in log if "distill" in r]
    assert len(d) == 3 and all(np.isfinite(d)) and d[0] > 0
    rec = log[-1]
    assert abs(rec["loss"] - rec["mrstft"] - 2 * rec["distill"]) < 1e-4
    # a student that starts as its teacher: no distance to learn
    same = tmp_path / "same"
    assert cli.main(_args(datasets[:1], same, tmp_path / "r2", "--init", str(teacher),
                          "--teacher", str(teacher), "--steps", "1", "--lr", "1e-9")) == 0
    log = [json.loads(x) for x in (tmp_path / "r2" / "log.jsonl").read_text().splitlines()]
    assert [r["distill"] for r in log if "distill" in r][0] < 1e-6
