"""The GRU and attention steps over many rows at once (every frame of an offline block in one
call) give what torch gives frame by frame, and their in-kernel exponential is exp."""

import numpy as np
import pytest
import torch

from rtsynth import spec
from rtsynth.nn.fast import decoder_weights, fast_decoder
from rtsynth.nn.model import Decoder


def perturbed(kind, kw, seed=0):
    torch.manual_seed(seed)
    dec = Decoder(kind, kw, z_dim=0).eval()
    with torch.no_grad():
        for p in dec.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return dec


@pytest.mark.parametrize("kind,kw", [("gru", None), ("gru", {"hidden": 32, "layers": 2}),
                                     ("attention", None),
                                     ("attention", {"dim": 32, "heads": 2, "layers": 2,
                                                    "window": 8, "ff_mult": 2})])
def test_many_frames_in_one_call_equal_torch_frame_by_frame(kind, kw):
    dec = perturbed(kind, kw)
    w, arch = decoder_weights(dec)
    n_slots = 5
    fast = fast_decoder(w, n_slots, arch, max_rows=400)
    state = dec.init_state(n_slots)
    rng = np.random.default_rng(2)
    # voices that start and stop at different frames; a slot at most once per frame
    live = {0: (0, 40), 3: (5, 33), 1: (12, 30), 4: (20, 40)}
    n_frames = 40
    rows = [(t, s) for t in range(n_frames) for s, (a, b) in sorted(live.items()) if a <= t < b]
    slots = np.array([s for _, s in rows], np.int64)
    f = rng.random((len(rows), spec.N_FEATURES)).astype(np.float32)
    f[:, 0] = rng.uniform(-1, 1.2, len(rows))
    h = np.zeros((len(rows), spec.N_HARMONICS), np.float32)
    g = np.zeros((len(rows), spec.N_NOISE_BANDS), np.float32)
    for lo in range(0, len(rows), 61):           # calls of many frames, split mid-frame
        hi = min(len(rows), lo + 61)
        bad = fast.step(f[lo:hi], None, slots[lo:hi], h[lo:hi], g[lo:hi])
        assert not bad.any()
    ref_h, ref_g = np.zeros_like(h), np.zeros_like(g)
    for t in range(n_frames):
        idx = [i for i, (tt, _) in enumerate(rows) if tt == t]
        with torch.inference_mode():
            hr, gr = dec.step_slots(torch.from_numpy(f[idx]), None, state,
                                    torch.from_numpy(slots[idx]))
        ref_h[idx], ref_g[idx] = hr.numpy(), gr.numpy()
    assert np.abs(ref_h).max() > 1e-3
    np.testing.assert_allclose(h, ref_h, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(g, ref_g, rtol=1e-4, atol=1e-6)
    if kind == "gru":
        np.testing.assert_allclose(fast.h, state["h"].numpy(), atol=1e-5)


def test_a_non_finite_input_row_is_flagged_and_its_voice_reset():
    dec = perturbed("gru", {"hidden": 32, "layers": 1})
    w, arch = decoder_weights(dec)
    fast = fast_decoder(w, 3, arch, max_rows=6)
    f = np.full((6, spec.N_FEATURES), 0.5, np.float32)
    f[3, 2] = np.nan                                      # slot 1's second frame
    slots = np.array([0, 1, 2, 0, 1, 2])
    h = np.zeros((6, spec.N_HARMONICS), np.float32)
    g = np.zeros((6, spec.N_NOISE_BANDS), np.float32)
    bad = fast.step(f, None, slots, h, g)
    assert bad.tolist() == [False, False, False, True, False, False]
    assert not h[3].any() and np.isfinite(h).all()
    assert not fast.h[0].any() and fast.h[1].any()        # the bad row's voice starts afresh


def test_the_kernels_exponential_is_exp():
    from rtsynth import jit
    from rtsynth.nn.fast_kernels import _FAST
    # the subkernel's own Numba dispatcher (compiled ahead of time it exists only inlined)
    exp30 = next(k for k in jit.registry() if k.key == "nn_fast_kernels___exp30").jit()

    @jit.kernel(**_FAST)
    def exps(x, out):  # pragma: no cover - compiled
        for i in range(x.shape[0]):
            out[i] = exp30(x[i])

    x = np.concatenate([np.linspace(-30, 30, 20001), [0.0, -1e-9, 1e-9]])
    out = np.zeros_like(x)
    exps(x, out)
    np.testing.assert_allclose(out, np.exp(x), rtol=1e-9)
    y = np.array([-100.0, 100.0, np.nan])
    o = np.zeros(3)
    exps(y, o)
    assert o[0] == pytest.approx(np.exp(-30.0)) and o[1] == pytest.approx(np.exp(30.0))
    assert np.isnan(o[2])
