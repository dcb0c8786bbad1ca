"""The offline engine's fused CNN step (one nogil kernel per half of a block's rows) gives the
live engine's samples, and the bench's long multi-part file is what it says."""

import numpy as np
import pytest

from rtsynth.engine import Engine, OfflineEngine
from rtsynth.instruments import load_instrument, models_dir

from test_render_offline import EVENTS, N, _render


def _cnn(name):
    if not (models_dir() / name / "model.safetensors").exists():
        pytest.skip("no shipped models")
    return load_instrument(name)


@pytest.mark.parametrize("name", ["flute-lite", "flute"])
def test_fused_offline_step_gives_the_live_samples(name):
    """Both threads step the CNN through the fused kernel (not the NumPy step): the same
    samples as the live engine at 128 frames, to float32 rounding."""
    ref, _ = _render(Engine(_cnn(name), block=128, n_slots=16))
    off = OfflineEngine(_cnn(name), block=8192, threads=2, n_slots=16)
    assert off._fused is not None                # the fused path is the one measured
    got, off = _render(off)
    off.close()
    assert np.abs(ref).max() > 0.01
    assert np.max(np.abs(got - ref)) <= 1e-5


def test_fused_offline_step_mutes_a_model_gone_non_finite():
    """A fused step that yields non-finite controls mutes the instrument, as the NumPy step's
    guard does: silence after it, one fault recorded."""
    inst = _cnn("flute-lite")
    off = OfflineEngine(inst, block=8192, threads=2, n_slots=16)
    assert off._fused is not None
    w = off._fused[2][0][0]                       # the first decoder's input weights
    w[...] = np.nan
    for t, m in EVENTS:
        off.push(t, m)
    out = np.concatenate([off.render().copy() for _ in range(N // off.block + 1)])
    off.close()
    assert inst.guard.fault is not None
    assert np.all(np.isfinite(out))


def test_multipart_file_has_four_parts_on_four_channels(tmp_path):
    from rtsynth.bench.measure import MULTIPART_PROGRAMS, multipart_file, multipart_midi
    mid = multipart_file(60.0)
    parts = [t for t in mid.tracks if any(m.type == "note_on" for m in t)]
    assert len(parts) == 4
    assert [{m.channel for m in t if hasattr(m, "channel")} for t in parts] == \
        [{0}, {1}, {2}, {3}]
    progs = {m.program for t in parts for m in t if m.type == "program_change"}
    assert progs == set(MULTIPART_PROGRAMS)
    assert mid.length >= 60.0
    single = multipart_file(60.0, single=True)
    assert {m.channel for t in single.tracks for m in t if hasattr(m, "channel")} == {0}
    assert not any(m.type == "program_change" for t in single.tracks for m in t)
    p = multipart_midi(30.0, cache_dir=tmp_path)
    assert p.exists() and multipart_midi(30.0, cache_dir=tmp_path) == p
