"""The Numba synthesis kernel (rtsynth.dsp.synth.render_voices) against a plain NumPy reference.

The reference below is written from the kernel's docstring and rtsynth.spec, sample by sample in
float64 (exact sines, no phasor recurrence): frames at the voice clock's multiples of ``hop``,
``alpha = (j + 1) / hop`` (``min((j + 1) / FIRST_RAMP, 1)`` in a voice's first frame, 1 for
frozen slots), f0 held over ``SUB`` voice samples, harmonics at or
above 0.98 Nyquist skipped, noise from the looped table, gain, kill fade, pan. It drives the kernel
block by block like the engine does (frames handed over in the block where they start, kills
given as block offsets), with blocks of different sizes.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from rtsynth.dsp.synth import SUB, make_work, noise_layout, render_voices
from rtsynth.engine.bank import make_voices
from rtsynth.engine.channels import ChannelRows
from rtsynth.spec import FIRST_RAMP

SR = 48000.0
HOP = 192
K = 64
B = 20
L = 1 << 12
TOL = 1e-5


class Voice:
    """One voice's script: start time (absolute sample), controls per frame, kill, channel."""

    def __init__(self, rng, start, note, n_frames, ch=0, kill_at=None, kill_len=1,
                 frozen=False, theta0=0.0, vpos0=0, scale=1.0, nan_frame=None):
        self.start = start
        self.note = note
        self.ch = ch
        self.frames_h = (rng.random((n_frames, K)) * (2.0 * scale / K)).astype(np.float32)
        self.frames_g = (rng.random((n_frames, B)) * 0.05 * scale).astype(np.float32)
        if nan_frame is not None:
            self.frames_h[nan_frame, 3] = np.nan
        self.kill_at = kill_at
        self.kill_len = kill_len
        self.frozen = frozen
        self.theta0 = theta0
        self.vpos0 = vpos0
        self.noise_off = int(rng.integers(0, L))
        # frozen slots hold fixed controls (as the engine's fade copies do)
        self.hold_h = (rng.random(K) * (2.0 * scale / K)).astype(np.float32)
        self.hold_g = (rng.random(B) * 0.05 * scale).astype(np.float32)


def channel_arrays(rng, total, vib=False, bend=False):
    bend_a = np.zeros((16, total))
    vib_a = np.zeros((16, total))
    if bend:
        # slow bends of up to +-12 semitones, so the Nyquist cut moves
        t = np.arange(total)
        for ch in range(16):
            bend_a[ch] = 12.0 * np.sin(2 * np.pi * t / rng.uniform(800, 3000) + rng.uniform(0, 6))
    if vib:
        vib_a[:] = rng.uniform(0.2, 1.5, (16, 1))
    gain = rng.uniform(0.3, 1.0, (16, 1)) * (1.0 + 0.2 * np.sin(np.arange(total) / 300.0))
    return bend_a, vib_a, gain


def reference(voices, total, tables, bend_a, vib_a, gain, pan_l, pan_r, lfo_w):
    """float64, sample by sample; returns (out [total, 2], bad voice indices)."""
    out = np.zeros((total, 2))
    bad = []
    two_pi = 2 * np.pi
    lim = 0.98 * np.pi
    h = np.arange(1, K + 1)
    for i, vc in enumerate(voices):
        y_all = np.zeros(total)
        n = vc.vpos0
        theta = vc.theta0
        w = 0.0
        if vc.frozen:
            prev_h = cur_h = vc.hold_h.astype(np.float64)
            prev_g = cur_g = vc.hold_g.astype(np.float64)
        else:
            prev_h = np.zeros(K)
            cur_h = np.zeros(K)
            prev_g = np.zeros(B)
            cur_g = np.zeros(B)
        r = 0
        kp = 0
        for t in range(vc.start, total):
            ph = n % HOP
            if ph == 0 and not vc.frozen:
                prev_h, prev_g = cur_h, cur_g
                if r < len(vc.frames_h):
                    cur_h = vc.frames_h[r].astype(np.float64)
                    cur_g = vc.frames_g[r].astype(np.float64)
                    r += 1
            if n % SUB == 0:
                pitch = (vc.note + bend_a[vc.ch, t]
                         + vib_a[vc.ch, t] * math.sin(lfo_w * n))
                w = two_pi * 440.0 * 2.0 ** ((pitch - 69.0) / 12.0) / SR
            hmax = K if w * K <= lim else int(lim / w)
            alpha = 1.0 if vc.frozen else (ph + 1.0) / HOP
            if n < HOP and not vc.frozen:
                alpha = min((ph + 1.0) / FIRST_RAMP, 1.0)
            a = prev_h + alpha * (cur_h - prev_h)
            y = float(np.sum((a * np.sin(h * theta))[:hmax]))
            g = prev_g + alpha * (cur_g - prev_g)
            y += float(np.dot(g, tables[(vc.noise_off + n) % L].astype(np.float64)))
            env = gain[vc.ch, t]
            if vc.kill_at is not None and t >= vc.kill_at:
                if kp >= vc.kill_len:
                    break
                env *= 1.0 - kp / vc.kill_len
                kp += 1
            y_all[t] = y * env
            theta += w
            n += 1
        if not np.all(np.isfinite(y_all)):
            bad.append(i)
            continue
        out[:, 0] += y_all * pan_l[vc.ch]
        out[:, 1] += y_all * pan_r[vc.ch]
    return out, bad


class Slots:
    """The engine's voice bank (:func:`rtsynth.engine.bank.make_voices`, the constructor the
    engine uses) for a list of voices, one slot each; its fields read through this object."""

    def __init__(self, voices, max_block):
        S = len(voices)
        self.S = S
        self.R = max_block // HOP + 2
        self.vs = make_voices(S, K, B, self.R, max_block)
        vs = self.vs
        vs.chan[:] = [v.ch for v in voices]
        vs.note[:] = [v.note for v in voices]
        vs.vpos[:] = [v.vpos0 for v in voices]
        vs.theta[:] = [v.theta0 for v in voices]
        for s, v in enumerate(voices):
            if v.frozen:
                vs.prev_harm[s] = vs.cur_harm[s] = v.hold_h
                vs.prev_noise[s] = vs.cur_noise[s] = v.hold_g
        vs.frozen[:] = [v.frozen for v in voices]
        vs.noise_off[:] = [v.noise_off for v in voices]
        vs.kill_len[:] = [v.kill_len for v in voices]
        self.work = make_work(max_block, HOP, K, B)
        self.next_frame = np.zeros(S, np.int64)
        self.started = np.zeros(S, bool)

    def __getattr__(self, name):
        return getattr(self.__dict__["vs"], name)


def kernel_args(sl, n, lo, hi, tables, bend, vib, lfo_w, gain, pan_l, pan_r, out):
    """The arguments of render_voices for the slot range ``lo:hi`` (a thread's share)."""
    return (n, SR, HOP, lo, hi, sl.vs, ChannelRows(bend, vib, gain, pan_l, pan_r), tables,
            lfo_w, sl.work, out)


def run_kernel(voices, total, blocks, tables, bend_a, vib_a, gain, pan_l, pan_r, lfo_w,
               split=None):
    """Drive the kernel block by block; ``split``: slot boundaries of per-'thread' calls."""
    max_block = max(blocks)
    sl = Slots(voices, max_block)
    out_all = np.zeros((total, 2), np.float32)
    bad_any = np.zeros(len(voices), bool)
    t0 = 0
    bi = 0
    while t0 < total:
        n = min(blocks[bi % len(blocks)], total - t0)
        bi += 1
        for s, v in enumerate(voices):
            if not sl.started[s] and t0 <= v.start < t0 + n:
                sl.started[s] = True
                sl.active[s] = 1
                sl.start_off[s] = v.start - t0
            if sl.active[s] == 0:
                sl.n_new[s] = 0
                continue
            # frames whose first sample falls in this block
            first = sl.vpos[s]
            count = n - sl.start_off[s]
            k0 = -(-first // HOP)
            k1 = -(-(first + count) // HOP)
            sl.n_new[s] = 0
            if not v.frozen:
                for k in range(k0, k1):      # voice clock starts at 0: frame k is frames[k]
                    if k < len(v.frames_h):
                        sl.new_harm[s, sl.n_new[s]] = v.frames_h[k]
                        sl.new_noise[s, sl.n_new[s]] = v.frames_g[k]
                        sl.n_new[s] += 1
            if v.kill_at is not None and sl.kill_start[s] < 0 and v.kill_at < t0 + n:
                sl.kill_start[s] = max(v.kill_at - t0, 0)
        sl.bad[:] = 0
        layout = noise_layout(tables.T)              # the reference reads tables [L, B]
        cuts = [0, len(voices)] if split is None else [0, *split, len(voices)]
        ch = (slice(None), slice(t0, t0 + n))
        bend, vib, g = bend_a[ch], vib_a[ch], gain[ch]
        bend, vib, g = (np.ascontiguousarray(x) for x in (bend, vib, g))
        for a, b in zip(cuts[:-1], cuts[1:]):
            out = np.zeros((n, 2), np.float32)
            render_voices(*kernel_args(sl, n, a, b, layout, bend, vib, lfo_w, g, pan_l, pan_r,
                                       out))
            out_all[t0:t0 + n] += out
        for s in np.flatnonzero(sl.bad):
            bad_any[s] = True
            sl.active[s] = 0
        t0 += n
    return out_all, np.flatnonzero(bad_any).tolist(), sl


def scene(seed, n_voices=6, total=3000, vib=False, bend=False, high=False, kills=True,
          frozen=False, nan_voice=None, mid_starts=True):
    rng = np.random.default_rng(seed)
    tables = rng.standard_normal((L, B)).astype(np.float32)
    bend_a, vib_a, gain = channel_arrays(rng, total, vib, bend)
    pan_l = rng.uniform(0.3, 1.0, 16).astype(np.float32)
    pan_r = rng.uniform(0.3, 1.0, 16).astype(np.float32)
    lfo_w = 2 * math.pi * 5.5 / SR
    voices = []
    for i in range(n_voices):
        start = int(rng.integers(0, total // 2)) if mid_starts else 0
        note = rng.uniform(70, 100) if high else rng.uniform(28, 60)
        kill_at = None
        kill_len = 1
        if kills and i % 3 == 1:
            kill_at = start + int(rng.integers(0, total // 2))
            kill_len = int(rng.integers(1, 900))
        fr = frozen and i % 2 == 0
        voices.append(Voice(rng, start, note, total // HOP + 2, ch=i % 16, kill_at=kill_at,
                            kill_len=kill_len, frozen=fr, theta0=rng.uniform(0, 50) if fr else 0.0,
                            vpos0=int(rng.integers(0, 5000)) if fr else 0,
                            nan_frame=3 if i == nan_voice else None))
    return voices, total, tables, bend_a, vib_a, gain, pan_l, pan_r, lfo_w


BLOCKS = [[128], [64, 37, 200, 1], [2048], [333, 17]]


@pytest.mark.parametrize("blocks", BLOCKS, ids=lambda b: "-".join(map(str, b)))
@pytest.mark.parametrize("kind", ["plain", "vibrato", "bend-high", "frozen"])
def test_matches_reference(kind, blocks):
    args = scene(hash((kind, len(blocks))) % 1000, vib=kind == "vibrato",
                 bend=kind == "bend-high", high=kind == "bend-high", frozen=kind == "frozen")
    voices, total, tables, bend_a, vib_a, gain, pan_l, pan_r, lfo_w = args
    ref, ref_bad = reference(*args)
    got, bad, _ = run_kernel(voices, total, blocks, tables, bend_a, vib_a, gain, pan_l, pan_r,
                             lfo_w)
    assert bad == ref_bad == []
    assert np.max(np.abs(ref)) > 0.2          # full-scale-ish material
    assert np.max(np.abs(got - ref)) <= TOL


def test_nyquist_cut_moves_with_bend():
    """A high note bent up and down: harmonics drop out and come back per sub-block."""
    args = scene(7, n_voices=3, bend=True, high=True, kills=False, mid_starts=False)
    voices, total, tables, bend_a, vib_a, gain, pan_l, pan_r, lfo_w = args
    for v in voices:
        v.frames_h[:] = 1.0 / K           # every harmonic loud: a missed cut would show
        v.note = 96.0
    ref, _ = reference(*args)
    got, bad, _ = run_kernel(voices, total, [100, 150], tables, bend_a, vib_a, gain, pan_l,
                             pan_r, lfo_w)
    assert bad == []
    assert np.max(np.abs(got - ref)) <= TOL


def test_block_size_independent():
    args = scene(11, vib=True, frozen=True)
    voices, total, tables, bend_a, vib_a, gain, pan_l, pan_r, lfo_w = args
    outs = [run_kernel(voices, total, b, tables, bend_a, vib_a, gain, pan_l, pan_r, lfo_w)[0]
            for b in ([total], [128], [1, 63, 190, 7])]
    for o in outs[1:]:
        assert np.max(np.abs(o - outs[0])) <= TOL


def test_slot_range_views_add_up():
    """Voices split over 'threads': calls on slot ranges add up to one call."""
    args = scene(5, n_voices=7, vib=True, frozen=True)
    voices, total, tables, bend_a, vib_a, gain, pan_l, pan_r, lfo_w = args
    one, _, s1 = run_kernel(voices, total, [128], tables, bend_a, vib_a, gain, pan_l, pan_r,
                            lfo_w)
    split, _, s2 = run_kernel(voices, total, [128], tables, bend_a, vib_a, gain, pan_l, pan_r,
                              lfo_w, split=[2, 5])
    assert np.max(np.abs(one - split)) <= 1e-6    # float32 sums in another order
    for name in ("theta", "vpos", "kill_pos", "active", "prev_harm", "cur_harm"):
        np.testing.assert_array_equal(getattr(s1, name), getattr(s2, name))


def test_nan_voice_is_flagged_and_dropped():
    args = scene(3, n_voices=4, kills=False, nan_voice=2)
    voices, total, tables, bend_a, vib_a, gain, pan_l, pan_r, lfo_w = args
    ref, ref_bad = reference(*args)
    got, bad, _ = run_kernel(voices, total, [128], tables, bend_a, vib_a, gain, pan_l, pan_r,
                             lfo_w)
    assert ref_bad == [2] and bad == [2]
    assert np.all(np.isfinite(got))
    # the other voices are untouched, and nothing of voice 2 is left from before its NaN
    # (the kernel drops a bad voice's whole block, the reference its whole output: compare
    # up to the block where the NaN arrives)
    nan_t = voices[2].start + 3 * HOP     # frame 3 becomes the target at voice sample 3 hop
    upto = (nan_t // 128) * 128
    assert np.max(np.abs(got[upto + 128:] - ref[upto + 128:])) <= TOL


def test_kill_fade_ends_voice():
    rng = np.random.default_rng(0)
    args = scene(9, n_voices=3, kills=False, mid_starts=False)
    voices, total, tables, bend_a, vib_a, gain, pan_l, pan_r, lfo_w = args
    voices[0].kill_at = 500
    voices[0].kill_len = 300          # ends at 800, mid-block
    voices[1].kill_at = 1000
    voices[1].kill_len = int(rng.integers(1, 3))
    ref, _ = reference(*args)
    got, bad, sl = run_kernel(voices, total, [128], tables, bend_a, vib_a, gain, pan_l, pan_r,
                              lfo_w)
    assert bad == []
    assert np.max(np.abs(got - ref)) <= TOL
    assert sl.active[0] == 0 and sl.active[1] == 0 and sl.active[2] == 1
    assert sl.kill_pos[0] == 300


@pytest.mark.parametrize("top", [17, 33, 49])
def test_quiet_tail_skipped_exactly_and_within_its_bound(top):
    """Harmonics ``top..K`` whose amplitudes sum to at most QUIET_TAIL over every frame are not
    synthesised from the chunk that holds them on (chunks of KC): the output is bit for bit the
    output with them set to 0 where they fill whole chunks, and within QUIET_TAIL (times gain
    and pan) of the reference that plays them; a tail above the bound is played."""
    from rtsynth.dsp.synth import KC, QUIET_TAIL
    args = scene(21, n_voices=3, kills=False, mid_starts=False)
    voices, total, tables, bend_a, vib_a, gain, pan_l, pan_r, lfo_w = args
    for v in voices:
        v.note = 40.0                       # all 64 harmonics below the Nyquist cut
        v.frames_h[:, top - 1:] = 0.9 * QUIET_TAIL / (K - top + 1)
        v.frames_g[:] = 0.0                  # harmonics alone: the differences are theirs
    run = lambda vs: run_kernel(vs, total, [128, 77], tables, bend_a, vib_a, gain, pan_l,
                                pan_r, lfo_w)[0]
    quiet = run(voices)
    ref, _ = reference(*args)
    bound = QUIET_TAIL * float(np.max(gain)) * float(max(pan_l.max(), pan_r.max())) * len(voices)
    assert np.max(np.abs(quiet - ref)) <= bound + TOL
    import copy
    zeroed = copy.deepcopy(voices)
    first_skipped = -(-(top - 1) // KC) * KC      # the first chunk wholly in the tail
    for v in zeroed:
        v.frames_h[:, first_skipped:] = 0.0
    if first_skipped < K:
        assert np.array_equal(quiet, run(zeroed))
    loud = copy.deepcopy(voices)
    for v in loud:
        v.frames_h[:, top - 1:] = 3.0 * QUIET_TAIL / (K - top + 1)
    got = run(loud)
    assert np.max(np.abs(got - quiet)) > 0.5 * QUIET_TAIL * float(np.min(gain)) * 0.3
