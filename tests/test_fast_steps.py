"""The fused GRU and attention steps (rtsynth.nn.fast_kernels.gru_fused, attention_fused: the
whole step in one nogil kernel): a row's controls are the same bits in whatever batch it comes
(one frame per call as the live engine steps, every frame of a block in one call as the offline
engine does, the voices split between two forked steppers as its two threads do: every
product is sgemm of two rows or more and a multiple of 16 wide), and the
engines use them: offline == live, and the live ParallelEngine gives the same samples with one
thread or two. (Against torch: tests/test_nn_fast.py, whose steps are these.)"""

import numpy as np
import pytest

from rtsynth import spec
from rtsynth.engine import Engine, OfflineEngine
from rtsynth.engine.parallel import ParallelEngine
from rtsynth.instruments import load_instrument, models_dir
from rtsynth.nn.fast import blas_pointers, decoder_weights, fast_decoder

from test_nn_fast import perturbed
from test_parallel import _play
from test_render_offline import _render

pytestmark = pytest.mark.skipif(blas_pointers() is None,
                                reason="NumPy's BLAS cannot be called from the kernels")

CASES = [("gru", None, 0), ("gru", None, 8), ("gru", {"hidden": 32, "layers": 2}, 0),
         ("gru", {"hidden": 16, "layers": 3}, 0),
         ("attention", None, 0), ("attention", None, 8),
         ("attention", {"dim": 32, "heads": 2, "layers": 2, "window": 16, "ff_mult": 2}, 0)]


def _frames(n_slots, n_frames, seed):
    """Per frame: the slots that sound (sorted) and their features, some beyond the range."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_frames):
        slots = np.sort(rng.choice(n_slots, size=rng.integers(1, n_slots + 1), replace=False))
        f = rng.random((len(slots), spec.N_FEATURES)).astype(np.float32)
        f[:, 0] = rng.uniform(-1, 1.2, len(slots))
        out.append((slots.astype(np.int64), f))
    return out


def _controls(dec):
    K, B = dec.k, len(dec.b_head) - 1 - dec.k
    return lambda n: (np.zeros((n, K), np.float32), np.zeros((n, B), np.float32))


@pytest.mark.parametrize("kind,kw,z_dim", CASES)
def test_a_rows_controls_are_the_same_in_any_batch(kind, kw, z_dim):
    dec = perturbed(kind, z_dim, 2, kw)
    w, arch = decoder_weights(dec)
    n_slots, n_frames = 7, 40
    frames = _frames(n_slots, n_frames, 3)
    z = np.random.default_rng(4).standard_normal((1, z_dim)).astype(np.float32) if z_dim else None
    clip = (-0.2, 0.8)                       # some rows beyond it: the pitch clamp runs too

    # live: one frame per call
    live = fast_decoder(w, n_slots, arch)
    live.pitch_clip = clip
    new = _controls(live)
    ref = []
    for slots, f in frames:
        h, g = new(len(slots))
        assert not live.step(f, z, slots, h, g).any()
        ref.append((h, g))
    assert live._fa is not None              # the fused step ran
    assert live.n_outside > 0 or any(np.any(f[:, 0] > clip[1]) for _, f in frames)

    # offline: every frame in one call, and the voices split between a decoder and a fork
    rows = sum(len(s) for s, _ in frames)
    off = fast_decoder(w, n_slots, arch, max_rows=rows)
    off.pitch_clip = clip
    other = off.fork()
    slots = np.concatenate([s for s, _ in frames])
    feats = np.concatenate([f for _, f in frames])
    h_all, g_all = new(rows)
    off.step(feats, z, slots, h_all, g_all)
    split = fast_decoder(w, n_slots, arch, max_rows=rows)
    split.pitch_clip = clip
    fork = split.fork()
    h_sp, g_sp = new(rows)
    lo = slots < 3
    for d, m in ((fork, ~lo), (split, lo)):         # the fork first: it runs beside
        hh, gg = new(int(m.sum()))
        d.step(np.ascontiguousarray(feats[m]), z, np.ascontiguousarray(slots[m]), hh, gg)
        h_sp[m], g_sp[m] = hh, gg
    h_ref = np.concatenate([h for h, _ in ref])
    g_ref = np.concatenate([g for _, g in ref])
    assert np.abs(h_ref).max() > 1e-4
    # To float32 rounding, not bit for bit: OpenBLAS picks its sgemm kernel by the CPU and the
    # number of rows, and on some CPUs (this AMD EPYC VM, session 10) 1, 2-3, 4-7 and 8+ rows
    # round differently (1 ulp); a few rows off by one ulp, never more than a few ulps.
    def close(a, b):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for h, g in ((h_all, g_all), (h_sp, g_sp)):
        close(h, h_ref)
        close(g, g_ref)
    for k in live.state:                     # and the state they leave
        close(live.state[k], off.state[k])
        close(live.state[k], split.state[k])
    assert other is not off and other._fa is None


def _model(name):
    if not (models_dir() / name / "model.safetensors").exists():
        pytest.skip("no shipped models")
    return load_instrument(name)


@pytest.mark.parametrize("name", ["flute-gru", "flute-attention"])
def test_offline_two_threads_give_the_live_samples(name):
    """The offline engine's two threads step the model through the fused kernel (each its own
    voices): the live engine's samples at 128 frames, to the float32 rounding of the two
    threads' partial sums."""
    ref, _ = _render(Engine(_model(name), block=128, n_slots=16))
    off = OfflineEngine(_model(name), block=8192, threads=2, n_slots=16)
    assert off._fused is not None and off._steppers is not None
    got, off = _render(off)
    off.close()
    assert np.abs(ref).max() > 0.01
    assert np.max(np.abs(got - ref)) <= 1e-5


@pytest.mark.parametrize("name", ["flute-gru", "flute-attention"])
def test_parallel_engine_same_samples_with_one_thread_or_two(name):
    """The live ParallelEngine steps a GRU or attention instrument in its parts' kernels (the
    fused step, no GIL): bit for bit the same with one thread or two."""
    outs = {}
    for threads in (1, 2):
        e = ParallelEngine(_model(name), block=128, n_slots=48, threads=threads)
        try:
            assert e._fused is not None
            e.warmup()
            outs[threads] = _play(e, 60, 40)
        finally:
            e.close()
    assert np.abs(outs[1]).max() > 0.01
    assert np.array_equal(outs[1], outs[2])


@pytest.mark.parametrize("kw", [None, {"channels": 16, "kernel": 3, "dilations": [1, 2, 8]}])
def test_cnn_step_is_the_fused_kernel_and_its_numpy_path_the_same_numbers(kw):
    """FastCNNDecoder.step runs the engines' fused kernel (fast_kernels.cnn_rows, one nogil
    call); its NumPy path (the fallback where the kernels cannot call NumPy's BLAS) gives the
    same controls to float rounding, frame by frame and many frames in one call, and leaves the
    same state."""
    dec = perturbed("cnn", 0, 2, kw)
    w, arch = decoder_weights(dec)
    n_slots, n_frames = 7, 40
    frames = _frames(n_slots, n_frames, 5)
    rows = sum(len(s) for s, _ in frames)
    fused = fast_decoder(w, n_slots, arch, max_rows=rows)
    numpy_ = fast_decoder(w, n_slots, arch, max_rows=rows)
    for d in (fused, numpy_):
        d.pitch_clip = (-0.2, 0.8)
    new = _controls(fused)
    for slots, f in frames:
        h, g = new(len(slots))
        h2, g2 = new(len(slots))
        fused.step(f, None, slots, h, g)
        numpy_.numpy_step(f, None, slots, h2, g2)
        assert np.abs(h).max() > 1e-4
        assert np.abs(h - h2).max() <= 1e-6 and np.abs(g - g2).max() <= 1e-6
    assert fused._fa is not None                # the fused kernel ran
    np.testing.assert_array_equal(fused.pos, numpy_.pos)
    np.testing.assert_allclose(fused.buf, numpy_.buf, atol=1e-6)
    slots = np.concatenate([s for s, _ in frames])
    feats = np.concatenate([f for _, f in frames])
    for d in (fused, numpy_):
        d.reset(np.arange(n_slots))
    h, g = new(rows)
    h2, g2 = new(rows)
    fused.step(feats, None, slots, h, g)
    numpy_.numpy_step(feats, None, slots, h2, g2)
    assert np.abs(h - h2).max() <= 1e-6 and np.abs(g - g2).max() <= 1e-6
