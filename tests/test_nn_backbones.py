import pytest
import torch

from rtsynth.nn.backbones import BACKBONES, make_backbone, index_state, write_state
from rtsynth.nn.model import Decoder

SMALL = {
    "gru": {"hidden": 32, "layers": 2},
    "cnn": {"channels": 16, "kernel": 3, "dilations": [1, 2, 4, 8, 16, 32, 64]},
    "attention": {"dim": 16, "heads": 2, "layers": 2, "window": 50},
}


def run_chunked(bb, x, chunk):
    state = bb.init_state(x.shape[0])
    ys = []
    for s in range(0, x.shape[1], chunk):
        y, state = bb(x[:, s:s + chunk], state)
        ys.append(y)
    return torch.cat(ys, dim=1)


@pytest.mark.parametrize("kind", BACKBONES)
def test_chunked_equals_whole(kind):
    torch.manual_seed(0)
    bb = make_backbone(kind, 7, **SMALL[kind]).eval()
    x = torch.randn(3, 1000, 7)
    with torch.no_grad():
        whole, _ = bb(x, None)
        for chunk in (64, 128, 256, 1000):
            diff = (run_chunked(bb, x, chunk) - whole).abs().max().item()
            assert diff <= 1e-5, (kind, chunk, diff)
        diff = (run_chunked(bb, x[:, :300], 1) - whole[:, :300]).abs().max().item()
        assert diff <= 1e-5, (kind, 1, diff)


@pytest.mark.parametrize("kind", BACKBONES)
def test_decoder_chunked_equals_whole_default_sizes(kind):
    """The shipped sizes: controls from blocks of 1, 64, 128, 256, 1000 frames == whole."""
    torch.manual_seed(1)
    dec = Decoder(kind).eval()
    x = torch.rand(2, 1000, 7)
    with torch.no_grad():
        h, n, _ = dec(x)
        for chunk in (1, 64, 128, 256, 1000):
            t_end = 150 if chunk == 1 else 1000
            st = dec.init_state(2)
            hs, ns = [], []
            for s in range(0, t_end, chunk):
                a, b, st = dec(x[:, s:min(s + chunk, t_end)], state=st)
                hs.append(a)
                ns.append(b)
            assert (torch.cat(hs, 1) - h[:, :t_end]).abs().max() <= 1e-5, chunk
            assert (torch.cat(ns, 1) - n[:, :t_end]).abs().max() <= 1e-5, chunk


@pytest.mark.parametrize("kind", BACKBONES)
def test_state_by_slot(kind):
    """Stepping slots 1 and 3 of a 4-slot state equals stepping those voices alone."""
    torch.manual_seed(2)
    bb = make_backbone(kind, 7, **SMALL[kind]).eval()
    x = torch.randn(4, 20, 7)
    with torch.no_grad():
        ref, _ = bb(x, None)
        state = bb.init_state(4)
        idx = torch.tensor([1, 3])
        out = []
        for t in range(20):
            part = index_state(state, idx)
            y, part = bb(x[idx, t:t + 1], part)
            write_state(state, idx, part)
            out.append(y)
        out = torch.cat(out, 1)
        assert (out - ref[idx]).abs().max() <= 1e-5
        # untouched slots kept their fresh state
        fresh = bb.init_state(1)
        for k in state:
            assert torch.equal(state[k][0], fresh[k][0])


@pytest.mark.parametrize("kind", BACKBONES)
def test_step_slots_equals_forward(kind):
    """The real-time in-place path (ring buffers, slot subsets) gives the whole-sequence output."""
    torch.manual_seed(3)
    bb = make_backbone(kind, 7, **SMALL[kind]).eval()
    x = torch.randn(5, 150, 7)
    with torch.no_grad():
        ref, _ = bb(x, None)
        state = bb.init_state(8)
        slots = torch.tensor([6, 0, 3, 2, 7])
        out = []
        for t in range(150):
            # step a varying subset, in a varying order; the rest wait
            if t % 3 == 1:
                sub = torch.tensor([4, 2, 0])
            elif t % 3 == 2:
                sub = torch.tensor([1, 3])
            else:
                sub = torch.tensor([0, 1, 2, 3, 4])
            y = torch.zeros(5, ref.shape[-1])
            y[sub] = bb.step_slots(x[sub, t], state, slots[sub])
            # voices not in this step are stepped right after, so every voice sees every frame
            rest = torch.tensor([i for i in range(5) if i not in sub.tolist()], dtype=torch.int64)
            if len(rest):
                y[rest] = bb.step_slots(x[rest, t], state, slots[rest])
            out.append(y)
        out = torch.stack(out, 1)
        assert (out - ref).abs().max() <= 1e-5


@pytest.mark.parametrize("kind", BACKBONES)
def test_decoder_step_slots_equals_forward(kind):
    torch.manual_seed(4)
    dec = Decoder(kind).eval()
    x = torch.rand(3, 300, 7)
    with torch.no_grad():
        h, n, _ = dec(x)
        st = dec.init_state(4)
        idx = torch.tensor([3, 1, 0])
        hs, ns = [], []
        for t in range(300):
            a, b = dec.step_slots(x[:, t], None, st, idx)
            hs.append(a)
            ns.append(b)
        assert (torch.stack(hs, 1) - h).abs().max() <= 1e-5
        assert (torch.stack(ns, 1) - n).abs().max() <= 1e-5


def test_decoder_heads_match_spec_harmonic_amplitudes():
    import numpy as np
    from rtsynth import spec
    torch.manual_seed(5)
    dec = Decoder("gru").eval()
    x = torch.rand(2, 10, 7)
    x[..., 0] = torch.linspace(-1.5, 1.5, 10)   # up to midi 96: harmonics above Nyquist
    with torch.no_grad():
        p = dec._inputs(x, None)
        y, _ = dec.backbone(p, None)
        o = dec.head(torch.cat([y, p], -1)).double().numpy()
        h, _ = dec._heads(y, p, x)
    amp = 2.0 / (1 + np.exp(-o[..., 0])) ** np.log(10) + 1e-7
    dist = np.exp(o[..., 1:65]) / np.exp(o[..., 1:65]).sum(-1, keepdims=True)
    f0 = spec.midi_to_hz(x[..., 0].double().numpy() * 24 + 60)
    ref = spec.harmonic_amplitudes(amp, dist, f0)
    np.testing.assert_allclose(h.numpy(), ref, rtol=1e-4, atol=1e-7)
