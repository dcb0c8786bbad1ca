import numpy as np
import torch

from rtsynth import spec
from rtsynth.nn import synth
from rtsynth.nn.losses import MultiResolutionSTFTLoss


def test_upsample_matches_spec():
    rng = np.random.default_rng(0)
    fr = rng.standard_normal((7, 5))
    out = synth.upsample_controls(torch.from_numpy(fr)[None], 16)[0].numpy()
    np.testing.assert_allclose(out, spec.upsample_controls(fr, 16), rtol=0, atol=1e-12)


def test_harmonic_amplitudes_match_spec():
    rng = np.random.default_rng(1)
    amp = rng.random((3, 4))
    dist = rng.random((3, 4, spec.N_HARMONICS))
    f0 = rng.uniform(50, 3000, (3, 4))
    ref = spec.harmonic_amplitudes(amp, dist, f0)
    got = synth.harmonic_amplitudes(torch.from_numpy(amp), torch.from_numpy(dist),
                                    torch.from_numpy(f0)).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-7)


def test_synthesis_matches_reference_float64():
    rng = np.random.default_rng(2)
    t = 12
    hop = spec.HOP
    f0 = np.concatenate([np.full(t * hop // 2, 220.0), np.linspace(220, 330, t * hop // 2)])
    harm = spec.harmonic_amplitudes(rng.random(t) * 0.3, rng.random((t, spec.N_HARMONICS)),
                                    np.full(t, 330.0)).astype(np.float64)
    noise = rng.random((t, spec.N_NOISE_BANDS)) * 0.05
    for offset in (0, 12345, spec.NOISE_TABLE_LEN - 100):
        ref = spec.synthesize_reference(harm, noise, f0, offset=offset)
        got = synth.synthesize(torch.from_numpy(harm)[None], torch.from_numpy(noise)[None],
                               torch.from_numpy(f0)[None], offset=offset)[0].numpy()
        assert np.max(np.abs(got - ref)) < 1e-6, np.max(np.abs(got - ref))


def test_synthesis_batch_offsets_float32():
    rng = np.random.default_rng(3)
    t, hop = 5, spec.HOP
    harm = rng.random((2, t, spec.N_HARMONICS)) * 0.01
    noise = rng.random((2, t, spec.N_NOISE_BANDS)) * 0.01
    f0 = np.full((2, t * hop), 440.0)
    out = synth.synthesize(torch.tensor(harm, dtype=torch.float32),
                           torch.tensor(noise, dtype=torch.float32),
                           torch.tensor(f0, dtype=torch.float32), offset=torch.tensor([0, 77]))
    for i, off in enumerate((0, 77)):
        ref = spec.synthesize_reference(harm[i], noise[i], f0[i], offset=off)
        assert np.max(np.abs(out[i].numpy() - ref)) < 1e-4


def test_f0_per_sample_constant():
    p = torch.full((1, 4), (57 - 60) / 24.0)
    f0 = synth.f0_per_sample(p, 8)
    assert f0.shape == (1, 32)
    np.testing.assert_allclose(f0.numpy(), 220.0, rtol=1e-5)


def test_mrstft_loss_zero_on_equal_and_positive_otherwise():
    loss = MultiResolutionSTFTLoss()
    x = torch.randn(2, 4800)
    assert loss(x, x).item() < 1e-6
    assert loss(x, 0.5 * x).item() > 0.1
