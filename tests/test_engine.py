"""Engine behaviour: synthesis against the spec's reference, timing, voices, controllers, safety."""

import numpy as np
import pytest

from rtsynth import spec
from rtsynth.engine import Engine
from rtsynth.instruments.base import StreamingInstrument
from rtsynth.instruments import BasicInstrument

SR = spec.SAMPLE_RATE


def render(engine, seconds=None, blocks=None):
    n = blocks if blocks is not None else int(seconds * SR / engine.block) + 1
    return np.concatenate([engine.render().copy() for _ in range(n)])


def pitch_of(x, lo, hi, sr=SR):
    seg = x[lo:hi] * np.hanning(hi - lo)
    spec_ = np.abs(np.fft.rfft(seg, 1 << 18))
    f = np.fft.rfftfreq(1 << 18, 1 / sr)
    return f, spec_


def fundamental(x, lo, hi, expect, sr=SR):
    f, s = pitch_of(x, lo, hi, sr)
    band = (f > expect * 0.8) & (f < expect * 1.2)
    return f[band][np.argmax(s[band])]


def cents(a, b):
    return 1200 * np.log2(a / b)


class ConstantInstrument(StreamingInstrument):
    """Fixed controls; records every feature row it is given (for the timing tests)."""

    name = "constant"

    def __init__(self, harm=None, noise=None):
        self.harm = np.zeros(self.n_harmonics, np.float32) if harm is None else harm
        self.noise = np.zeros(self.n_noise_bands, np.float32) if noise is None else noise
        self.seen = []

    def allocate(self, n_slots):
        self.n_slots = n_slots

    def reset(self, slots):
        pass

    def step(self, features, slots, out_harm, out_noise):
        self.seen.append((slots.copy(), features.copy()))
        out_harm[:] = self.harm
        out_noise[:] = self.noise
        # silence a voice once it is released, so it ends
        out_harm[features[:, 2] == 0] = 0
        out_noise[features[:, 2] == 0] = 0


def test_single_voice_matches_spec_reference():
    harm = np.zeros(spec.N_HARMONICS, np.float32)
    harm[[0, 1, 4]] = [0.2, 0.1, 0.05]
    noise = np.zeros(spec.N_NOISE_BANDS, np.float32)
    noise[3] = 0.01
    inst = ConstantInstrument(harm, noise)
    e = Engine(inst, block=128, master=False, gain=1.0)
    e.channels.volume = [127.0] * 16
    e.channels.reset_gains()
    onset = 1000
    e.push(onset, (0x90, 57, 90))
    out = render(e, blocks=40)
    assert np.all(out[:onset] == 0)
    n_frames = (len(out) - onset) // spec.HOP
    f0 = np.full(n_frames * spec.HOP, spec.midi_to_hz(57))
    ref = spec.synthesize_reference(np.tile(harm, (n_frames, 1)), np.tile(noise, (n_frames, 1)),
                                    f0, offset=int(e.noise_off[0]))
    got = out[onset: onset + len(ref), 0]
    assert np.max(np.abs(got - ref)) < 2e-5


@pytest.mark.parametrize("block", [64, 128, 256, 1000])
def test_output_does_not_depend_on_block_size(block):
    def run(b):
        e = Engine(BasicInstrument(), block=b)
        for i, (t, msg) in enumerate([(10, (0x90, 60, 100)), (3000, (0x90, 64, 70)),
                                      (5000, (0xE0, 0, 90)), (7000, (0xB0, 1, 100)),
                                      (9000, (0x80, 60, 0)), (12000, (0xB0, 64, 127)),
                                      (12500, (0x80, 64, 0)), (20000, (0xB0, 64, 0))]):
            e.push(t, msg)
        n = 30000
        return np.concatenate([e.render().copy() for _ in range(n // b + 1)])[:n]
    ref = run(128)
    assert np.max(np.abs(run(block) - ref)) <= 1e-5


def test_note_on_takes_effect_at_its_sample():
    for onset in (0, 1, 127, 128, 300, 777):
        e = Engine(BasicInstrument(), block=128, master=False)
        e.push(onset, (0x90, 69, 100))
        out = render(e, blocks=10)
        nz = np.flatnonzero(np.abs(out[:, 0]) > 0)
        assert nz[0] == onset


def test_pitch_and_bend_range():
    e = Engine(BasicInstrument(), block=128, master=False)
    e.push(0, (0x90, 69, 100))
    # RPN 0 = 7 semitones, then full bend up at 1 s
    for m in [(0xB0, 101, 0), (0xB0, 100, 0), (0xB0, 6, 7), (0xB0, 38, 0)]:
        e.push(10, m)
    e.push(SR, (0xE0, 127, 127))
    out = render(e, seconds=2)[:, 0]
    assert abs(cents(fundamental(out, 4000, 40000, 440), 440)) < 5
    bent = 440 * 2 ** (7 * 8191 / 8192 / 12)
    assert abs(cents(fundamental(out, SR + 4000, 2 * SR - 100, bent), bent)) < 5


def test_sustain_pedal_holds_past_note_off():
    def level_after(pedal):
        e = Engine(BasicInstrument(), block=128)
        if pedal:
            e.push(0, (0xB0, 64, 127))
        e.push(10, (0x90, 60, 100))
        e.push(SR // 2, (0x80, 60, 0))
        out = render(e, seconds=1.5)
        return np.sqrt(np.mean(out[int(1.2 * SR):int(1.4 * SR)] ** 2)), e
    held, e = level_after(True)
    free, _ = level_after(False)
    assert held > 0.003 and free < held * 1e-2
    # pedal up releases the held note
    e.push(e.time, (0xB0, 64, 0))
    out = render(e, seconds=1.0)
    assert np.sqrt(np.mean(out[-4800:] ** 2)) < held * 1e-2


def test_voice_stealing_and_polyphony_limit():
    inst = ConstantInstrument(np.full(spec.N_HARMONICS, 0.001, np.float32))
    e = Engine(inst, block=128, n_slots=4)
    for i in range(6):
        e.push(i * 200, (0x90, 50 + i, 100))
    render(e, blocks=20)
    assert e.active_voices == 4
    assert sorted(e.note[:4].astype(int)) == [52, 53, 54, 55]   # the oldest were stolen
    assert e.stats["steals"] == 2


def test_all_sound_off_and_all_notes_off():
    e = Engine(BasicInstrument(), block=128)
    for n in (60, 64, 67):
        e.push(0, (0x90, n, 100))
    render(e, blocks=20)
    e.push(e.time, (0xB0, 120, 0))
    out = render(e, blocks=10)
    assert e.active_voices == 0
    assert np.max(np.abs(out[-256:])) < 1e-3     # only the reverb tail may remain
    for n in (60, 64):
        e.push(e.time, (0x90, n, 100))
    render(e, blocks=10)
    e.push(e.time, (0xB0, 123, 0))
    render(e, seconds=1.0)
    assert e.active_voices == 0


def test_volume_expression_and_reset_controllers():
    def rms_with(msgs):
        e = Engine(BasicInstrument(), block=128, reverb=0.0)
        for m in msgs:
            e.push(0, m)
        e.push(0, (0x90, 60, 100))
        out = render(e, seconds=0.5)
        return np.sqrt(np.mean(out[SR // 4:] ** 2))
    full = rms_with([])
    half_vol = rms_with([(0xB0, 7, 50)])
    low_expr = rms_with([(0xB0, 11, 40)])
    reset = rms_with([(0xB0, 11, 40), (0xB0, 121, 0)])
    assert half_vol < full * 0.3
    assert low_expr < full * 0.2
    assert abs(reset / full - 1) < 0.01


def test_mod_wheel_adds_vibrato():
    e = Engine(BasicInstrument(), block=128, master=False)
    e.push(0, (0xB0, 1, 127))
    e.push(0, (0x90, 69, 100))
    out = render(e, seconds=1.0)[:, 0]
    # instantaneous pitch over short windows must swing by a good fraction of the depth
    pitches = [fundamental(out, i, i + 2048, 440) for i in range(8000, 40000, 1000)]
    swing = cents(max(pitches), min(pitches))
    assert 30 < swing < 110


class NaNInstrument(ConstantInstrument):
    def step(self, features, slots, out_harm, out_noise):
        out_harm[:] = np.nan
        out_noise[:] = 0


def test_nan_from_a_model_never_reaches_the_output():
    e = Engine(NaNInstrument(), block=128)
    e.push(0, (0x90, 60, 100))
    out = render(e, blocks=20)
    assert np.all(np.isfinite(out)) and np.max(np.abs(out)) == 0
    assert e.stats["nan_voices"] >= 1


def test_output_never_exceeds_full_scale():
    loud = ConstantInstrument(np.full(spec.N_HARMONICS, 0.5, np.float32))
    e = Engine(loud, block=128, gain=4.0)
    for n in range(40, 72):
        e.push(0, (0x90, n, 127))
    out = render(e, blocks=100)
    assert np.max(np.abs(out)) <= 1.0
    assert np.all(np.isfinite(out))


def test_malformed_messages_are_counted_and_dropped():
    e = Engine(BasicInstrument())
    for m in [b"", b"\x90", b"\x90\x80\x10", b"\xf0\x01\x02", b"\x45\x10\x10", (0x90, 60)]:
        e.push(0, m)
    render(e, blocks=2)
    assert e.stats["bad_messages"] == 6 and e.active_voices == 0


def test_frames_are_computed_in_one_batch_per_block():
    inst = ConstantInstrument(np.full(spec.N_HARMONICS, 0.001, np.float32))
    e = Engine(inst, block=128)
    for i in range(16):
        e.push(0, (0x90, 40 + i, 100))
    render(e, blocks=1)
    assert len(inst.seen) == 1 and len(inst.seen[0][0]) == 16


def test_mod_wheel_morphs_a_timbre_model():
    """With a morphing (VAE) model, CC1 moves the timbre instead of adding vibrato."""
    from rtsynth.instruments import load_instrument
    inst = load_instrument("morph")
    assert inst.has_timbre
    e = Engine(inst, block=128, reverb=0.0)
    e.push(0, (0x90, 67, 100))
    e.push(0, (0xB0, 1, 0))
    a = render(e, seconds=0.6)
    assert inst.timbre_position == 0.0
    e.push(e.time, (0xB0, 1, 127))
    b = render(e, seconds=0.6)
    assert inst.timbre_position == 1.0
    # flute at one end of the path, cello at the other: the spectrum changes audibly
    sa = np.abs(np.fft.rfft(a[SR // 5:, 0]))
    sb = np.abs(np.fft.rfft(b[SR // 5:, 0]))
    sa /= sa.sum()
    sb /= sb.sum()
    assert np.abs(sa - sb).sum() > 0.2
    # and the pitch did not wobble: no vibrato from the wheel on a timbre model
    assert abs(cents(fundamental(b[:, 0], SR // 5, len(b) - 100, 392.0), 392.0)) < 5


@pytest.mark.parametrize("name", ["flute", "flute-attention"])
def test_multi_frame_batches_rounds_with_the_same_output(name):
    """CNN and attention models take several frames of a voice per call: at large blocks
    (offline render) the rounds of a block go through the model together, fewer calls, same
    samples as one round per call and as small blocks."""
    from rtsynth.instruments import load_instrument
    events = [(0, (0x90, 60, 100)), (700, (0x90, 64, 80)), (3100, (0x90, 67, 90)),
              (9000, (0xE0, 0, 80)), (15000, (0x80, 60, 0)), (16000, (0x90, 72, 110)),
              (30000, (0x80, 64, 0)), (31000, (0x80, 67, 0)), (40000, (0x80, 72, 0))]

    def run(block, multi):
        inst = load_instrument(name)
        calls = []
        step = inst.step
        inst.step = lambda f, s, h, g: (calls.append(len(s)), step(f, s, h, g))
        e = Engine(inst, block=block, reverb=0.0)
        assert inst.multi_frame and e._multi_frame       # known once the slots are allocated
        e._multi_frame = multi
        for t, m in events:
            e.push(t, m)
        n = 52000
        out = np.concatenate([e.render().copy() for _ in range(n // block + 1)])[:n]
        return out, calls

    ref, calls_1 = run(2048, False)
    got, calls_n = run(2048, True)
    small, _ = run(128, True)
    assert np.abs(ref).max() > 0.01
    assert np.max(np.abs(got - ref)) <= 1e-5
    assert np.max(np.abs(small - ref)) <= 1e-5
    assert len(calls_n) * 4 < len(calls_1)       # ~10 rounds per 2048-frame block, batched
    assert max(calls_n) > 3                      # frames of several voices and rounds per call


def test_a_chord_in_one_block_takes_free_slots_then_steals_in_order():
    """Note-ons of one block start together (one kernel call) with the same rules as one by one:
    free slots first, then the quietest released voice; the same key again releases its held
    voice first; a stolen voice fades out in a fade slot."""
    inst = ConstantInstrument(np.full(spec.N_HARMONICS, 0.001, np.float32))
    e = Engine(inst, block=128, n_slots=4, n_fade=2)
    e.push(0, (0x90, 60, 100))
    e.push(0, (0x90, 62, 100))
    e.push(10, (0x80, 62, 0))
    render(e, blocks=1)                    # 62 is released, still sounding
    assert e.active_voices == 2 and e.stats["steals"] == 0
    t = e.time + 5
    for n in (64, 65, 67, 60):              # 64, 65: free; 67 steals 62 (released); 60 again
        e.push(t, (0x90, n, 90))
    out = render(e, blocks=1)
    assert sorted(e.note[:4].astype(int)) == [60, 64, 65, 67]
    assert e.stats["steals"] == 2          # 62, then the old 60 (released by the new 60)
    fades = np.flatnonzero(e.active[4:])
    # in order: 67 took the released 62 (fade slot 4), then the new 60 took the old one
    assert len(fades) == 2 and e.note[4] == 62 and e.note[5] == 60
    assert np.all(e.frozen[4 + fades] == 1) and np.all(np.isfinite(out))
    # every new voice starts at the chord's frame, fresh
    new = [int(np.flatnonzero((e.note[:4] == n) & (e.active[:4] != 0))[0]) for n in (64, 65, 67, 60)]
    assert np.all(e.vpos[new] == 128 - 5) and np.all(e.released_at[new] == np.iinfo(np.int64).max // 4)
    assert e.age[new].tolist() == sorted(e.age[new].tolist())
    render(e, blocks=4)
    assert not e.active[4:].any()          # the fades ended (4 ms)
