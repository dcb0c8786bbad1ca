"""LV2 hosting through liblilv with real Debian plugins (swh-lv2, x42-plugins, synthv1-lv2,
installed by setup.sh)."""

from __future__ import annotations

import math
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

from rtsynth.lv2 import _lilv

pytestmark = pytest.mark.skipif(not _lilv.available(), reason="liblilv is not installed")

AMP = "http://plugin.org.uk/swh-plugins/amp"            # mono, 'gain' in dB
BALANCE = "http://gareus.org/oss/lv2/balance"           # stereo, 'trim' in dB
DPL = "http://gareus.org/oss/lv2/dpl#stereo"            # a limiter with look-ahead latency
SYNTHV1 = "http://synthv1.sourceforge.net/lv2"          # an instrument that requires the worker
SR = 48000


def _need(uri):
    from rtsynth.lv2.world import plugin_uris
    if uri not in plugin_uris():
        pytest.fail(f"{uri} is not installed: setup.sh installs it")


def _tone(n, f=1000.0, a=0.25, phase=0.0):
    t = np.arange(n) / SR
    return (a * np.sin(2 * np.pi * f * t + phase)).astype(np.float32)


def test_describe_ports_through_lilv():
    from rtsynth.lv2.world import plugin_info
    _need(AMP)
    info = plugin_info(AMP)
    assert not info.instrument
    assert [p.symbol for p in info.controls] == ["gain"]
    g = info.control("gain")
    assert (g.minimum, g.maximum, g.default) == (-70.0, 70.0, 0.0)
    assert len(info.audio_in) == 1 and len(info.audio_out) == 1
    syn = plugin_info(SYNTHV1)
    assert syn.instrument and syn.midi_in
    assert "http://lv2plug.in/ns/ext/worker#schedule" in syn.required_features
    assert plugin_info(DPL).latency_port is not None


@pytest.mark.parametrize("db", [-6.0, -20.0, 3.5])
def test_gain_plugin_changes_level_by_its_setting(db):
    from rtsynth.lv2.host import Instance
    _need(AMP)
    _need(BALANCE)
    x = _tone(128)
    amp = Instance(AMP, SR, 128, {"gain": db})
    amp.audio_in[0][:] = x
    assert amp.run(128)
    got = 20 * np.log10(np.sqrt(np.mean(amp.audio_out[0] ** 2)) / np.sqrt(np.mean(x ** 2)))
    assert abs(got - db) < 1e-4
    bal = Instance(BALANCE, SR, 128, {"trim": db})
    for _ in range(200):                    # x42 balance smooths its gain: let it settle
        bal.audio_in[0][:] = x
        bal.audio_in[1][:] = 0.5 * x
        bal.run(128)
    for out, ref in zip(bal.audio_out, (x, 0.5 * x)):
        got = 20 * np.log10(np.sqrt(np.mean(out ** 2)) / np.sqrt(np.mean(ref ** 2)))
        assert abs(got - db) < 1e-3


def test_mono_plugin_on_stereo_master_one_instance_per_channel():
    from rtsynth.dsp.effects import FxChain, MasterState
    _need(AMP)
    n = 1024
    buf = np.stack([_tone(n, 440.0), _tone(n, 660.0, 0.1)], axis=1)
    chain = FxChain([(AMP, {"gain": "-6"})], SR, n)
    st = chain.stages[0]
    assert st.mode == "mono" and len(st.instances) == 2
    y = buf.copy()
    chain.process(y)
    k = 10 ** (-6 / 20)
    np.testing.assert_allclose(y, buf * k, rtol=1e-5, atol=1e-7)   # each side alone, scaled
    # in the master chain, before the limiter: exactly the plugin's gain on the whole output
    a, b = MasterState(SR, reverb=0.0), MasterState(SR, reverb=0.0)
    b.fx = FxChain([(AMP, {"gain": "-6"})], SR, n)
    ya, yb = buf.copy(), buf.copy()
    a.process(ya, 0.5)
    b.process(yb, 0.5)
    np.testing.assert_allclose(yb, ya * k, rtol=1e-4, atol=1e-7)


def test_stereo_plugin_and_latency_reported():
    from rtsynth.dsp.effects import FxChain
    _need(DPL)
    chain = FxChain([(DPL, {"threshold": -1}), (BALANCE, {"trim": 0})], SR, 256)
    assert [s.mode for s in chain.stages] == ["stereo", "stereo"]
    buf = np.zeros((256, 2), np.float32)
    chain.process(buf)
    assert chain.latency > 0                   # x42 dpl's look-ahead, from its latency port


def test_errors_name_what_is_valid():
    from rtsynth.lv2.host import Instance
    from rtsynth.lv2.world import LV2Error
    _need(AMP)
    with pytest.raises(LV2Error, match="no LV2 plugin 'http://example.org/none'"):
        Instance("http://example.org/none", SR, 128)
    with pytest.raises(LV2Error, match=r"has no control 'volume' \(its controls: gain\)"):
        Instance(AMP, SR, 128, {"volume": 1})
    with pytest.raises(LV2Error, match=r"gain=90 is out of range \[-70, 70\]"):
        Instance(AMP, SR, 128, {"gain": 90})


@pytest.mark.parametrize("fx, expect", [
    ("http://example.org/none gain=1", "no LV2 plugin 'http://example.org/none'"),
    (f"{AMP} volume=1", "has no control 'volume' (its controls: gain)"),
    (f"{AMP} gain=99", "gain=99 is out of range [-70, 70]"),
    (f"{AMP} gain", "'gain' is not symbol=value"),
])
def test_cli_fx_errors_one_line_exit_2(tmp_path, fx, expect):
    out = tmp_path / "x.wav"
    p = subprocess.run([sys.executable, "-m", "rtsynth.cli", "render", "--demo", "-q", "-o",
                        str(out), "--fx", fx], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("rtsynth: error:") and expect in lines[0], \
        p.stderr
    assert not out.exists()


def test_nan_or_absurd_output_is_bypassed_with_one_warning():
    from rtsynth.dsp.effects import FxChain
    from rtsynth.lv2.host import Instance
    _need(AMP)
    said = []
    amp = Instance(AMP, SR, 64, {"gain": 0}, warn=said.append)
    amp.audio_in[0][:] = np.nan
    assert not amp.run(64)
    assert amp.bypassed and len(said) == 1 and "not finite" in said[0]
    assert not np.any(amp.audio_out[0])
    amp.audio_in[0][:] = np.nan
    amp.run(64)
    assert len(said) == 1                                  # said once
    loud = Instance(AMP, SR, 64, {"gain": 70}, warn=said.append)
    loud.audio_in[0][:] = 0.5
    assert not loud.run(64) and "above +20 dBFS" in said[-1]
    # in a master chain, a bypassed effect passes its input through
    chain = FxChain([(AMP, {"gain": 70})], SR, 64)
    for inst in chain.stages[0].instances:
        inst.warn = said.append
    buf = np.full((64, 2), 0.5, np.float32)
    chain.process(buf)
    assert np.all(buf == 0.5)


def _pitch(x, lo, hi):
    n = len(x)
    spec = np.abs(np.fft.rfft(x * np.hanning(n), 1 << 18))
    f = np.fft.rfftfreq(1 << 18, 1 / SR)
    m = (f > lo) & (f < hi)
    return f[m][np.argmax(spec[m])]


def test_lv2_synth_plays_in_tune_through_atom_midi_and_worker_feature():
    from rtsynth.lv2.host import Instance
    _need(SYNTHV1)
    s = Instance(SYNTHV1, SR, 128)
    assert s.has_midi and s._worker is not None          # it requires worker:schedule
    blocks = []
    for k in range(400):
        if k == 2:
            s.midi(17, 0x90, 69, 100)                     # A4 at a frame inside the block
        s.run(128)
        blocks.append(np.array(s.audio_out[0]))
    y = np.concatenate(blocks)
    onset = int(np.argmax(np.abs(y) > 1e-4))
    assert 2 * 128 + 17 <= onset < 2 * 128 + 17 + 64      # sounds at its frame offset
    f = _pitch(y[12000:12000 + 32768], 400, 480)
    assert abs(1200 * math.log2(f / 440.0)) < 10


def test_synthv1_voices_keep_history_a_fresh_instance_forgets_it():
    """synthv1 remembers the notes it played: a voice's parameter ramps (volume, panning,
    balance, pressure: synthv1_ramp) start at note-on from the values they reached for the
    voice's note before (from 0 in a new instance), so a note after another differs in its
    first ~43 samples, then has the same samples. Its activate/all-sound-off do not forget
    this; the rack's reset makes a fresh instance, which plays the note as the first one. (Why
    live == offline holds for a take the player plays first: tests/test_host_live.py.)"""
    from rtsynth.host.rack import LV2Part
    _need(SYNTHV1)
    part = LV2Part(SYNTHV1, SR, 128, 1.0)

    def take():
        t = part.time
        part.push(t + 2 * 128 + 61, (0x91, 69, 100))
        part.push(t + 60 * 128 + 10, (0x81, 69, 0))
        return np.concatenate([part.render(128)[:, 0].copy() for _ in range(120)])

    first, again = take(), take()
    d = np.abs(again - first)
    hit = np.nonzero(d > 1e-6)[0] - (2 * 128 + 61)          # from the note-on
    assert d.max() > 1e-2 and 0 <= hit[0] and hit[-1] < 64, (d.max(), hit[:1], hit[-1:])
    part.reset()
    part.time = 0
    assert np.array_equal(take(), first)


def test_plugin_own_thread_setup_waited_for_before_the_first_note():
    """synthv1 builds a band-limited pulse table on its own scheduler thread (~0.4 s of CPU)
    once its first run sees the controls; its voices use what is there meanwhile. A settled
    instance has waited for it: a note at once gives the same samples as a note seconds
    later (a render's first note and a player's); it did not (0.4 apart) before."""
    from rtsynth.lv2.host import make_instance, wait_plugin_threads
    from rtsynth.lv2.world import plugin_info
    _need(SYNTHV1)
    info = plugin_info(SYNTHV1)
    ctl = {"DCO1_SHAPE1": 0.0, "DCO1_BANDL1": 1.0, "DCO1_SHAPE2": 0.0, "DCO1_BANDL2": 1.0}

    def note(inst):
        out = []
        for k in range(40):
            if k == 0:
                inst.midi(5, 0x90, 57, 100)
            inst.run(128)
            out.append(np.array(inst.audio_out[0]))
        return np.concatenate(out)

    late = make_instance(info, SR, 128, ctl)
    assert wait_plugin_threads()
    ref = note(late)
    now = note(make_instance(info, SR, 128, ctl))
    assert np.max(np.abs(ref)) > 1e-2
    assert np.array_equal(now, ref), float(np.max(np.abs(now - ref)))


def test_run_path_allocates_nothing():
    from rtsynth.lv2.host import Instance
    _need(SYNTHV1)
    s = Instance(SYNTHV1, SR, 128)
    for _ in range(20):
        s.run(128)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for k in range(1000):
            if k % 10 == 0:
                s.midi(3, 0x90, 60 + k % 12, 100)
            elif k % 10 == 5:
                s.midi(7, 0x80, 60 + (k - 5) % 12, 0)
            s.run(128)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(d.size_diff for d in after.compare_to(before, "filename")
                if "tracemalloc" not in str(d.traceback))
    assert grown < 2048, grown


def test_plugins_subcommand_lists_uri_kind_ports_controls():
    p = subprocess.run([sys.executable, "-m", "rtsynth.cli", "plugins"], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert f"{AMP}\n  Simple amplifier: effect" in out
    assert "gain = 0  [-70 .. 70]" in out
    assert f"{SYNTHV1}\n  synthv1: instrument" in out and "MIDI 1 in" in out
    q = subprocess.run([sys.executable, "-m", "rtsynth.cli", "plugins", "--instruments",
                        "--brief"], capture_output=True, text=True, timeout=120)
    assert SYNTHV1 in q.stdout and AMP not in q.stdout


def test_state_interface_saved_and_restored_across_a_fresh_instance():
    """``state:interface``: what a plugin keeps beside its control ports (x42 balance: its
    settings string; fil4: display settings) survives the fresh instance a reset makes."""
    from rtsynth.dsp.effects import FxChain
    from rtsynth.lv2.host import Instance
    _need(BALANCE)
    a = Instance(BALANCE, SR, 128)
    st = a.save_state()
    assert st and st[0][0].startswith("http://gareus.org/oss/lv2/balance")
    b = Instance(BALANCE, SR, 128)
    b.restore_state(st)
    assert b.save_state() == st
    chain = FxChain([("http://gareus.org/oss/lv2/fil4#stereo", {})], SR, 128)
    before = chain.stages[0].instances[0].save_state()
    assert len(before) >= 4
    old = chain.stages[0].instances[0]
    chain.reset()
    assert chain.stages[0].instances[0] is not old
    assert chain.stages[0].instances[0].save_state() == before
    assert Instance(SYNTHV1, SR, 128).save_state() == []      # nothing beyond its controls


ZCONV = "http://gareus.org/oss/lv2/zeroconvolv#Stereo"


def test_preset_state_worker_and_latency_with_a_real_convolver():
    """x42's preset convolver: its 'No-OP Stereo' preset (an LV2 preset whose state:state names
    an impulse-response file, a 64-sample delta) is restored through lilv, the plugin loads the
    file in the worker, and the output is the input delayed by exactly the latency it
    reports."""
    from rtsynth.dsp.effects import FxChain, parse_fx
    from rtsynth.lv2.world import LV2Error
    _need(ZCONV)
    uri, params = parse_fx(f"{ZCONV} preset='No-OP Stereo'")
    assert params == {"preset": "No-OP Stereo"}
    chain = FxChain([(uri, params)], SR, 128)
    inst = chain.stages[0].instances[0]
    assert inst._worker is not None and inst._worker.count >= 1   # the file loaded as work
    lat = chain.latency
    assert lat == 64
    x = np.zeros((4096, 2), np.float32)
    x[1000, 0], x[1500, 1] = 1.0, 0.5
    y = np.zeros_like(x)
    for k in range(0, 4096, 128):
        b = x[k:k + 128].copy()
        chain.process(b)
        y[k:k + 128] = b
    np.testing.assert_allclose(y[lat:], x[:-lat], atol=1e-6)
    with pytest.raises(LV2Error, match=r"has no preset 'Hall' \(its presets: 'No-OP Stereo'\)"):
        FxChain([(ZCONV, {"preset": "Hall"})], SR, 128)


def test_render_with_effects_reports_their_latency(tmp_path):
    _need(DPL)
    out = tmp_path / "fx.wav"
    p = subprocess.run([sys.executable, "-m", "rtsynth.cli", "render", "--demo", "-q", "-i",
                        "basic", "-o", str(out), "--fx", f"{DPL} threshold=-3", "--fx",
                        f"{AMP} gain=-3"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "latency 64 frames" in p.stderr and "delay the output by 64 frames" in p.stderr
    assert "Simple amplifier (mono)" in p.stderr
    import soundfile as sf
    y, _ = sf.read(out, dtype="float32")
    assert np.all(np.isfinite(y)) and 0.001 < np.max(np.abs(y)) <= 1.0
