"""The NumPy real-time path of the GRU decoder computes what torch computes."""

import numpy as np
import pytest
import torch

from rtsynth import spec
from rtsynth.nn.fast import FastGRUDecoder, fast_decoder
from rtsynth.nn.model import Decoder


def perturbed(kind, z_dim, seed):
    """A decoder whose every weight matters (random offsets on top of the initialisation)."""
    torch.manual_seed(seed)
    dec = Decoder(kind, z_dim=z_dim).eval()
    with torch.no_grad():
        for p in dec.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return dec


@pytest.mark.parametrize("z_dim", [0, 8])
def test_fast_gru_matches_torch_step_by_step(z_dim):
    dec = perturbed("gru", z_dim, 0)
    n_slots = 8
    fast = FastGRUDecoder(dec, n_slots)
    state = dec.init_state(n_slots)
    rng = np.random.default_rng(1)
    z = rng.standard_normal(z_dim).astype(np.float32) if z_dim else None
    for t in range(40):
        slots = np.sort(rng.choice(n_slots, size=rng.integers(1, n_slots + 1), replace=False))
        f = rng.random((len(slots), spec.N_FEATURES)).astype(np.float32)
        f[:, 0] = rng.uniform(-1, 1.2, len(slots))
        with torch.inference_mode():
            zt = None if z is None else torch.from_numpy(z)[None].expand(len(slots), -1)
            h_ref, g_ref = dec.step_slots(torch.from_numpy(f), zt, state,
                                          torch.from_numpy(slots.astype(np.int64)))
        h = np.zeros((len(slots), spec.N_HARMONICS), np.float32)
        g = np.zeros((len(slots), spec.N_NOISE_BANDS), np.float32)
        bad = fast.step(f, None if z is None else np.broadcast_to(z, (len(slots), z_dim)), slots,
                        h, g)
        assert not bad.any()
        np.testing.assert_allclose(h, h_ref.numpy(), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(g, g_ref.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(fast.h, state["h"][:, 0].numpy(), atol=1e-5)


@pytest.mark.parametrize("z_dim", [0, 8])
def test_fast_cnn_matches_torch_step_by_step(z_dim):
    dec = perturbed("cnn", z_dim, 1)
    n_slots = 6
    fast = fast_decoder(dec, n_slots)
    state = dec.init_state(n_slots)
    rng = np.random.default_rng(2)
    z = rng.standard_normal(z_dim).astype(np.float32) if z_dim else None
    # long enough for the largest dilation's taps to wrap around the ring
    for t in range(2 * dec.backbone.ring + 40):
        slots = np.sort(rng.choice(n_slots, size=rng.integers(1, n_slots + 1), replace=False))
        f = rng.random((len(slots), spec.N_FEATURES)).astype(np.float32)
        with torch.inference_mode():
            zt = None if z is None else torch.from_numpy(z)[None].expand(len(slots), -1)
            h_ref, g_ref = dec.step_slots(torch.from_numpy(f), zt, state,
                                          torch.from_numpy(slots.astype(np.int64)))
        h = np.zeros((len(slots), spec.N_HARMONICS), np.float32)
        g = np.zeros((len(slots), spec.N_NOISE_BANDS), np.float32)
        fast.step(f, None if z is None else np.broadcast_to(z, (len(slots), z_dim)), slots, h, g)
        np.testing.assert_allclose(h, h_ref.numpy(), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(g, g_ref.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(fast.buf, state["buf"].numpy(), atol=1e-5)
    np.testing.assert_array_equal(fast.pos, state["pos"].numpy())
