"""Per-note expression and MPE, at the engine (offline, sample-exact): pitch, level and
brightness of each note measured from the rendered audio of the basic instrument; what a model
is fed (dynamics, brightness) read from the features it receives."""

import numpy as np
import pytest

from rtsynth import spec
from rtsynth.engine import Engine, control_map
from rtsynth.instruments import load_instrument
from rtsynth.instruments.base import StreamingInstrument
from rtsynth.render import offline_engine, render_events
from rtsynth.testing.jackrig import pitch_cents

SR = spec.SAMPLE_RATE


def hz(p):
    return 440.0 * 2 ** ((p - 69) / 12)


def bend(ch, semitones, rng):
    """A pitch bend message of ``semitones`` at bend range ``rng`` (14-bit, rounded)."""
    v = int(round(8192 + semitones / rng * 8192))
    v = min(max(v, 0), 16383)
    return (0xE0 | ch, v & 127, v >> 7)


def rpn(ch, lsb, value):
    return [(0xB0 | ch, 101, 0), (0xB0 | ch, 100, lsb), (0xB0 | ch, 6, value)]


def lower_zone(members=15):
    return rpn(0, 6, members)


def sec(t):
    return int(round(t * SR))


def play(events, seconds=1.2, block=128, mpe="auto", inst="basic", **kw):
    """Render ``[(seconds, msg)]`` through an engine with no master chain; mono float64."""
    kw = {"master": False, "gain": 1.0, **kw}
    e = Engine(load_instrument(inst) if isinstance(inst, str) else inst, block=block, mpe=mpe,
               **kw)
    for t, m in events:
        e.push(sec(t), m)
    n = int(seconds * SR) // block + 1
    x = np.concatenate([e.render().copy() for _ in range(n)])
    return x.mean(axis=1).astype(np.float64), e


def cents_at(x, t0, t1, expect):
    return pitch_cents(x[sec(t0):sec(t1)], SR, expect, search_cents=80)[1]


def level_db(x, t0, t1, f0):
    """The level of the component at ``f0`` (a note's fundamental) in a window, dB."""
    seg = x[sec(t0):sec(t1)]
    s = np.abs(np.fft.rfft(seg * np.hanning(len(seg)), 1 << 17))
    f = np.fft.rfftfreq(1 << 17, 1 / SR)
    band = (f > f0 * 0.985) & (f < f0 * 1.015)
    return 20 * np.log10(s[band].max())


def centroid(x, t0, t1, f0, n_harm=12):
    """Spectral centroid (Hz) of one note: over its own harmonics' magnitudes."""
    seg = x[sec(t0):sec(t1)]
    s = np.abs(np.fft.rfft(seg * np.hanning(len(seg)), 1 << 18))
    f = np.fft.rfftfreq(1 << 18, 1 / SR)
    mags = []
    for h in range(1, n_harm + 1):
        band = (f > h * f0 - 2) & (f < h * f0 + 2)
        mags.append(s[band].max())
    mags = np.array(mags)
    return float(np.sum(mags * f0 * np.arange(1, n_harm + 1)) / np.sum(mags))


A, B = 60, 64          # two notes whose fundamentals do not meet each other's harmonics


def two_members(*later, members=15):
    """Notes A on channel 2 and B on channel 3 (members of a lower zone), velocity 64."""
    return ([(0.0, m) for m in lower_zone(members)]
            + [(0.02, (0x91, A, 64)), (0.02, (0x92, B, 64))] + list(later))


def test_member_bend_moves_only_its_note():
    x, _ = play(two_members((0.5, bend(1, 7, 48))))
    assert abs(cents_at(x, 0.25, 0.5, hz(A))) < 5
    bent = cents_at(x, 0.6, 1.1, hz(A + 7))
    other = cents_at(x, 0.6, 1.1, hz(B))
    print(f"member bend +7 at +-48: {bent:+.2f} cents off, other note {other:+.2f} cents")
    assert abs(bent) < 5 and abs(other) < 5


def test_member_pressure_swells_only_its_note():
    x, _ = play(two_members((0.5, (0xD1, 127))))
    up = level_db(x, 0.6, 0.8, hz(A)) - level_db(x, 0.3, 0.5, hz(A))
    other = level_db(x, 0.6, 0.8, hz(B)) - level_db(x, 0.3, 0.5, hz(B))
    print(f"member pressure 127: its note {up:+.2f} dB, the other {other:+.2f} dB")
    assert up >= 6.0 and abs(other) < 1.5


def test_member_cc74_brightens_only_its_note():
    x, _ = play(two_members((0.5, (0xB1, 74, 127))))
    ca0, ca1 = centroid(x, 0.3, 0.5, hz(A)), centroid(x, 0.6, 0.8, hz(A))
    cb0, cb1 = centroid(x, 0.3, 0.5, hz(B)), centroid(x, 0.6, 0.8, hz(B))
    print(f"member CC74 127: centroid {ca0:.0f} -> {ca1:.0f} Hz, other {cb0:.0f} -> {cb1:.0f} Hz")
    assert ca1 > 1.3 * ca0 and abs(cb1 / cb0 - 1) < 0.05


def test_master_bend_adds_to_every_note_of_the_zone():
    x, _ = play(two_members((0.3, bend(1, 7, 48)), (0.5, bend(0, 2, 2))))
    a = cents_at(x, 0.6, 1.1, hz(A + 9))
    b = cents_at(x, 0.6, 1.1, hz(B + 2))
    print(f"master bend +2: note with its own +7 {a:+.2f} cents off +9, other {b:+.2f} off +2")
    assert abs(a) < 5 and abs(b) < 5


def test_rpn0_on_a_member_sets_the_range_of_every_member():
    # RPN 0 = 12 on channel 3 (a member); then channel 2 bends all the way up
    x, _ = play(two_members(*[(0.1, m) for m in rpn(2, 0, 12)], (0.5, (0xE1, 127, 127))))
    c = cents_at(x, 0.6, 1.1, hz(A + 12 * 8191 / 8192))
    print(f"zone range 12 from a member's RPN 0: {c:+.2f} cents")
    assert abs(c) < 5


def test_zone_reconfigured_mid_play():
    # 15 members, then 1 (channel 2 only): the master's bend no longer reaches channel 3
    x, e = play(two_members((0.4, rpn(0, 6, 1)[0]), (0.4, rpn(0, 6, 1)[1]),
                            (0.4, rpn(0, 6, 1)[2]), (0.5, bend(0, 2, 2))))
    a = cents_at(x, 0.6, 1.1, hz(A + 2))
    b = cents_at(x, 0.6, 1.1, hz(B))
    print(f"after reconfiguring: member {a:+.2f} cents off +2, former member {b:+.2f} off 0")
    assert abs(a) < 5 and abs(b) < 5
    assert e.channels.members == [1, 0]
    # and off: RPN 6 = 0 turns the zone off; channel 2 bends as an ordinary channel
    x, e = play(two_members(*[(0.4, m) for m in rpn(0, 6, 0)], (0.5, bend(0, 2, 2))))
    assert e.channels.members == [0, 0]
    assert abs(cents_at(x, 0.6, 1.1, hz(A))) < 5 and abs(cents_at(x, 0.6, 1.1, hz(B))) < 5


@pytest.mark.parametrize("rng", [0, 96])
def test_bend_ranges_0_and_96(rng):
    note = 24
    x, _ = play([(0.0, m) for m in lower_zone()] + [(0.0, m) for m in rpn(1, 0, rng)]
                + [(0.02, (0x91, note, 64)), (0.5, (0xE1, 127, 127))])
    expect = note + rng * 8191 / 8192
    c = cents_at(x, 0.6, 1.1, hz(expect))
    print(f"bend range {rng}: full bend {c:+.2f} cents off {expect:.3f}")
    assert abs(c) < 5


class Recorder(StreamingInstrument):
    """Fixed controls; records the features it is given. ``n_features`` 9: a v2 model."""

    name = "recorder"

    def __init__(self, n_features=spec.N_FEATURES_V2):
        self.n_features = n_features
        self.rows = []

    def allocate(self, n_slots):
        self.n_slots = n_slots

    def reset(self, slots):
        pass

    def step(self, features, slots, out_harm, out_noise):
        for f, s in zip(features, slots):
            self.rows.append((int(s), f.copy()))
        out_harm[:] = 0.0
        out_harm[:, 0] = 0.1
        out_noise[:] = 0.0


def feats(inst, slot):
    return np.array([f for s, f in inst.rows if s == slot])


def test_bend_and_pressure_before_the_note_apply_from_its_first_frame():
    inst = Recorder()
    ev = [(0.0, m) for m in lower_zone()] + [(0.01, bend(1, 5, 48)), (0.01, (0xD1, 127)),
                                             (0.01, (0xB1, 74, 127)), (0.0105, (0x91, 60, 64))]
    x, e = play(ev, seconds=0.1, inst=inst)
    f = feats(inst, 0)
    assert f[0, 0] == pytest.approx((65 - 60) / 24, abs=1e-4)      # first frame: bent
    assert f[0, spec.F_DYNAMICS] == pytest.approx(1.0)             # full pressure: full
    assert f[0, spec.F_BRIGHTNESS] == pytest.approx(1.0)
    # and the audio: bent from the first samples on
    assert abs(pitch_cents(x[sec(0.0105):sec(0.0105) + 1024], SR, hz(65),
                           search_cents=150)[1]) < 30


def test_v2_model_gets_dynamics_and_brightness_without_mpe():
    inst = Recorder()
    ev = [(0.0, (0x90, 60, 64)), (0.0, (0x90, 64, 100)), (0.2, (0xA0, 60, 127)),
          (0.4, (0xD0, 64)), (0.6, (0xB0, 74, 0)), (0.8, (0xB0, 2, 32)), (1.0, (0xB0, 11, 64))]
    _, e = play(ev, seconds=1.1, inst=inst)
    a, b = feats(inst, 0), feats(inst, 1)
    t = lambda s: int(s * SR / spec.HOP) + 1      # a frame after time s
    d, br = spec.F_DYNAMICS, spec.F_BRIGHTNESS
    assert a[t(0.1), d] == pytest.approx(64 / 127) and b[t(0.1), d] == pytest.approx(100 / 127)
    assert a[t(0.1), br] == pytest.approx(spec.DEFAULT_BRIGHTNESS)
    assert a[t(0.3), d] == pytest.approx(1.0) and b[t(0.3), d] == pytest.approx(100 / 127)
    # channel pressure: every note of the channel (replacing the poly value)
    p = 64 / 127
    assert a[t(0.5), d] == pytest.approx(64 / 127 + (1 - 64 / 127) * p, abs=1e-6)
    assert b[t(0.5), d] == pytest.approx(100 / 127 + (1 - 100 / 127) * p, abs=1e-6)
    assert a[t(0.7), br] == 0.0 and b[t(0.7), br] == 0.0
    # breath sets the dynamics (then pressure swells from it), CC11 scales them
    q = 32 / 127
    assert a[t(0.9), d] == pytest.approx(q + (1 - q) * p, abs=1e-6)
    assert a[t(1.05), d] == pytest.approx((q + (1 - q) * p) * 64 / 127, abs=1e-6)
    # a v2 model makes its own level: CC11 is not also the channel gain
    assert e.channels.gain_target[0] == pytest.approx((100 / 127) ** 2)


def test_a_v1_model_gets_velocity_only_features():
    inst = Recorder(n_features=spec.N_FEATURES)
    _, _ = play([(0.0, (0x90, 60, 64)), (0.2, (0xA0, 60, 127))], seconds=0.4, inst=inst)
    f = feats(inst, 0)
    assert f.shape[1] == 7 and np.all(f[:, 1] == np.float32(64 / 127))


def test_same_key_on_two_members_is_two_voices():
    _, e = play([(0.0, m) for m in lower_zone()]
                + [(0.01, (0x91, 60, 90)), (0.02, (0x92, 60, 90)), (0.2, (0x81, 60, 0))],
                seconds=0.3)
    vs = e.voices
    live = np.flatnonzero(vs.active[:e.n_slots])
    assert len(live) == 2
    assert sorted(vs.chan[live].tolist()) == [1, 2]
    assert vs.key_down[live[vs.chan[live] == 2]].all() and not vs.key_down[live[vs.chan[live] == 1]].any()


def test_poly_aftertouch_without_mpe_swells_one_note():
    x, _ = play([(0.02, (0x90, A, 64)), (0.02, (0x90, B, 64)), (0.5, (0xA0, A, 127))])
    up = level_db(x, 0.6, 0.8, hz(A)) - level_db(x, 0.3, 0.5, hz(A))
    other = level_db(x, 0.6, 0.8, hz(B)) - level_db(x, 0.3, 0.5, hz(B))
    print(f"poly aftertouch 127: its note {up:+.2f} dB, the other {other:+.2f} dB")
    assert up >= 6.0 and abs(other) < 1.5


def test_channel_pressure_without_mpe_swells_every_note_of_the_channel():
    x, _ = play([(0.02, (0x90, A, 64)), (0.02, (0x91, B, 64)), (0.5, (0xD0, 127))])
    up = level_db(x, 0.6, 0.8, hz(A)) - level_db(x, 0.3, 0.5, hz(A))
    other = level_db(x, 0.6, 0.8, hz(B)) - level_db(x, 0.3, 0.5, hz(B))
    assert up >= 6.0 and abs(other) < 1.5            # the other note is on another channel


def test_the_control_map_reroutes_pressure():
    ev = [(0.02, (0x90, A, 64)), (0.5, (0xD0, 127))]
    x, _ = play(ev, control_map={"pressure": "vibrato"})
    up = level_db(x, 0.6, 0.8, hz(A)) - level_db(x, 0.3, 0.5, hz(A))
    assert abs(up) < 1.5                              # no swell
    # vibrato: the fundamental's peak spreads (0.35 semitone depth at 127)
    seg = x[sec(0.6):sec(1.2)]
    s = np.abs(np.fft.rfft(seg * np.hanning(len(seg)), 1 << 18))
    f = np.fft.rfftfreq(1 << 18, 1 / SR)
    near = (f > hz(A - 1)) & (f < hz(A + 1))
    wide = np.sum(s[near] > 0.1 * s[near].max()) * (f[1] - f[0])
    x2, _ = play(ev)
    s2 = np.abs(np.fft.rfft(x2[sec(0.6):sec(1.2)] * np.hanning(len(seg)), 1 << 18))
    narrow = np.sum(s2[near] > 0.1 * s2[near].max()) * (f[1] - f[0])
    assert wide > 3 * narrow
    x3, _ = play(ev, control_map="pressure=none")
    assert abs(level_db(x3, 0.6, 0.8, hz(A)) - level_db(x3, 0.3, 0.5, hz(A))) < 1.5
    # a preset's [controllers] table (the rack passes it this way)
    inst = Recorder()
    e = Engine(inst, block=128, master=False)
    e.set_expression_map({"timbre": "none", "pressure": "brightness"})
    e.push(0, (0x90, 60, 64))
    e.push(1000, (0xB0, 74, 127))
    e.push(2000, (0xD0, 127))
    for _ in range(40):
        e.render()
    f = feats(inst, 0)
    assert f[4, spec.F_BRIGHTNESS] == pytest.approx(spec.DEFAULT_BRIGHTNESS)   # CC74: nothing
    assert f[-1, spec.F_BRIGHTNESS] == pytest.approx(1.0)                      # pressure
    assert f[-1, spec.F_DYNAMICS] == pytest.approx(64 / 127)
    with pytest.raises(ValueError, match="unknown target"):
        control_map({"pressure": "loudness"})
    with pytest.raises(ValueError, match="unknown control"):
        control_map("knee=vibrato")


def test_forced_and_disabled_mpe():
    # --mpe lower: members without RPN 6, range 48
    x, e = play([(0.02, (0x91, A, 64)), (0.5, bend(1, 7, 48))], mpe="lower")
    assert abs(cents_at(x, 0.6, 1.1, hz(A + 7))) < 5 and e.channels.members == [15, 0]
    # --mpe off: RPN 6 is ignored, channel 2 bends by its own range (2)
    x, e = play([(0.0, m) for m in lower_zone()] + [(0.02, (0x91, A, 64)),
                                                    (0.5, bend(1, 2, 2))], mpe="off")
    assert abs(cents_at(x, 0.6, 1.1, hz(A + 2))) < 5 and e.channels.members == [0, 0]
    # --mpe upper: channel 15 is a member, 16 the master
    x, e = play([(0.02, (0x9E, A, 64)), (0.5, bend(14, 7, 48)), (0.5, bend(15, 1, 2))],
                mpe="upper")
    assert abs(cents_at(x, 0.6, 1.1, hz(A + 8))) < 5


def mpe_stream(seconds=2.0, seed=3):
    """A dense MPE performance: notes on every member, bends, pressure, CC74, master bend,
    sustain, a zone change; [(sample, bytes)]."""
    rng = np.random.default_rng(seed)
    ev = [(0, bytes(m)) for m in lower_zone(7)]
    ev += [(0, bytes(m)) for m in rpn(15, 6, 7)]            # and an upper zone
    t = 100
    for i in range(60):
        ch = 1 + i % 7 if i % 2 else 8 + i % 7
        key = int(rng.integers(36, 90))
        ev.append((t, bytes([0xE0 | ch, int(rng.integers(0, 128)), int(rng.integers(40, 90))])))
        ev.append((t, bytes([0xD0 | ch, int(rng.integers(0, 60))])))
        ev.append((t + 1, bytes([0x90 | ch, key, int(rng.integers(30, 127))])))
        for k in range(4):
            w = t + int(rng.integers(50, 4000))
            ev.append((w, bytes([0xE0 | ch, int(rng.integers(0, 128)), int(rng.integers(0, 128))])))
            ev.append((w + 7, bytes([0xD0 | ch, int(rng.integers(0, 128))])))
            ev.append((w + 13, bytes([0xB0 | ch, 74, int(rng.integers(0, 128))])))
        ev.append((t + int(rng.integers(2000, 20000)), bytes([0x80 | ch, key, 40])))
        t += int(rng.integers(200, 1500))
    ev += [(9000, bytes(bend(0, 1, 2))), (15000, bytes([0xBF, 64, 127])),
           (30000, bytes([0xBF, 64, 0])), (40000, bytes(bend(15, -2, 2)))]
    ev += [(50000, bytes(m)) for m in rpn(0, 6, 3)]
    ev.sort(key=lambda e: e[0])
    return [(w, m) for w, m in ev if w < seconds * SR]


def test_mpe_is_block_size_independent_and_offline_equals_live():
    """Every per-note control follows the voice's own clock. As for the rest of the engine,
    the float32 phasors are rebuilt at block starts, so other block sizes agree to 1e-5
    (test_engine's bound), and a steal picks the quietest voice as of the block start (so
    there are enough slots here for none)."""
    ev = mpe_stream()
    outs = []
    for block in (128, 64, 331):
        e = Engine(load_instrument("basic"), block=block, reverb=0.0, n_slots=64)
        outs.append(render_events(e, ev, tail=0.5))
        assert e.stats["steals"] == 0
    off = render_events(offline_engine(load_instrument("basic"), reverb=0.0, n_slots=64,
                                       block=128), ev, tail=0.5)
    n = min(len(o) for o in outs + [off])
    assert np.max(np.abs(outs[0][:n])) > 0.05
    # the offline engine sums two threads' voices in another order: float32 rounding
    d_off = np.max(np.abs(off[:n] - outs[0][:n]))
    d_blocks = [np.max(np.abs(o[:n] - outs[0][:n])) for o in outs[1:]]
    print(f"MPE stream: offline vs live {d_off:.2g}, blocks 64/331 vs 128 {d_blocks}")
    assert d_off <= 1e-6
    assert max(d_blocks) <= 1e-5


def test_never_above_full_scale_or_nan():
    ev = [(0, bytes(m)) for m in lower_zone()]
    for ch in range(1, 16):
        ev += [(0, bytes(m)) for m in rpn(ch, 0, 96)]
    for i in range(45):
        ch = 1 + i % 15
        w = 200 + i * 97
        ev += [(w, bytes([0xD0 | ch, 127])), (w, bytes([0xB0 | ch, 74, 127])),
               (w + 1, bytes([0x90 | ch, 30 + i, 127])),
               (w + 500, bytes([0xE0 | ch, 127 * (i % 2), 127 * (i % 2)]))]
    ev += [(3000, bytes([0xB0, 7, 127])), (3000, bytes([0xB0, 11, 127])),
           (6000, bytes(bend(0, 2, 2)))]
    ev.sort(key=lambda e: e[0])
    e = Engine(load_instrument("basic"), block=128, gain=10.0)
    out = render_events(e, ev, tail=0.3)
    assert np.all(np.isfinite(out)) and np.max(np.abs(out)) <= 1.0
    assert np.max(np.abs(out)) > 0.5


def test_an_mpe_midi_file_renders_as_it_plays(tmp_path):
    import mido
    import soundfile as sf

    from rtsynth.cli import main
    ev = mpe_stream(seconds=1.5)
    mid = mido.MidiFile(ticks_per_beat=480)
    tr = mido.MidiTrack()
    mid.tracks.append(tr)
    tr.append(mido.MetaMessage("set_tempo", tempo=5000, time=0))   # 480 ticks = 5 ms: 1 tick = 1/96000 s
    last = 0
    for w, m in ev:
        tr.append(mido.Message.from_bytes(list(m), time=2 * (w - last)))
        last = w
    path = tmp_path / "mpe.mid"
    mid.save(path)
    out = tmp_path / "mpe.wav"
    assert main(["render", str(path), "-o", str(out), "-i", "basic", "--reverb", "0", "-q",
                 "-z", "128", "--polyphony", "64"]) == 0
    got, sr = sf.read(out, dtype="float32")
    live = render_events(Engine(load_instrument("basic"), block=128, reverb=0.0, n_slots=64),
                         ev, tail=0.5)
    n = min(len(got), len(live))
    assert n > SR
    d = np.max(np.abs(got[:n] - live[:n]))
    print(f"MPE file rendered vs played at block 128: {d:.2g}")
    assert d < 2e-6          # the 24-bit file's rounding (6e-8) and the threads' (above)
    assert np.max(np.abs(live[:n])) > 0.05


def test_note_off_velocity_shapes_the_release():
    """The basic instrument asks for it: a fast key-up (127) ends the note sooner than 64; 0
    (what a keyboard that does not measure it sends) is 64."""
    tails = {}
    for vel in (0, 64, 127, 1):
        x, _ = play([(0.0, (0x90, 60, 90)), (0.3, (0x80, 60, vel))], seconds=0.6)
        tails[vel] = float(np.sqrt(np.mean(x[sec(0.32):sec(0.36)] ** 2)))
    print("release RMS 20-60 ms after the key-up by note-off velocity:", tails)
    assert tails[0] == tails[64]
    assert tails[127] < 0.5 * tails[64] and tails[1] > 1.5 * tails[64]
    # a model that does not ask for it (release_velocity False) is not changed
    inst = Recorder()
    play([(0.0, (0x90, 60, 90)), (0.1, (0x80, 60, 127))], seconds=0.3, inst=inst)
    f = feats(inst, 0)
    k = int(0.2 * SR / spec.HOP)
    t_off = k * spec.HOP / SR - 0.1
    assert f[k, 6] == pytest.approx(np.exp(-t_off / spec.TAU_SLOW), abs=0.02)
