"""The rack live through JACK (dummy server): an LV2 synth on channel 2 beside a neural
instrument on channel 1 gives the same samples live as an offline render of the same events."""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest

from rtsynth.lv2 import _lilv
from rtsynth.testing.jackrig import pitch_cents, wait_for_ports
from rtsynth.testing.procs import ManagedProcess

pytestmark = pytest.mark.skipif(not _lilv.available(), reason="liblilv is not installed")

SR = 48000
SYNTHV1 = "http://synthv1.sourceforge.net/lv2"
RACK = ["--channel", "1=flute-lite", "--channel", f"2=lv2:{SYNTHV1}", "--reverb", "0"]


def run_clean(rig, events, n_frames, tries=6):
    for _ in range(tries):
        res = rig.run(events, n_frames)
        if res.complete and res.late_events == 0 and res.xruns == 0:
            return res
    return res


@pytest.fixture(scope="module")
def live_rack(jack_server, jack_rig):
    cmd = [sys.executable, "-m", "rtsynth.cli", "play", "--driver", "jack", *RACK]
    env = dict(jack_server.env, PYTHONUNBUFFERED="1")
    with ManagedProcess(cmd, env=env, ready=r"rtsynth: latency", ready_timeout=180) as proc:
        wait_for_ports(jack_rig.rx, r"^rtsynth$", midi=True, is_input=True)
        import jack
        for attempt in range(10):            # a port can be listed a moment before it connects
            try:
                jack_rig.connect_midi("rtsynth:midi_in")
                jack_rig.connect_audio(["rtsynth:out_1", "rtsynth:out_2"])
                break
            except jack.JackError:
                if attempt == 9:
                    raise
                jack_rig.disconnect_all()
                time.sleep(0.5)
        line = next(l for _, l in proc.lines if "latency MIDI->audio" in l)
        latency = int(line.split("latency MIDI->audio ")[1].split()[0])
        yield jack_rig, proc, latency


def test_lv2_synth_beside_neural_live_equals_offline(live_rack, tmp_path):
    rig, proc, latency = live_rack
    playing = next(l for _, l in proc.lines if "rtsynth: playing" in l)
    assert "flute-lite" in playing and "synthv1" in playing
    ev = [(10, bytes([0x90, 72, 90])), (200, bytes([0x91, 69, 100])),
          (12000, bytes([0x80, 72, 0])), (30000, bytes([0x81, 69, 0])),
          (34000, bytes([0x91, 76, 90])), (34100, bytes([0x90, 67, 80])),
          (46000, bytes([0x81, 76, 0])), (47000, bytes([0x80, 67, 0]))]
    res = run_clean(rig, ev, 66000)
    assert res.complete and res.late_events == 0
    frames = res.event_frames
    base = int(frames[0])
    import mido
    mid = mido.MidiFile(ticks_per_beat=SR // 100)
    tr = mido.MidiTrack()
    mid.tracks.append(tr)
    tr.append(mido.MetaMessage("set_tempo", tempo=10000, time=0))   # 1 tick = 1/48000 s
    last = base
    for f, (_, data) in zip(frames, ev):
        tr.append(mido.Message.from_bytes(data, time=int(f) - last))
        last = int(f)
    path = tmp_path / "same.mid"
    mid.save(path)
    from rtsynth.cli import main
    out = tmp_path / "same.wav"
    assert main(["render", str(path), "-o", str(out), "-z", "128", "-q", *RACK]) == 0
    import soundfile as sf
    off, _ = sf.read(out, dtype="float32")
    live = res.audio.T[base + latency:]
    n = min(len(live), len(off)) - 100
    assert np.max(np.abs(off[:n])) > 1e-2
    # 24-bit rounding (6e-8), float32 rounding of the neural batches: far below a sample's
    # worth of offset (the signal moves ~1e-3 a sample)
    assert np.max(np.abs(live[:n] - off[:n])) < 1e-4
    # the synth's A4 (channel 2) sounds in tune in the live mix, once the flute has ended
    seg = live[19000:29000].mean(axis=1)
    assert abs(pitch_cents(seg, SR, 440.0)[1]) < 10


MULTI = ["--multi-out", "--channel", "1=flute-lite", "--channel", f"2=lv2:{SYNTHV1}",
         "--reverb", "0"]


def test_multi_out_pairs_carry_each_part_alone_and_sum_to_the_master(jack_server, live_rack):
    """``--multi-out``: each part's own stereo pair besides the master pair (channel 1's
    flute, channel 2's synth, and the default instrument the other channels share)."""
    import jack
    from rtsynth.dsp.effects import MasterState
    from rtsynth.testing.jackrig import JackRig
    _, first, _ = live_rack
    first.stop()                                    # one rtsynth client at a time
    cmd = [sys.executable, "-m", "rtsynth.cli", "play", "--driver", "jack", *MULTI]
    env = dict(jack_server.env, PYTHONUNBUFFERED="1")
    pairs = ["out_1", "out_2", "ch1_L", "ch1_R", "ch2_L", "ch2_R", "other_L", "other_R"]
    with ManagedProcess(cmd, env=env, ready=r"rtsynth: latency", ready_timeout=180) as proc, \
            JackRig(n_inputs=len(pairs), name="rig8", servername=jack_server.name,
                    max_seconds=10) as rig:
        wait_for_ports(rig.rx, r"^rtsynth$", midi=True, is_input=True)
        names = {p.name for p in rig.rx.get_ports("rtsynth:")}
        assert {f"rtsynth:{p}" for p in pairs} <= names, names
        for attempt in range(10):
            try:
                rig.connect_midi("rtsynth:midi_in")
                for p, i in zip(pairs, rig.inputs):
                    rig.rx.connect(f"rtsynth:{p}", i)
                break
            except jack.JackError:
                if attempt == 9:
                    raise
                rig.disconnect_all()
                time.sleep(0.5)
        line = next(l for _, l in proc.lines if "latency MIDI->audio" in l)
        latency = int(line.split("latency MIDI->audio ")[1].split()[0])
        ev = [(100, bytes([0x90, 72, 90])), (12000, bytes([0x80, 72, 0])),        # ch1 flute
              (16000, bytes([0x91, 69, 100])), (28000, bytes([0x81, 69, 0])),     # ch2 synth
              (34000, bytes([0x92, 64, 90])), (46000, bytes([0x82, 64, 0]))]      # ch3: other
        res = run_clean(rig, ev, 60000)
        assert res.complete and res.late_events == 0
    a = res.audio                                   # [8, frames]
    base = int(res.event_frames[0]) + latency
    master, parts = a[0:2, base:], [a[k:k + 2, base:] for k in (2, 4, 6)]
    rms = lambda x, lo, hi: float(np.sqrt(np.mean(x[:, lo:hi] ** 2)))
    spans = [(500, 11500), (16500, 27500), (34500, 45500)]
    for k, part in enumerate(parts):   # each pair: its own part, nothing of the others' notes
        for j, (lo, hi) in enumerate(spans):
            if j == k:
                assert rms(part, lo, hi) > 1e-2, (k, j)
            else:                          # (after the first 3000 frames: a release tail)
                assert rms(part, lo + 3000, hi) < 0.01 * rms(parts[j], lo + 3000, hi), (k, j)
    total = np.ascontiguousarray((parts[0] + parts[1] + parts[2]).T)
    m = MasterState(SR, reverb=0.0)
    m.process(total, 1.0)                          # the master chain on the sum of the pairs
    n = total.shape[0] - 200
    assert np.max(np.abs(total[:n] - master.T[:n])) < 1e-5
    seg = parts[1][:, 17000 + 3000:27000].mean(axis=0)
    assert abs(pitch_cents(seg, SR, 440.0)[1]) < 10
