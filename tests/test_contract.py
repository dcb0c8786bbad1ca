"""One source for the contract (rtsynth.spec, rtsynth.nn.arch): every consumer agrees with it."""

import math

import numpy as np
import pytest

from rtsynth import spec


def test_midi_to_hz_scalar_is_midi_to_hz():
    pitches = np.linspace(-10.0, 140.0, 301)
    ref = spec.midi_to_hz(pitches)
    got = np.array([spec.midi_to_hz_scalar(float(p)) for p in pitches])
    np.testing.assert_array_max_ulp(got, ref, maxulp=2)    # NumPy's pow and libm's may differ
    assert spec.midi_to_hz(69.0) == 440.0 and math.isclose(spec.midi_to_hz(81.0), 880.0)
    assert np.allclose(spec.hz_to_midi(ref), pitches)


def test_torch_f0_is_midi_to_hz():
    import torch

    from rtsynth.nn.synth import f0_per_sample
    pitches = np.linspace(30.0, 100.0, 15)
    x = torch.from_numpy((pitches - spec.PITCH_CENTER) / spec.PITCH_SPAN)[:, None]
    f0 = f0_per_sample(x.double(), hop=4).numpy()
    np.testing.assert_allclose(f0, np.repeat(spec.midi_to_hz(pitches)[:, None], 4, 1),
                               rtol=1e-13)


def test_log_hz_of_pitch_feature_is_midi_to_hz():
    a, b = spec.log_hz_of_pitch_feature()
    x = np.linspace(-1.5, 1.5, 61)
    assert np.allclose(np.exp(a * x + b), spec.midi_to_hz(spec.pitch_feature_to_midi(x)),
                       rtol=1e-13)
    # the NumPy heads kernel has the slope as a constant: it must be spec's
    from rtsynth.nn import fast_kernels
    assert 2.0 * fast_kernels.LN2 == a


def test_frame_features_is_note_features():
    """The kernels' one-frame features (spec.frame_features) are the reference note_features."""
    sr, hop, n = spec.SAMPLE_RATE, spec.HOP, 400
    pitch = 55.0 + 3.0 * np.sin(np.arange(n) / 17.0)
    for rel in (None, 0, 1, 123 * hop + 57, 250 * hop):
        ref = spec.note_features(n, pitch, 93.0, rel)
        got = np.zeros_like(ref)
        for k in range(n):
            spec.frame_features(got[k], float(pitch[k]), 93.0, k * hop,
                                (1 << 62) if rel is None else rel, float(sr))
        np.testing.assert_array_max_ulp(got, ref, maxulp=1)


@pytest.mark.parametrize("sr", [44100, 48000, 96000])
def test_nyquist_fade_everywhere(sr):
    """spec.nyquist_mask, the torch mask and the basic instrument fade the same band."""
    import torch

    from rtsynth.instruments.basic import BasicInstrument
    from rtsynth.nn import synth as tsynth

    nyq = sr / 2.0
    assert spec.nyquist_fade_hz(sr) == pytest.approx(0.05 * nyq)
    f0 = np.linspace(300.0, 3000.0, 91)
    mask = spec.nyquist_mask(f0, spec.N_HARMONICS, sr)
    fh = f0[:, None] * np.arange(1, spec.N_HARMONICS + 1)
    assert (mask[fh >= spec.NYQUIST_MARGIN * nyq] == 0).all()
    assert (mask[fh <= (spec.NYQUIST_MARGIN - spec.NYQUIST_FADE) * nyq] == 1).all()
    assert ((mask > 0) & (mask < 1)).any()
    tmask = tsynth.nyquist_mask(torch.from_numpy(f0), spec.N_HARMONICS, sr).numpy()
    np.testing.assert_allclose(tmask, mask, atol=1e-12)
    # the basic instrument: its harmonics above the margin are silent, those in the fade reduced
    inst = BasicInstrument(sr)
    inst.allocate(len(f0))
    feats = np.zeros((len(f0), spec.N_FEATURES), np.float32)
    feats[:, 0] = (spec.hz_to_midi(f0) - spec.PITCH_CENTER) / spec.PITCH_SPAN
    feats[:, 1:4] = 1.0
    h = np.zeros((len(f0), spec.N_HARMONICS), np.float32)
    g = np.zeros((len(f0), spec.N_NOISE_BANDS), np.float32)
    inst.step(feats, np.arange(len(f0)), h, g)
    f0_played = spec.midi_to_hz(feats[:, 0].astype(np.float64) * 24.0 + 60.0)
    m_played = spec.nyquist_mask(f0_played, spec.N_HARMONICS, sr)
    assert (h[m_played == 0] == 0).all() and (h[m_played == 1] > 0).all()


def test_one_set_of_backbone_defaults():
    """Decoder(kind), Decoder(kind, {}), rtsynth train's default and a config that leaves the
    keys out all build the same backbone: one table, rtsynth.nn.arch.BACKBONE_DEFAULTS."""
    from rtsynth.nn import arch
    from rtsynth.nn.backbones import BACKBONES
    from rtsynth.nn.io import expected_shapes
    from rtsynth.nn.model import DEFAULT_BACKBONE_KW, Decoder
    from rtsynth.train.cli import BACKBONES as TRAIN_BACKBONES

    assert BACKBONES == TRAIN_BACKBONES == arch.BACKBONES == tuple(arch.BACKBONE_DEFAULTS)
    assert DEFAULT_BACKBONE_KW is arch.BACKBONE_DEFAULTS
    for kind in arch.BACKBONES:
        plain = arch.decoder_config(Decoder(kind))
        empty = arch.decoder_config(Decoder(kind, {}))
        assert plain == empty
        assert plain["backbone_kw"] == arch.BACKBONE_DEFAULTS[kind]
        left_out = dict(plain, backbone_kw={})
        assert expected_shapes(left_out) == expected_shapes(plain)
    with pytest.raises(ValueError, match="unknown backbone"):
        arch.fill_backbone_kw("lstm")
