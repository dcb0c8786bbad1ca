"""FluidSynth, the peer, measured through the same harness (needs fluidsynth + FluidR3 GM)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from rtsynth.bench.measure import (chorale_midi, measure_latency, measure_render,
                                   measure_startup)
from rtsynth.bench.synths import LiveSynth, find_sf2, fluidsynth_spec
from rtsynth.testing.jackrig import pitch_cents
from rtsynth.testing.pytest_fixtures import jack_rig, jack_server  # noqa: F401

pytestmark = pytest.mark.skipif(shutil.which("fluidsynth") is None or find_sf2() is None,
                                reason="fluidsynth / FluidR3_GM.sf2 not installed")


def test_fluidsynth_startup_and_latency(jack_server, jack_rig):
    live = LiveSynth(fluidsynth_spec(), jack_server.env, jack_rig, jack_rig.blocksize)
    try:
        st = measure_startup(live, timeout=60)
        assert st["first_sound_s"] is not None and st["first_sound_s"] > 0
        assert st["ports_s"] <= st["first_sound_s"] + 0.05
        lat = measure_latency(live, n_notes=30, spacing=4800)
    finally:
        live.stop()
    assert live.proc.proc.returncode is not None          # ended (by its PID)
    heard = lat["n"]
    assert heard >= 20 and lat["missed"] == 0
    # FluidSynth applies an event at the start of the block it arrives in: its sound starts up
    # to one block *before* the event's frame, never later than a few periods after it
    b = jack_rig.blocksize
    assert -b <= lat["min"] <= lat["median"] <= lat["max"] < 8 * b


def test_fluidsynth_pitch_through_rig(jack_server, jack_rig):
    with LiveSynth(fluidsynth_spec(), jack_server.env, jack_rig, 128) as live:
        res = jack_rig.run([(0, bytes([0xC0, 73])), (512, bytes([0x90, 69, 100])),
                            (512 + 24000, bytes([0x80, 69, 0]))], 30000)
    on = res.event_frames[1]
    seg = res.audio[:, on + 4800:on + 19200]
    assert np.abs(seg).max() > 1e-3
    f, cents = pitch_cents(seg, 48000, 440.0)
    assert abs(cents) < 5                                   # FluidR3 flute A4 (its organ and violin samples are 7-9 cents off)


def test_fluidsynth_offline_render(tmp_path):
    row = measure_render("fluidsynth", chorale_midi(tmp_path), workdir=str(tmp_path))
    assert "error" not in row, row
    assert row["audio_s"] > 10 and row["x_realtime"] > 0
