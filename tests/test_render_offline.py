"""Offline rendering: the large-batch, two-thread engine and the streaming file writer give the
samples of the live engine (128-frame blocks, one thread) to float32 rounding."""

import numpy as np
import pytest

from rtsynth import spec
from rtsynth.engine import Engine, OfflineEngine
from rtsynth.instruments import BasicInstrument, load_instrument, models_dir
from rtsynth.render import offline_engine, render_events, render_to_file

SR = spec.SAMPLE_RATE

# notes starting and ending at odd offsets, overlapping, a bend and vibrato, sustain pedal,
# more notes than slots (steals, fade slots), all sound off (kill) on a channel, a re-struck key
EVENTS = [(0, (0x90, 60, 100)), (700, (0x90, 64, 80)), (3100, (0x91, 67, 90)),
          (5000, (0xE0, 0, 80)), (7000, (0xB0, 1, 100)), (9000, (0x80, 60, 0)),
          (12000, (0xB0, 64, 127)), (12500, (0x80, 64, 0)), (15000, (0x90, 72, 110)),
          (16000, (0x90, 72, 70)), (20000, (0xB0, 64, 0))]
EVENTS += [(22000 + 37 * i, (0x90, 40 + 2 * i, 60 + i)) for i in range(10)]   # 6 slots: steals
EVENTS += [(30000 + 101 * i, (0x80, 40 + 2 * i, 0)) for i in range(0, 10, 2)]
EVENTS += [(33000, (0xB1, 120, 0)), (36000, (0x90, 50, 100)), (52000, (0x80, 50, 0)),
           (53000, (0xB0, 123, 0))]
N = 70000


def _inst(name):
    if name == "basic":
        return BasicInstrument()
    if not (models_dir() / name / "model.safetensors").exists():
        pytest.skip("no shipped models")
    return load_instrument(name)


def _render(engine):
    for t, m in EVENTS:
        engine.push(t, m)
    out = np.concatenate([engine.render().copy() for _ in range(N // engine.block + 1)])[:N]
    return out, engine


NAMES = ["basic", "flute", "flute-gru", "flute-attention"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("block,threads", [(8192, 2), (3000, 1), (640, 2)])
def test_offline_engine_matches_the_live_engine(name, block, threads):
    """No steals: any block, batch and thread count gives the live engine's 128-frame render."""
    ref, live = _render(Engine(_inst(name), block=128, n_slots=16))
    got, off = _render(OfflineEngine(_inst(name), block=block, threads=threads, n_slots=16))
    off.close()
    assert np.abs(ref).max() > 0.01
    assert live.stats["steals"] == 0
    assert np.max(np.abs(got - ref)) <= 1e-5


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("block", [8192, 640])
def test_offline_engine_with_steals_matches_the_engine_at_its_block(name, block):
    """Steals (6 slots, 2 fade slots) and kills: the same samples as the live engine at the
    same block size. (A stolen voice is frozen from the start of the block that steals it, in
    both: that part depends on the block size, see ``engine._start_voices``.)"""
    ref, live = _render(Engine(_inst(name), block=block, n_slots=6, n_fade=2))
    got, off = _render(OfflineEngine(_inst(name), block=block, threads=2, n_slots=6, n_fade=2))
    off.close()
    assert live.stats["steals"] > 3 and off.stats["steals"] == live.stats["steals"]
    assert np.max(np.abs(got - ref)) <= 1e-5


def test_offline_engine_batches_every_frame_of_a_block():
    inst = _inst("flute")
    calls = []
    e = OfflineEngine(inst, block=8192, threads=1, n_slots=8)
    step = inst.step
    inst.step = lambda f, s, h, g: (calls.append(len(s)), step(f, s, h, g))
    for i in range(8):
        e.push(10 * i, (0x90, 50 + i, 100))
    e.render()
    assert e.max_rows >= 8 * (8192 // spec.HOP + 1)
    assert len(calls) == 1 and calls[0] >= 8 * (8192 // spec.HOP)


def test_live_engine_keeps_its_batch_limit():
    e = Engine(_inst("flute"), block=128, n_slots=16)
    assert e.max_rows == 16 and e.inst.max_rows == 16


def test_offline_render_is_deterministic():
    def run():
        e = OfflineEngine(_inst("flute"), block=4096, threads=2)
        return render_events(e, [(t, bytes(m)) for t, m in EVENTS])
    a, b = run(), run()
    assert np.array_equal(a, b)


def test_render_to_file_writes_what_render_events_returns(tmp_path):
    import soundfile as sf
    ev = [(t, bytes(m)) for t, m in EVENTS]
    ref = render_events(Engine(BasicInstrument(), block=2048), ev)
    e = offline_engine(BasicInstrument(), block=2048)
    frames, peak = render_to_file(e, ev, tmp_path / "a.wav")
    got, sr = sf.read(tmp_path / "a.wav", dtype="float32")
    assert sr == SR and frames == len(ref) == len(got)
    assert abs(peak - np.abs(ref).max()) < 1e-5
    assert np.max(np.abs(got - ref)) < 1e-5          # 24-bit PCM
    with pytest.raises(ValueError):
        render_to_file(offline_engine(BasicInstrument()), ev, tmp_path / "a.mp3")
    # the .wav is written by rtsynth (pcm24), the .flac by libsndfile (its FLAC rounding
    # differs from its WAV rounding by up to one step)
    render_to_file(offline_engine(BasicInstrument(), block=2048), ev, tmp_path / "a.flac")
    flac, _ = sf.read(tmp_path / "a.flac", dtype="float32")
    assert flac.shape == got.shape and np.max(np.abs(flac - got)) <= 1.0 / 2 ** 23


def test_render_to_file_without_a_beside_task_ends_like_render_events(tmp_path):
    """An engine without ``beside`` (the live engine) masters each block before the next: the
    file ends where render_events ends (the last block mastered once, not again after the
    loop), sample for sample."""
    import soundfile as sf
    ev = [(t, bytes(m)) for t, m in EVENTS]
    ref = render_events(Engine(BasicInstrument(), block=2048, reverb=0.0), ev, tail=3.0)
    assert len(ref) < EVENTS[-1][0] + 3 * SR            # ended in silence, not at the tail
    frames, peak = render_to_file(Engine(BasicInstrument(), block=2048, reverb=0.0), ev,
                                  tmp_path / "a.wav", tail=3.0)
    got, _ = sf.read(tmp_path / "a.wav", dtype="float32")
    assert frames == len(ref) == len(got)
    assert np.max(np.abs(got - ref)) < 1e-5


def test_wav_writer_writes_the_bytes_libsndfile_writes(tmp_path):
    """rtsynth's own 24-bit WAV writer (render_to_file's .wav) against libsndfile's, byte for
    byte: header, rounding (half to even), both ends of the range, clipping, several blocks."""
    import soundfile as sf

    from rtsynth.render import _Pcm24Wav
    rng = np.random.default_rng(3)
    x = ((rng.random((5000, 2)) - 0.5) * 2.2).astype(np.float32)       # some beyond +-1
    x[:8] = np.array([[1.0, -1.0], [0.99999994, -0.99999994], [0.0, -0.0],
                      [0.5 / 8388608, -0.5 / 8388608], [1.5 / 8388608, -1.5 / 8388608],
                      [2.5 / 8388608, -2.5 / 8388608], [1e-9, -1e-9], [3.0, -3.0]],
                     np.float32)
    sf.write(tmp_path / "ref.wav", x, SR, subtype="PCM_24")
    w = _Pcm24Wav(tmp_path / "own.wav", SR, 2)
    peaks = [w.write(x[a:a + 1234]) for a in range(0, len(x), 1234)]
    w.close()
    assert (tmp_path / "own.wav").read_bytes() == (tmp_path / "ref.wav").read_bytes()
    assert max(peaks) == np.float32(3.0)


def test_render_to_file_raises_what_the_writing_raises(tmp_path, monkeypatch):
    """The master chain and the writing run beside the next block (OfflineEngine.beside, on
    the worker thread): an error there comes out of render_to_file, and the file is closed."""
    from rtsynth import render as R
    ev = [(t, bytes(m)) for t, m in EVENTS]
    calls = []
    real = R._Pcm24Wav.write

    def write(self, chunk):
        calls.append(len(chunk))
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(self, chunk)
    monkeypatch.setattr(R._Pcm24Wav, "write", write)
    e = offline_engine(BasicInstrument(), block=1024, threads=2)
    with pytest.raises(OSError, match="No space left"):
        render_to_file(e, ev, tmp_path / "full.wav")
    assert len(calls) == 3
    e.close()


def test_file_render_tries_one_thread_and_two_and_the_samples_stay(tmp_path):
    """A file render tries, every TRIAL_EVERY blocks, its blocks on two threads and on one
    (the master chain and writing first, then render_here) and goes on the faster way; the
    file is the same bytes as a render on two threads throughout (here: trials every 4 blocks
    of 1, so both ways render blocks)."""
    ev = [(t, bytes(m)) for t, m in EVENTS]
    files = []
    for every, trial in ((4, 1), (10 ** 9, 0)):
        e = offline_engine(_inst("flute-lite"), block=1024, threads=2)
        e.TRIAL_EVERY, e.TRIAL_BLOCKS = every, trial
        f = tmp_path / f"r{every}.wav"
        render_to_file(e, ev, f)
        files.append(f.read_bytes())
        blocks = e._beside_blocks
        if trial:
            assert 0 < e.beside_here_blocks < blocks and blocks > 20
        else:
            assert e.beside_here_blocks == 0
        e.close()
    assert files[0] == files[1]


def test_split_point_kernel_is_the_share_rule():
    """The offline engine's split (a kernel, twice a block): the first ceil(n (1 - share)) of
    the n active slots on this thread, at least one; fewer than two active: all here."""
    import math

    from rtsynth.engine.offline import _split_at
    rng = np.random.default_rng(4)
    for _ in range(300):
        S = int(rng.integers(1, 80))
        active = (rng.random(S) < rng.random()).astype(np.int8)
        upto = int(rng.integers(0, S + 1))
        for share in (0.5, 1.0 / 3.0, 0.0, 0.9):
            act = np.flatnonzero(active[:upto])
            if len(act) < 2:
                want = upto
            else:
                mine = max(1, min(len(act), int(math.ceil(len(act) * (1.0 - share)))))
                want = int(act[mine - 1]) + 1
            assert _split_at(active, upto, share) == want
