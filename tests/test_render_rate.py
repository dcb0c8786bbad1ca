"""``rtsynth render`` stamps the MIDI file's events at the engine's rate (they were read at
48 kHz whatever the rate: ``-i basic -r 44100`` stretched the music by 8.8%, ``-r 96000``
played it nearly twice as fast)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from rtsynth.cli import main
from rtsynth.testing.hostile import smf, track


def _onsets(x: np.ndarray, sr: int) -> list[float]:
    """Seconds where the signal rises above a tenth of its peak after 0.3 s below it."""
    loud = np.flatnonzero(np.abs(x).max(axis=1) > 0.1 * np.abs(x).max())
    starts = np.concatenate([loud[:1], loud[1:][np.diff(loud) > 0.3 * sr]])
    return [i / sr for i in starts]


@pytest.mark.parametrize("rate", [44100, 96000, 22050])
def test_render_keeps_the_music_time_at_any_rate(tmp_path, capsys, rate):
    # 120 bpm, 96 ticks a beat: notes at 0.5 s and 2.0 s, each 0.25 s long
    mid = tmp_path / "two.mid"
    mid.write_bytes(smf([track([(96, b"\x90\x45\x64"), (48, b"\x80\x45\x00"),
                                (240, b"\x90\x48\x64"), (48, b"\x80\x48\x00")])]))
    out = tmp_path / "o.wav"
    rc = main(["render", str(mid), "-o", str(out), "-i", "basic", "-r", str(rate), "-q",
               "--reverb", "0"])
    assert rc == 0, capsys.readouterr().err
    x, sr = sf.read(out, dtype="float32")
    assert sr == rate
    on = _onsets(x, sr)
    assert len(on) == 2, on
    # the same attack for both notes: their distance is the music's, 1.5 s (read at 48 kHz it
    # was 1.633 s at 44.1 kHz, 0.75 s at 96 kHz)
    assert abs((on[1] - on[0]) - 1.5) < 0.003, on
    assert 0.5 <= on[0] < 0.6, on
