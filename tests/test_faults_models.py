"""Fault suite: hostile model folders (built here from a shipped model:
:func:`rtsynth.testing.hostile.model_folders`). Each is refused with one line and exit 1, or
loads and renders a valid file; a model whose controls are not finite or ignore their input
plays muted, with one warning; a pickle is never unpickled; an existing output survives."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from rtsynth.cli import main
from rtsynth.instruments import models_dir
from rtsynth.testing.hostile import PICKLE_MARKER, model_folders

SOURCE = "flute-lite"
OLD = b"an old render that must survive"
#: load, play muted, say so once
MUTED = {"zero_weights", "weights_x1e30"}
#: load and play (their oddities are harmless)
PLAYS: set[str] = set()


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    src = models_dir() / SOURCE
    if not (src / "model.safetensors").exists():
        pytest.skip("no shipped models")
    return model_folders(src, tmp_path_factory.mktemp("models"))


def _names():
    import tempfile
    from pathlib import Path
    src = models_dir() / SOURCE
    if not (src / "model.safetensors").exists():
        return ["none"]
    with tempfile.TemporaryDirectory() as d:
        return sorted(model_folders(src, Path(d)))


@pytest.mark.parametrize("name", _names())
def test_hostile_model_folder(tmp_path, capsys, folders, name):
    d = folders[name]
    out = tmp_path / "o.wav"
    out.write_bytes(OLD)
    capsys.readouterr()
    rc = main(["render", "--demo", "-o", str(out), "-i", str(d), "-q", "--tail", "0.5"])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert not (d / PICKLE_MARKER).exists()                   # never unpickled
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")]
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if name in MUTED:
        assert rc == 0, err
        assert len(lines) == 1 and lines[0].startswith("rtsynth: warning: ") \
            and "muted" in lines[0], err
        x, _ = sf.read(out, dtype="float32")
        assert np.abs(x).max() == 0.0                          # muted, not garbage
        return
    if name in PLAYS:
        assert rc == 0, err
        x, _ = sf.read(out, dtype="float32")
        assert np.isfinite(x).all() and 0 < np.abs(x).max() <= 1.0
        return
    assert rc == 1, (rc, err)
    assert len(lines) == 1 and lines[0].startswith("rtsynth: error: "), err
    assert out.read_bytes() == OLD


@pytest.mark.filterwarnings("ignore::RuntimeWarning")      # NumPy's overflow, once
def test_a_model_going_non_finite_while_playing_is_muted_with_one_warning(folders):
    """The real-time step's own guard: rows that come out non-finite mute the instrument (a
    flag on the real-time path; the warning printed by rtsynth.nn.guard.report)."""
    import io

    from rtsynth.instruments import load_instrument
    from rtsynth.nn import guard
    from rtsynth.render import demo_events, offline_engine, render_events
    inst = load_instrument(models_dir() / SOURCE)
    assert inst.guard.fault is None
    for w in inst.weights.values():          # the same arrays the real-time step reads
        w *= np.float32(1e30)
    e = offline_engine(inst)
    with np.errstate(all="ignore"):
        y = render_events(e, demo_events()[:20], tail=0.2)
    e.close()
    assert np.isfinite(y).all() and np.abs(y).max() <= 1.0
    assert inst.guard.fault is not None
    buf = io.StringIO()
    assert guard.report(inst, buf) and guard.report(inst, buf)
    assert buf.getvalue().count("muted") == 1


LIFE_SOURCE = "violin-life"
#: a life table (a -life model's pitch movement, config.json) made hostile: column -> values
LIFE_FAULTS = {"depth": 1e300, "rate": 1e9, "offset": 1e30, "delay": -5.0, "phase": "nan",
               "pitch": "reversed", "settle": "missing", "rate ": "not a list",
               "drift": 1e6, "drift_tau": -1.0, "drift ": "nan", "trem": "not a list"}


@pytest.mark.parametrize("col", sorted(LIFE_FAULTS))
def test_hostile_life_table_is_refused_in_one_line(tmp_path, capsys, col):
    import json
    import shutil
    src = models_dir() / LIFE_SOURCE
    if not (src / "model.safetensors").exists():
        pytest.skip("no shipped life model")
    d = tmp_path / "m"
    shutil.copytree(src, d)
    cfg = json.loads((d / "config.json").read_text())
    life, key, v = cfg["life"], col.strip(), LIFE_FAULTS[col]
    if v == "reversed":
        life[key] = life[key][::-1]
    elif v == "missing":
        del life[key]
    elif v == "not a list":
        life[key] = {"a": 1}
    else:
        life[key] = [float(v)] * len(life[key])
    (d / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "o.wav"
    out.write_bytes(OLD)
    capsys.readouterr()
    rc = main(["render", "--demo", "-o", str(out), "-i", str(d), "-q", "--tail", "0.5"])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip() and "trained range" not in ln]
    assert rc == 1 and len(lines) == 1 and lines[0].startswith("rtsynth: error: "), (rc, err)
    assert "life" in lines[0], err
    assert out.read_bytes() == OLD


BANDWIDTH_FAULTS = [("noise_bandwidth_hz", float("nan")), ("noise_bandwidth_hz", -5.0),
                    ("noise_bandwidth_hz", 1e300), ("noise_bandwidth_hz", "abc"),
                    ("bandwidth_hz", 0), ("bandwidth_hz", [1])]


@pytest.mark.parametrize("key,value", BANDWIDTH_FAULTS)
def test_hostile_bandwidth_is_refused_in_one_line(tmp_path, capsys, key, value):
    """A NaN or negative bandwidth once loaded silently (keeping or removing every noise
    band): each absurd one is now one error line, the old output kept."""
    import json
    import shutil
    src = models_dir() / LIFE_SOURCE
    if not (src / "model.safetensors").exists():
        pytest.skip("no shipped life model")
    d = tmp_path / "m"
    shutil.copytree(src, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg[key] = value
    (d / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "o.wav"
    out.write_bytes(OLD)
    capsys.readouterr()
    rc = main(["render", "--demo", "-o", str(out), "-i", str(d), "-q", "--tail", "0.5"])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip() and "trained range" not in ln]
    assert rc == 1 and len(lines) == 1 and lines[0].startswith("rtsynth: error: "), (rc, err)
    assert key in lines[0], err
    assert out.read_bytes() == OLD
