"""User recordings -> dataset: a FluidSynth phrase treated as a user's recording."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from rtsynth.dataset import build as bd  # noqa: E402
from rtsynth import spec  # noqa: E402
from rtsynth.data import load_dataset  # noqa: E402

HAVE_FS = shutil.which("fluidsynth") is not None and Path(bd.SF2).exists()


def _have_crepe():
    import importlib.util
    return importlib.util.find_spec("torchcrepe") is not None


@pytest.mark.skipif(not HAVE_FS, reason="fluidsynth / FluidR3_GM not installed")
@pytest.mark.parametrize("tracker", ["crepe", "yin"])
def test_phrase_recording_to_dataset(tmp_path, tracker):
    if tracker == "crepe" and not _have_crepe():
        pytest.skip("torchcrepe not installed")
    rec = tmp_path / "rec"
    bd.render_phrases(71, str(rec), n=1, n_notes=6, seed=3)  # clarinet, legato + gaps
    gt = json.loads((rec / "phrase00.json").read_text())["notes"]
    idx = bd.build_from_recordings(str(rec), str(tmp_path / "ds"), "mine", tracker=tracker,
                                   quiet=True)
    exs = load_dataset(tmp_path / "ds")
    assert len(exs) == len(idx["examples"]) >= 1
    det = idx["examples"]
    found = 0
    for n in gt:
        o = n["onset_tick"] * spec.HOP
        m = [e for e in det if abs(e["source_onset_sample"] - o) <= 0.06 * spec.SAMPLE_RATE]
        found += bool(m) and m[0]["pitch"] == n["pitch"]
    assert found >= len(gt) - 1, (found, [(n["pitch"], n["onset_tick"] * 192) for n in gt],
                                  [(e["pitch"], e["source_onset_sample"]) for e in det])
    assert len(det) <= len(gt) + 1
    for e in exs:
        assert e.split in ("train", "test") and e.kind == "recording"
        assert len(e.audio) == e.n_frames * spec.HOP and 1 <= e.velocity <= 127
        assert 0 < e.release_sample <= len(e.audio)
        # the tracked pitch curve is near the note's pitch on the held part
        held = e.pitch_frames[: e.release_sample // spec.HOP]
        assert np.median(np.abs(held - e.pitch)) < 0.5
    assert idx["source"]["type"] == "recordings"


@pytest.mark.skipif(not HAVE_FS, reason="fluidsynth / FluidR3_GM not installed")
def test_recordings_to_playable_instrument_end_to_end(tmp_path):
    """A folder of audio files (no MIDI) -> dataset -> `rtsynth train` (tiny, CPU) -> model folder
    -> `rtsynth render -i FOLDER`: the whole path a player takes with their own recordings."""
    import soundfile as sf
    from rtsynth import cli as rcli
    from rtsynth.train import cli as tcli
    src = tmp_path / "src"
    bd.render_phrases(71, str(src), n=2, n_notes=5, seed=5)
    rec = tmp_path / "takes"
    rec.mkdir()
    for w in src.glob("*.wav"):  # only the audio goes in
        shutil.copy(w, rec / w.name)
    idx = bd.build_from_recordings(str(rec), str(tmp_path / "ds"), "mine", tracker="yin",
                                   quiet=True)
    assert idx["source"]["type"] == "recordings" and len(idx["examples"]) >= 6
    from rtsynth.dataset import accuracy as import_accuracy
    acc = import_accuracy.accuracy(str(src), str(tmp_path / "ds"))
    assert acc["played"] == 10 and acc["found"] >= 8 and acc["right_pitch"] >= 7, acc
    assert abs(acc["after_silence"]["median_ms"]) <= 10, acc
    out, run = tmp_path / "mine-model", tmp_path / "run"
    assert tcli.main([str(tmp_path / "ds"), "-o", str(out), "--run-dir", str(run), "--tiny",
                      "--backbone", "gru", "--batch", "4", "--crop", "64", "--steps", "30",
                      "--device", "cpu", "--quiet", "--log-every", "1", "--lr", "3e-3"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["source"]["type"] == "recordings" and cfg["source"]["files"]
    assert "a folder of recordings" in (out / "README.md").read_text()
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    loss = [r["mrstft"] for r in log if "mrstft" in r]
    assert len(loss) == 30 and np.mean(loss[-5:]) < np.mean(loss[:5])  # it learns
    wav = tmp_path / "played.wav"
    assert rcli.main(["render", str(src / "phrase00.mid"), "-o", str(wav), "-i", str(out)]) == 0
    y, sr = sf.read(str(wav))
    assert sr == spec.SAMPLE_RATE and np.isfinite(y).all()
    assert 1e-3 < np.abs(y).max() <= 1.0
