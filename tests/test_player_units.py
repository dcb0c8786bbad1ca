"""The parts of the live player that need no audio server: key parsing, the resampler's timing,
meters, the recorder's files (JACK end to end: test_player_live.py, test_screen_live.py)."""

import numpy as np
import pytest

from rtsynth.live.keys import NOTE_SECONDS, KeyboardPlayer
from rtsynth.live.monitor import LiveFront, Meters, describe


def keyboard():
    sent, acts = [], []
    kb = KeyboardPlayer(sent.append, actions={
        "instrument": lambda s: acts.append(("instrument", s)),
        "gain": lambda g: acts.append(("gain", round(g, 3))),
        "record": lambda: acts.append(("record",)),
        "panic": lambda: acts.append(("panic",))})
    return kb, sent, acts


def test_tracker_layout_and_octaves():
    kb, sent, _ = keyboard()
    kb.handle("zsxdcvgbhnjm", now=0.0)
    assert [m[1] for m in sent] == list(range(60, 72))
    sent.clear()
    kb.handle("q2w3er5t6y7ui", now=0.0)
    assert [m[1] for m in sent] == list(range(72, 85))
    assert all(m[0] == 0x90 and m[2] == 100 for m in sent)
    sent.clear()
    kb.release_due(now=NOTE_SECONDS + 0.01)
    assert sorted(m[1] for m in sent) == list(range(60, 85)) and all(m[0] == 0x80 for m in sent)
    sent.clear()
    kb.handle("]Z[[m-", now=1.0)          # octave up, Caps Lock z, two down, B, velocity down
    assert [tuple(m) for m in sent] == [(0x90, 72, 100), (0x90, 59, 100)]
    assert kb.velocity == 84


def test_a_repeated_key_holds_its_note_until_it_stops():
    kb, sent, _ = keyboard()
    for k in range(10):                   # auto-repeat at 30 Hz for 1/3 s
        kb.handle("z", now=k / 30)
    assert sent == [bytes((0x90, 60, 100))]
    kb.release_due(now=9 / 30 + NOTE_SECONDS - 0.01)
    assert len(sent) == 1
    kb.release_due(now=9 / 30 + NOTE_SECONDS + 0.01)
    assert sent[-1] == bytes((0x80, 60, 0))


def test_commands_and_escape_sequences():
    kb, sent, acts = keyboard()
    kb.handle("\t\x1b[Z.,\x12", now=0)
    assert acts == [("instrument", 1), ("instrument", -1), ("gain", 1.414), ("gain", 0.707),
                    ("record",)]
    kb.handle("\x1b[A\x1bOB", now=0)     # arrows: ignored, not a panic, not notes
    assert sent == [] and len(acts) == 5
    kb.handle(" ", now=0)
    assert sent == [bytes((0xB0, 64, 127))] and kb.sustain
    sent.clear()
    kb.handle("z", now=0)
    kb.handle("\x1b", now=0)             # a lone Esc: panic
    assert acts[-1] == ("panic",) and not kb.sustain and kb.held == []
    offs = {(m[0], m[1]) for m in sent[1:]}
    assert {(0xB0 | ch, 120) for ch in range(16)} <= offs


def test_meters_peak_rms_clip():
    m = Meters(128)
    x = np.zeros((128, 2), np.float32)
    x[:, 0] = 0.5 * np.sin(np.arange(128) / 5)
    x[3, 1] = 1.0
    m.update(x)
    peak, rms, n = m.since(0)
    assert n == 1 and m.clips == 1
    assert peak[0] == pytest.approx(np.abs(x[:, 0]).max()) and peak[1] == 1.0
    assert rms[0] == pytest.approx(np.sqrt(np.mean(x[:, 0] ** 2)), rel=1e-5)
    assert describe(bytes((0x91, 61, 7))) == "ch2 note-on C#4 7"


def _basic_engine(block):
    from rtsynth.engine import Engine
    from rtsynth.instruments import BasicInstrument
    e = Engine(BasicInstrument(48000), block=block, reverb=0.0)
    e.warmup()
    return e


@pytest.mark.parametrize("rate", [44100, 96000])
def test_resampled_engine_sounds_at_the_stated_latency_and_pitch(rate):
    from rtsynth.live.resample import ResampledEngine, inner_block
    from rtsynth.testing.jackrig import detect_onset, pitch_cents
    block = 128
    ref = _basic_engine(block)
    ref.push(1000, bytes((0x90, 69, 100)))
    a = np.concatenate([ref.render().copy() for _ in range(200)])
    on48 = detect_onset(a.T, 1000, threshold=1e-4)
    rs = ResampledEngine(_basic_engine(inner_block(block, rate, 48000)), rate, block)
    front = LiveFront(rs)
    f = 1000
    front.push(f, bytes((0x90, 69, 100)))
    b = np.concatenate([front.render().copy() for _ in range(int(200 * rate / 48000))])
    on = detect_onset(b.T, f, threshold=1e-4)
    assert front.extra_latency == rs.extra_frames > 0
    # the note sounds extra_frames after its frame, as it does at 48 kHz (to a frame or two)
    assert abs((on - rs.extra_frames) - on48 * rate / 48000) <= 3, (on, rs.extra_frames, on48)
    _, cents = pitch_cents(b[f + rate // 10: f + rate // 2, 0], rate, 440.0)
    assert abs(cents) < 2
    assert rs.short_blocks == 0 and np.max(np.abs(b)) <= 1.0


def test_recorder_writes_blocks_and_midi(tmp_path):
    import mido
    import soundfile as sf
    from rtsynth.live.record import Recorder
    rec = Recorder(48000, 128, interval=0.1)
    p = rec.start(tmp_path / "t.wav", 0)
    x = (np.random.default_rng(0).standard_normal((128 * 50, 2)) * 0.1).astype(np.float32)
    for k in range(50):
        rec.write(x[k * 128:(k + 1) * 128], 5000 + k * 128)
        if k == 10:
            rec.midi(5000 + 10 * 128 + 7, bytes((0x90, 64, 90)))
    rec.stop()
    y, sr = sf.read(p, dtype="float32")
    assert np.array_equal(y, x)
    t, ons = 0, []
    mid = mido.MidiFile(p.with_suffix(".mid"))
    for m in mid.tracks[0]:
        t += m.time
        if m.type == "note_on":
            ons.append((t, m.note))
    assert ons == [(10 * 128 + 7, 64)]            # ticks are frames
    with pytest.raises(ValueError, match="must end in .wav or .flac"):
        rec.start(tmp_path / "t.mp3", 0)


def test_file_schedule_once_and_looped():
    from rtsynth.live.monitor import FileSchedule
    ev = [(0, b"\x90\x3c\x64"), (100, b"\x80\x3c\x00"), (250, b"\x90\x40\x64")]
    got = []
    f = FileSchedule(ev, 400, loop=True)
    f.start = 1000
    for end in range(1000, 2300, 128):
        f.take(end, lambda w, d: got.append((w, d[1])))
    assert [w for w, _ in got] == [1000, 1100, 1250, 1400, 1500, 1650, 1800, 1900, 2050, 2200]
    once = FileSchedule(ev, 400, loop=False)
    once.start = 0
    out = []
    once.take(10_000, lambda w, d: out.append(w))
    assert out == [0, 100, 250] and once.done and once.end_frame == 250


def test_flac_take_is_encoded_when_it_stops(tmp_path):
    import soundfile as sf
    from rtsynth.live.record import Recorder
    rec = Recorder(48000, 128, interval=0.1)
    p = rec.start(tmp_path / "t.flac", 0)
    x = (np.random.default_rng(1).standard_normal((128 * 20, 2)) * 0.1).astype(np.float32)
    for k in range(20):
        rec.write(x[k * 128:(k + 1) * 128], k * 128)
    part = tmp_path / "t.flac.part.wav"
    assert part.exists()                      # while it records: a WAV kept valid
    rec.stop()
    assert not part.exists() and p.exists()
    y, sr = sf.read(p, dtype="float32")
    assert sf.info(p).format == "FLAC" and y.shape == x.shape
    assert np.max(np.abs(y - x)) < 2 ** -22   # 24-bit


def test_instrument_swap_between_blocks():
    """The old engine's voices fade out within one block; the new one takes over at the same
    frame and plays what comes next."""
    from rtsynth.testing.jackrig import pitch_cents
    front = LiveFront(_basic_engine(128))
    old = front.engine
    front.push(0, bytes((0x90, 60, 100)))
    for _ in range(20):
        front.render()
    new = _basic_engine(128)
    front.request_swap(new)
    fade = front.render().copy()                # the old voices fade out in this block
    assert front.engine is old and old.active_voices == 0
    assert np.abs(fade[-8:]).max() < 0.05 * np.abs(fade[:8]).max() + 1e-6
    t = front.time
    front.push(t + 10, bytes((0x90, 69, 100)))
    out = np.concatenate([front.render().copy() for _ in range(60)])
    assert front.engine is new and front.swaps == 1 and new.time == front.time
    assert np.abs(out[:10]).max() < 1e-6 < np.abs(out[200:]).max()    # the note at its frame
    assert abs(pitch_cents(out[2000:, 0], 48000, 440.0)[1]) < 2
