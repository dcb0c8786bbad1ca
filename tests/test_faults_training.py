"""Fault suite: what training reads. Crafted ``--resume`` checkpoints give one error line (no
traceback, no model written); a diverging run stops with an error and writes no model that
would not load; a dataset index cannot name files outside its folder."""

from __future__ import annotations

import json
import pickle
import shutil
import struct

import numpy as np
import pytest

from rtsynth.cli import main
from rtsynth.train.dataset import synthetic_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return synthetic_dataset(tmp_path_factory.mktemp("data") / "a", "a", program=73, n_train=3,
                             n_test=1, seconds=0.3, seed=1)


def _train(data, out, run, *extra):
    return main(["train", str(data), "-o", str(out), "--run-dir", str(run), "--tiny",
                 "--batch", "2", "--crop", "16", "--device", "cpu", "--quiet",
                 "--log-every", "1", *extra])


@pytest.fixture(scope="module")
def good_run(tmp_path_factory, dataset):
    base = tmp_path_factory.mktemp("run")
    assert _train(dataset, base / "m", base / "run", "--steps", "2", "--ckpt-every", "1") == 0
    return base / "run"


def _craft(run, name):
    """Damage a copy of a real checkpoint in the way ``name`` says."""
    from safetensors.numpy import load_file, save_file
    ck, js = run / "ckpt.safetensors", run / "ckpt.json"
    t = load_file(str(ck))
    j = json.loads(js.read_text())
    first = sorted(k for k in t if k.startswith("decoder."))[0]
    opt_key = sorted(k for k in t if k.startswith("opt_"))[0]
    if name == "garbage":
        ck.write_bytes(b"\x00" * 100)
    elif name == "empty":
        ck.write_bytes(b"")
    elif name == "truncated":
        ck.write_bytes(ck.read_bytes()[:200])
    elif name == "header_length_huge":
        ck.write_bytes(struct.pack("<Q", 1 << 62) + ck.read_bytes()[8:])
    elif name == "pickle":
        ck.write_bytes(pickle.dumps({"decoder.x": [1, 2, 3]}))
    elif name == "nan_weights":
        t[first] = np.full_like(t[first], np.nan)
        save_file(t, str(ck))
    elif name == "wrong_shape":
        t[first] = np.zeros((2, 2), t[first].dtype)
        save_file(t, str(ck))
    elif name == "int_weights":
        t[first] = np.zeros(t[first].shape, np.int32)
        save_file(t, str(ck))
    elif name == "optimizer_tensor_missing":
        del t[opt_key]
        save_file(t, str(ck))
    elif name == "json_missing":
        js.unlink()
    elif name == "json_garbage":
        js.write_text("{oops")
    elif name == "json_a_list":
        js.write_text("[]")
    elif name == "step_a_string":
        j["info"]["step"] = "2"
        js.write_text(json.dumps(j))
    elif name == "step_negative":
        j["info"]["step"] = -5
        js.write_text(json.dumps(j))
    elif name == "elapsed_nan":
        j["info"]["elapsed"] = float("nan")
        js.write_text(json.dumps(j))
    elif name == "optimizer_meta_garbage":
        j["optimizers"]["main"] = {"param_groups": "x", "state_keys": {"0": ["nope"]}}
        js.write_text(json.dumps(j))
    elif name == "info_missing":
        del j["info"]
        js.write_text(json.dumps(j))
    else:
        raise KeyError(name)


CRAFTED = ["garbage", "empty", "truncated", "header_length_huge", "pickle", "nan_weights",
           "wrong_shape", "int_weights", "optimizer_tensor_missing", "json_missing",
           "json_garbage", "json_a_list", "step_a_string", "step_negative", "elapsed_nan",
           "optimizer_meta_garbage", "info_missing"]


@pytest.mark.parametrize("name", CRAFTED)
def test_a_crafted_checkpoint_is_one_error(tmp_path, capsys, dataset, good_run, name):
    run = tmp_path / "run"
    shutil.copytree(good_run, run)
    _craft(run, name)
    out = tmp_path / "model"
    capsys.readouterr()
    rc = _train(dataset, out, run, "--steps", "4", "--resume")
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("rtsynth: error: "), err
    assert not out.exists()


def test_a_diverging_run_stops_with_an_error_and_writes_no_model(tmp_path, capsys, dataset,
                                                                 monkeypatch):
    """The loss turns NaN at step 4 (injected in the loss: no real run diverges on demand):
    training stops there with one error, no checkpoint after it and no model."""
    from rtsynth.nn.losses import MultiResolutionSTFTLoss
    real = MultiResolutionSTFTLoss.forward
    calls = []

    def forward(self, *a, **k):
        calls.append(1)
        loss = real(self, *a, **k)
        return loss * float("nan") if len(calls) >= 4 else loss
    monkeypatch.setattr(MultiResolutionSTFTLoss, "forward", forward)
    out = tmp_path / "model"
    rc = _train(dataset, out, tmp_path / "run", "--steps", "30", "--ckpt-every", "2")
    err = capsys.readouterr().err
    assert rc == 1 and "diverged" in err and "at step 4" in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert not out.exists()
    from safetensors.numpy import load_file
    ck = load_file(str(tmp_path / "run" / "ckpt.safetensors"))    # the step-2 one, finite
    assert all(np.isfinite(v).all() for v in ck.values() if v.dtype.kind == "f")


def test_a_dataset_index_cannot_name_files_outside_its_folder(tmp_path, capsys, dataset):
    d = tmp_path / "ds"
    shutil.copytree(dataset, d)
    secret = tmp_path / "secret.flac"
    secret.write_bytes(b"not yours")
    idx = json.loads((d / "index.json").read_text())
    for i, (ex, name) in enumerate(zip(idx["examples"], ["../secret.flac", str(secret)])):
        ex["id"] = f"not-in-npz-{i}"       # so the loader goes to the named file
        ex["file"] = name
    (d / "index.json").write_text(json.dumps(idx))
    rc = _train(d, tmp_path / "m", tmp_path / "run", "--steps", "1")
    err = capsys.readouterr().err
    assert rc == 1 and "outside the dataset folder" in err and "Traceback" not in err, err


@pytest.mark.parametrize("opt", ["--teacher", "--init"])
@pytest.mark.parametrize("what", ["missing", "a_file", "corrupt"])
def test_a_bad_teacher_or_init_model_is_one_error(tmp_path, capsys, dataset, opt, what):
    """``--teacher`` (distillation) and ``--init`` name a model folder: a missing one, a file,
    or a folder whose weights are garbage gives one error line and no model (was a traceback
    of ModelLoadError)."""
    bad = tmp_path / "bad"
    if what == "a_file":
        bad.write_text("not a model")
    elif what == "corrupt":
        shutil.copytree("models/flute-lite", bad)
        (bad / "model.safetensors").write_bytes(b"\x00" * 64)
    out = tmp_path / "model"
    capsys.readouterr()
    rc = _train(dataset, out, tmp_path / "run", "--steps", "1", opt, str(bad))
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("rtsynth: error: "), err
    assert not out.exists()
