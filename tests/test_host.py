"""The rack: an instrument per MIDI channel (GM program changes, --channel, channel 10),
the sum of the parts, an LV2 synth beside a neural instrument, stems."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys

import numpy as np
import pytest

from rtsynth.host import gm
from rtsynth.lv2 import _lilv

SR = 48000
SF2 = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
SYNTHV1 = "http://synthv1.sourceforge.net/lv2"
AMP = "http://plugin.org.uk/swh-plugins/amp"
needs_lilv = pytest.mark.skipif(not _lilv.available(), reason="liblilv is not installed")

#: four parts, each with its GM program: violin 40, flute 73, trumpet 56, cello 42
PARTS = [(0, 40, [76, 74, 72, 71, 72, 74]), (1, 73, [72, 71, 69, 67, 69, 71]),
         (2, 56, [64, 65, 64, 62, 64, 65]), (3, 42, [38, 41, 45, 43, 41, 38])]
BEAT = 0.5


def write_midi(path, parts, drums=False, programs=True):
    import mido
    mf = mido.MidiFile(type=1, ticks_per_beat=480)
    t0 = mido.MidiTrack()
    mf.tracks.append(t0)
    t0.append(mido.MetaMessage("set_tempo", tempo=int(BEAT * 1e6)))
    for ch, prog, notes in parts:
        tr = mido.MidiTrack()
        mf.tracks.append(tr)
        if programs:
            tr.append(mido.Message("program_change", channel=ch, program=prog, time=0))
        for n in notes:
            tr.append(mido.Message("note_on", channel=ch, note=n, velocity=90, time=0))
            tr.append(mido.Message("note_off", channel=ch, note=n, velocity=0, time=480))
    if drums:
        tr = mido.MidiTrack()
        mf.tracks.append(tr)
        for i in range(6):
            tr.append(mido.Message("note_on", channel=9, note=36, velocity=100,
                                   time=0 if i == 0 else 400))
            tr.append(mido.Message("note_off", channel=9, note=36, velocity=0, time=80))
    mf.save(path)
    return path


def rack_args(**kw):
    a = argparse.Namespace(sample_rate=None, gain=0.5, reverb=0.0, polyphony=32,
                           timbre_cc=None, instrument=None, gm=False)
    for k, v in kw.items():
        setattr(a, k, v)
    return a


def render_rack(events, specs=None, per_channel=False, master=False, block=4096, **kw):
    from rtsynth.host.wiring import build_rack
    from rtsynth.render import render_events
    rack = build_rack(rack_args(**kw), block, None, True, specs or {}, [],
                      per_channel=per_channel, master=master)
    try:
        return render_events(rack, events, tail=1.0), rack
    finally:
        rack.close()


def pad(a, n):
    return np.concatenate([a, np.zeros((n - len(a), 2), np.float32)]) if len(a) < n else a[:n]


# ------------------------------------------------------------------ the GM table
def test_gm_table_own_nearest_basic():
    avail = ["basic", "flute", "flute-lite", "violin-lite", "cello", "trumpet-lite",
             "clarinet-lite"]
    assert gm.model_for(73, avail) == ("flute-lite", None)
    assert gm.model_for(40, avail) == ("violin-lite", None)
    assert gm.model_for(42, avail) == ("cello", None)          # no cello-lite here: the full one
    name, notice = gm.model_for(41, avail)                       # viola
    assert name == "violin-lite" and "nearest" in notice and "program 42" in notice
    name, notice = gm.model_for(65, avail)                       # alto sax
    assert name == "clarinet-lite" and "reed family" in notice
    name, notice = gm.model_for(0, avail)                        # piano
    assert name == "basic" and "piano family" in notice
    assert gm.model_for(73, ["basic"])[0] == "basic"


# ------------------------------------------------------------------ routing and the sum
@pytest.fixture(scope="module")
def gm_file(tmp_path_factory):
    return write_midi(tmp_path_factory.mktemp("gm") / "four.mid", PARTS, drums=True)


def _events(path):
    from rtsynth.render import read_midi_events
    return read_midi_events(path)


def test_program_changes_route_each_channel_and_mute_percussion(gm_file, capfd):
    events = _events(gm_file)
    full, rack = render_rack(events)
    names = {p.name: p.channels for p in rack.part_list}
    assert names == {"violin": {0}, "flute-life": {1}, "trumpet-life": {2},
                     "cello-life": {3}}
    assert rack.stats["muted_percussion"] == 6
    err = capfd.readouterr().err
    assert err.count("channel 10 (GM percussion) is muted") == 1
    # the full render (no master chain) equals the sum of the parts rendered alone
    total = None
    for ch, _, _ in PARTS:
        alone = [(t, m) for t, m in events if m[0] & 0x0F == ch]
        part, r = render_rack(alone)
        assert [p.name for p in r.part_list] == [next(p.name for p in rack.part_list
                                                      if ch in p.channels)]
        part = pad(part, len(full))
        assert np.max(np.abs(part)) > 1e-2
        total = part if total is None else total + part
    assert np.max(np.abs(full - total)) < 1e-5
    # drums are never pitched: the rack's render with only channel 10 is silent
    drums = [(t, m) for t, m in events if m[0] & 0x0F == 9]
    y, r = render_rack(drums)
    assert not r.part_list and not np.any(y)


def _mss(a, b):
    """Log-magnitude STFT L1 over 2048/1024/512/256, unit-RMS signals (DESIGN's measure)."""
    n = min(len(a), len(b))
    a = a[:n] / (np.sqrt(np.mean(a[:n] ** 2)) + 1e-9)
    b = b[:n] / (np.sqrt(np.mean(b[:n] ** 2)) + 1e-9)
    d = 0.0
    for size in (2048, 1024, 512, 256):
        hop = size // 4
        w = np.hanning(size).astype(np.float32)
        frames = (n - size) // hop
        idx = np.arange(size)[None, :] + hop * np.arange(frames)[:, None]
        A = np.abs(np.fft.rfft(a[idx] * w, axis=1))
        B = np.abs(np.fft.rfft(b[idx] * w, axis=1))
        d += float(np.mean(np.abs(np.log(A + 1e-5) - np.log(B + 1e-5))))
    return d / 4


@pytest.mark.skipif(shutil.which("fluidsynth") is None, reason="fluidsynth not installed")
def test_each_part_closer_to_its_program_than_to_another(gm_file, tmp_path):
    """Each channel's part against FluidSynth's real sampled instrument of every program of
    the file, playing that part: the nearest is its own program."""
    import soundfile as sf
    events = _events(gm_file)
    programs = [p for _, p, _ in PARTS]
    for ch, prog, notes in PARTS:
        alone = [(t, m) for t, m in events if m[0] & 0x0F == ch]
        ours, _ = render_rack(alone)
        ours = ours.mean(axis=1)
        dists = []
        for other in programs:
            mid = write_midi(tmp_path / f"p{ch}_{other}.mid", [(0, other, notes)])
            wav = tmp_path / f"p{ch}_{other}.wav"
            subprocess.run(["fluidsynth", "-ni", "-R", "0", "-C", "0", "-g", "0.5", "-r",
                            str(SR), "-F", str(wav), SF2, str(mid)], check=True,
                           capture_output=True, timeout=120)
            ref, _ = sf.read(wav, dtype="float32")
            dists.append(_mss(ours, ref.mean(axis=1)))
        assert int(np.argmin(dists)) == programs.index(prog), (prog, dists)


def test_force_one_instrument_and_channel_specs(gm_file):
    events = _events(gm_file)
    _, rack = render_rack(events, instrument="basic")
    assert [p.name for p in rack.part_list] == ["basic"]       # -i: program changes ignored
    assert rack.program[9] is None                             # percussion still never pitched
    _, rack = render_rack(events, specs={1: "basic", 3: "basic"})
    names = sorted(p.name for p in rack.part_list)
    assert names == ["basic", "trumpet-life", "violin"]
    assert next(p for p in rack.part_list if p.name == "basic").channels == {1, 3}


# ------------------------------------------------------------------ an LV2 synth beside
@needs_lilv
def test_lv2_synth_in_tune_beside_a_neural_instrument():
    ev = []
    for k in range(3):
        t = int(k * 0.6 * SR)
        ev += [(t, bytes([0x90, 72, 90])), (t + int(0.5 * SR), bytes([0x80, 72, 0])),
               (t, bytes([0x91, 69, 100])), (t + int(0.5 * SR), bytes([0x81, 69, 0]))]
    ev.sort(key=lambda e: e[0])
    specs = {0: "flute-lite", 1: f"lv2:{SYNTHV1}"}
    full, rack = render_rack(ev, specs=specs)
    assert sorted(p.kind for p in rack.part_list) == ["engine", "lv2"]
    synth, _ = render_rack([e for e in ev if e[1][0] & 0x0F == 1], specs=specs)
    flute, _ = render_rack([e for e in ev if e[1][0] & 0x0F == 0], specs=specs)
    assert np.max(np.abs(full - pad(synth, len(full)) - pad(flute, len(full)))) < 1e-5
    from rtsynth.testing.jackrig import pitch_cents
    seg = synth.mean(axis=1)[int(0.1 * SR):int(0.45 * SR)]
    _, c = pitch_cents(seg, SR, 440.0)
    assert abs(c) < 10, c
    seg = full.mean(axis=1)[int(0.1 * SR):int(0.45 * SR)]
    assert abs(pitch_cents(seg, SR, 440.0)[1]) < 10       # the synth's A4 in the mix
    assert np.max(np.abs(flute)) > 1e-2 and np.max(np.abs(synth)) > 1e-2


# ------------------------------------------------------------------ stems
def test_stems_are_the_parts_and_sum_to_the_master(gm_file, tmp_path):
    import soundfile as sf
    from rtsynth.dsp.effects import MasterState
    out, stems = tmp_path / "mix.wav", tmp_path / "stems"
    p = subprocess.run([sys.executable, "-m", "rtsynth.cli", "render", str(gm_file), "-o",
                        str(out), "-q", "--reverb", "0", "-g", "0.3", "--stems", str(stems)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    files = sorted(stems.iterdir())
    assert [f.name for f in files] == ["ch01_violin.wav", "ch02_flute-life.wav",
                                       "ch03_trumpet-life.wav", "ch04_cello-life.wav"]
    mix, _ = sf.read(out, dtype="float32")
    parts = [sf.read(f, dtype="float32")[0] for f in files]
    assert all(len(q) == len(mix) for q in parts)
    total = np.sum(parts, axis=0).astype(np.float32)
    m = MasterState(SR, reverb=0.0)
    m.process(total, 1.0)
    assert np.max(np.abs(total - mix)) < 1e-6               # the 24-bit file's rounding
    for q in parts:                                          # each part alone
        assert np.max(np.abs(q)) > 1e-2


# ------------------------------------------------------------------ one voice pool
def sounding(rack):
    """``{instrument: sorted keys}`` of the voices that sound (not fading out)."""
    out = {}
    for p in rack.part_list:
        e = p.engine
        ns = e.n_slots
        act = np.flatnonzero((e.active[:ns] != 0) & (e.kill_start[:ns] < 0))
        out[p.name] = sorted(int(x) for x in e.note[act])
    return out


def test_one_voice_pool_steals_the_globally_right_voice():
    """--polyphony is one pool across the instruments: a note-on past it takes a released
    voice first (the one released longest ago), else the oldest held one, whichever instrument
    plays it; the count of sounding voices never exceeds the pool."""
    from rtsynth.host.wiring import build_rack
    rack = build_rack(rack_args(polyphony=4), 256, None, False, {0: "basic", 1: "flute-life"},
                      [])
    try:
        rack.warmup()
        t = rack.time
        ev = [(0, (0x90, 60)), (1000, (0x91, 67)), (2000, (0x90, 62)), (3000, (0x91, 69)),
              (4000, (0x90, 64)),                 # full: the oldest held, basic's 60
              (5000, (0x81, 67)), (6000, (0x91, 71)),   # the released flute 67, not basic's 62
              (7000, (0x90, 65)),                 # the oldest held now: basic's 62
              (8000, (0x91, 72))]                 # ... then the flute's 69
        for w, (st, key) in ev:
            rack.push(t + w, bytes([st, key, 0 if st & 0xF0 == 0x80 else 90]))
        want = {3500: {"basic": [60, 62], "flute-life": [67, 69]},
                4500: {"basic": [62, 64], "flute-life": [67, 69]},
                6500: {"basic": [62, 64], "flute-life": [69, 71]},
                7500: {"basic": [64, 65], "flute-life": [69, 71]},
                8500: {"basic": [64, 65], "flute-life": [71, 72]}}
        most = 0
        while rack.time < t + 9000:
            rack.render()
            most = max(most, rack._sounding())
            for w in [w for w in want if rack.time - 256 < t + w <= rack.time]:
                assert sounding(rack) == want[w], w
        assert most == 4
        assert rack.pool.steals == 4 and rack.stats["steals"] >= 3
    finally:
        rack.close()


def dense_events(n_notes=40, seed=3):
    """Overlapping notes on three channels, long enough to hold more than 8 at once."""
    rng = np.random.default_rng(seed)
    ev = [(0, bytes([0xC0 | c, p])) for c, p in ((0, 73), (1, 71), (2, 42))]
    for i in range(n_notes):
        c = i % 3
        on = 200 + i * 900 + int(rng.integers(0, 300))
        key = int(rng.integers(55, 80)) - 12 * (c == 2)
        ev.append((on, bytes([0x90 | c, key, int(rng.integers(60, 120))])))
        ev.append((on + int(rng.integers(3000, 12000)), bytes([0x80 | c, key, 0])))
    ev.append((12000, bytes([0xB0, 64, 127])))
    ev.append((20000, bytes([0xB0, 64, 0])))
    return sorted(ev, key=lambda e: e[0])


def test_voice_pool_is_the_same_whatever_the_block():
    """The pool decides from the MIDI alone: an offline render in 8192-frame blocks steals the
    same voices as one in 128-frame blocks (the live size), and never sounds more than the
    pool at a block's end."""
    ev = dense_events()
    a, rack = render_rack(ev, polyphony=8, block=8192, gain=0.3)
    assert rack.pool.steals > 5
    b, _ = render_rack(ev, polyphony=8, block=128, gain=0.3)
    full, _ = render_rack(ev, polyphony=64, block=8192, gain=0.3)
    n = min(len(a), len(b))
    assert np.max(np.abs(a[:n] - b[:n])) < 1e-4
    assert np.max(np.abs(a[:n] - full[:n])) > 1e-2          # the steals were heard

    from rtsynth.host.wiring import build_rack
    rack = build_rack(rack_args(polyphony=8), 128, None, True, {}, [])
    try:
        for w, m in ev:
            rack.push(w, m)
        most = 0
        while rack.time < ev[-1][0] + 4800:
            rack.render()
            most = max(most, rack._sounding())
        assert most == 8
    finally:
        rack.close()


@needs_lilv
def test_lv2_instrument_controls_on_its_channel():
    from rtsynth.host.wiring import build_rack
    from rtsynth.lv2.world import LV2Error
    rack = build_rack(rack_args(), 256, None, False,
                      {1: f"lv2:{SYNTHV1} DCO1_SHAPE1=2"}, [])
    try:
        part = next(p for p in rack.part_list if p.kind == "lv2")
        assert part.inst.get("DCO1_SHAPE1") == 2.0
        assert rack.channel_instrument(1) == f"lv2:{SYNTHV1}"
        assert rack.channel_instrument(9) == "muted (percussion)"
        rack.gain = 0.25
        assert part.gain == 0.25
    finally:
        rack.close()
    with pytest.raises(LV2Error, match="has no control 'NOPE'.*DCO1_SHAPE1"):
        build_rack(rack_args(), 256, None, False, {1: f"lv2:{SYNTHV1} NOPE=1"}, [])
    with pytest.raises(LV2Error, match="is an effect, not an instrument"):
        build_rack(rack_args(), 256, None, False, {1: f"lv2:{AMP}"}, [])


@needs_lilv
def test_channel_10_plays_the_lv2_instrument_set_for_it(gm_file, capfd):
    drums = [(t, m) for t, m in _events(gm_file) if m[0] & 0x0F == 9]
    y, rack = render_rack(drums, specs={9: f"lv2:{SYNTHV1}"})
    assert [(p.kind, p.channels) for p in rack.part_list] == [("lv2", {9})]
    assert rack.stats["muted_percussion"] == 0 and np.max(np.abs(y)) > 1e-2
    assert "muted" not in capfd.readouterr().err


def test_live_gm_rack_follows_program_changes_with_every_model_loaded(capfd):
    """play --gm: every model the GM table selects is built before the stream starts, so a
    program change on the audio path only switches; notices go out on their own thread."""
    import time
    from rtsynth.host.wiring import build_rack
    rack = build_rack(rack_args(gm=True), 256, None, False, {}, [])
    try:
        names = {p.name for p in rack.part_list}
        assert {"basic", "flute-life", "violin", "cello-life", "trumpet-life",
                "clarinet"} <= names
        rack.warmup()
        t = rack.time
        rack.push(t, bytes([0xC0, 40]))                     # violin
        rack.push(t + 1, bytes([0x90, 67, 90]))
        rack.push(t + 2, bytes([0xC1, 0]))                  # piano: basic, said once
        rack.push(t + 3, bytes([0x91, 60, 90]))
        rack.push(t + 4, bytes([0xC1, 1]))                  # another piano: said once too
        rack.render()
        by = {p.name: p.active_voices for p in rack.part_list}
        assert by["violin"] == 1 and by["basic"] == 1 and by["flute-life"] == 0
        time.sleep(0.3)
        err = capfd.readouterr().err
        assert err.count("program 1 (piano family)") == 1
        assert err.count("program 2 (piano family)") == 1
    finally:
        rack.close()


@needs_lilv
def test_rack_block_path_keeps_nothing_of_its_own():
    """The rack's own code (routing, the LV2 part and effects, the sum) holds no memory per
    block: what tracemalloc sees grow comes from no file of rtsynth/host, rtsynth/lv2 or the
    fx stage."""
    import tracemalloc
    from rtsynth.host.wiring import build_rack
    fx = [("http://gareus.org/oss/lv2/fil4#stereo", {}), (AMP, {"gain": -3})]
    rack = build_rack(rack_args(), 128, None, False, {0: "basic", 1: f"lv2:{SYNTHV1}"}, fx)
    try:
        rack.warmup()

        def play(blocks):
            for k in range(blocks):
                if k % 20 == 0:
                    rack.push(rack.time + 5, bytes([0x91, 60 + k % 7, 90]))
                    rack.push(rack.time + 7, bytes([0x90, 50 + k % 5, 90]))
                elif k % 20 == 10:
                    rack.push(rack.time + 5, bytes([0x81, 60 + (k - 10) % 7, 0]))
                    rack.push(rack.time + 7, bytes([0x80, 50 + (k - 10) % 5, 0]))
                rack.render()

        play(800)              # the voice pool full: its entries (and the steals) in use
        assert rack.pool.steals > 0
        tracemalloc.start()
        try:
            s0 = tracemalloc.take_snapshot()
            play(1500)
            s1 = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
        mine = [d for d in s1.compare_to(s0, "filename")
                if any(k in str(d.traceback) for k in ("rtsynth/host/", "rtsynth/lv2/",
                                                        "dsp/effects.py"))]
        assert sum(d.size_diff for d in mine) < 2048, mine
    finally:
        rack.close()


def test_rack_steals_hold_nothing_per_block():
    """Live-sized blocks with the pool stealing sounding voices (blocks cut at the steals):
    nothing of rtsynth/host or the engine grows while they play."""
    import tracemalloc
    from rtsynth.host.wiring import build_rack
    rack = build_rack(rack_args(polyphony=4), 128, None, False, {0: "basic", 1: "flute-lite"},
                      [])
    try:
        rack.warmup()

        def play(blocks):
            for k in range(blocks):
                if k % 6 == 0:            # a note every 6 blocks on each, held for 40
                    rack.push(rack.time + 30, bytes([0x90 | (k // 6) % 2, 50 + k % 30, 90]))
                elif k % 6 == 3 and k >= 40:
                    j = k - 40 - 3
                    rack.push(rack.time + 60, bytes([0x80 | (j // 6) % 2, 50 + j % 30, 0]))
                rack.render()
                assert rack._sounding() <= 4

        play(300)
        cut = rack.blocks_cut
        assert cut > 10
        tracemalloc.start()
        try:
            s0 = tracemalloc.take_snapshot()
            play(600)
            s1 = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
        assert rack.blocks_cut > cut + 20
        import linecache

        def queued(d):          # the engine's event queue, the push side: deque blocks
            f = d.traceback[0]
            return "self.events.append" in linecache.getline(f.filename, f.lineno)
        mine = [d for d in s1.compare_to(s0, "lineno")
                if any(k in str(d.traceback) for k in ("rtsynth/host/", "rtsynth/engine/"))
                and not queued(d)]
        assert sum(d.size_diff for d in mine) < 2048, mine
    finally:
        rack.close()


def test_parts_rendered_at_once_equal_one_after_another(gm_file, tmp_path, monkeypatch):
    """A file render spreads the sounding parts over two threads (each engine's own voice
    split kept, the master chain and the writing beside them): the file is the same, byte for
    byte, as the parts rendered one after another; chords make each engine split its
    voices."""
    from rtsynth.host.rack import Rack
    from rtsynth.host.wiring import build_rack
    from rtsynth.render import render_to_file
    events = []
    for t, m in _events(gm_file):
        events.append((t, m))
        if m[0] & 0xE0 == 0x80 and m[0] & 0x0F != 9:        # a third above every note
            events.append((t, bytes([m[0], m[1] + 4, m[2]])))

    def render(path):
        rack = build_rack(rack_args(reverb=0.12), 4096, None, True, {}, [])
        rack.processes = False          # the parts in this process (test_host_procs: forked)
        try:
            render_to_file(rack, list(events), path, tail=1.0)
        finally:
            rack.close()
        return rack

    from rtsynth.host.rack import _Ways
    monkeypatch.setattr(_Ways, "way", lambda self: True)
    at_once = render(tmp_path / "at_once.wav")
    assert at_once.blocks_at_once > 10
    # the two ways in turn, block by block (the rack picks the faster as it goes)
    monkeypatch.setattr(_Ways, "way", lambda self: self.k % 2 == 0)
    mixed = render(tmp_path / "mixed.wav")
    assert 5 < mixed.blocks_at_once < at_once.blocks_at_once
    monkeypatch.setattr(Rack, "_render_at_once", lambda self, n, task, outs: False)
    serial = render(tmp_path / "serial.wav")
    assert serial.blocks_at_once == 0
    a, b = (tmp_path / "at_once.wav").read_bytes(), (tmp_path / "serial.wav").read_bytes()
    assert len(a) > 100_000 and a == b
    assert (tmp_path / "mixed.wav").read_bytes() == a


def test_idle_part_skips_its_block_and_the_samples_are_the_same(tmp_path, monkeypatch):
    """A part with no voice, no event in the block and its channels' rows at rest renders no
    block (:meth:`EnginePart._at_rest`: silence, its clock on): the parts here play in turn
    (each idle while another sounds), with a volume change and a bend on a channel while it is
    idle (its gain row then smooths: no skip until it settles) and the master reverb's tail;
    the file is the same, byte for byte, as with every block rendered, and blocks were
    skipped."""
    from rtsynth.host.rack import EnginePart
    from rtsynth.host.wiring import build_rack
    from rtsynth.render import render_to_file
    events = []
    t = 0
    for ch, prog, notes in PARTS:
        events.append((t, bytes([0xC0 | ch, prog])))
        t += SR // 2
        for n in notes[:3]:
            events.append((t, bytes([0x90 | ch, n, 90])))
            events.append((t + SR // 4, bytes([0x80 | ch, n, 0])))
            t += SR // 3
        t += SR
    # the first part's channel while it is idle: volume and bend, then a note
    events += [(t, bytes([0xB0, 7, 60])), (t + 100, bytes([0xE0, 0, 80])),
               (t + SR, bytes([0x90, 72, 90])), (t + SR + SR // 4, bytes([0x80, 72, 0]))]
    events.sort(key=lambda e: e[0])

    def render(path):
        rack = build_rack(rack_args(reverb=0.12), 1024, None, True, {}, [])
        rack.processes = False
        try:
            render_to_file(rack, list(events), path, tail=1.0)
        finally:
            rack.close()
        return sum(p.skipped for p in rack.part_list if p.kind == "engine"), len(rack.part_list)

    skipped, parts = render(tmp_path / "skip.wav")
    assert parts == 4 and skipped > 50
    monkeypatch.setattr(EnginePart, "_at_rest", staticmethod(lambda e, n: False))
    assert render(tmp_path / "full.wav")[0] == 0
    a, b = (tmp_path / "skip.wav").read_bytes(), (tmp_path / "full.wav").read_bytes()
    assert len(a) > 100_000 and a == b
