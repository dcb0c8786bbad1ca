"""rtsynth.testing.takes: a take that lost cycles against its offline render. The synthetic
takes here are built the way rtsynth's stream behaves (rtsynth.live.player): a cycle skipped
for the player pauses its stream; one skipped for the recorder only is a hole; after an xrun
the next block is faded in."""

import numpy as np

from rtsynth.testing.takes import first_passing, judge, match_offline, recorded_gaps

SR = 48000


def synth(events, n=20000):
    """A deterministic 'synth': each note-on starts a decaying sine at its key's pitch."""
    out = np.zeros((n, 2), np.float32)
    t = np.arange(n)
    for f, d in events:
        if d[0] & 0xF0 == 0x90 and d[2]:
            hz = 440.0 * 2 ** ((d[1] - 69) / 12)
            k = t[f:] - f
            out[f:, 0] += (0.3 * np.sin(2 * np.pi * hz * k / SR) * np.exp(-k / 8000.0))
    out[:, 1] = out[:, 0]
    return out


class Take:
    def __init__(self, audio, recorded, event_frames, xruns):
        self.audio, self.recorded = audio, recorded
        self.event_frames, self.xruns = np.asarray(event_frames), xruns


EV = [(100, bytes([0x90, 60, 90])), (3000, bytes([0x90, 67, 90])), (9000, bytes([0x90, 64, 90]))]


def take(pause_at=None, hole_at=None, fade_at=None, shift=0, loud=False, xruns=None):
    """A live take of EV, latency 0: ``pause_at``: the player's stream pauses 128 frames there
    (the recorder misses them too); ``hole_at``: the recorder misses 128 frames the player
    rendered; ``fade_at``: a 64-frame fade-in there."""
    n = 20000
    stream_ev = [(f - (128 if pause_at is not None and f >= pause_at + 128 else 0) + shift
                  * (i == 1), d) for i, (f, d) in enumerate(EV)]
    s = synth(stream_ev, n)
    audio = np.zeros((n, 2), np.float32)
    rec = np.ones(n, bool)
    if pause_at is not None:
        audio[:pause_at] = s[:pause_at]
        audio[pause_at + 128:] = s[pause_at:n - 128]
        rec[pause_at:pause_at + 128] = False
    else:
        audio[:] = s
    if hole_at is not None:
        audio[hole_at:hole_at + 128] = 0
        rec[hole_at:hole_at + 128] = False
    if fade_at is not None:
        g = (np.arange(64) / 64.0)[:, None] * (2.0 if loud else 1.0)
        audio[fade_at:fade_at + 64] *= g.astype(np.float32)
    if xruns is None:
        xruns = int(fade_at is not None) + int(pause_at is not None) + int(hole_at is not None)
    return Take(audio.T.copy(), rec, [f for f, _ in EV], xruns)


def render(events):
    return synth(events, 20000)


def test_clean_take_equals_and_a_frame_off_does_not():
    assert match_offline(take(), EV, render).ok
    m = match_offline(take(shift=1), EV, render)
    assert not m.ok and "windows" in m.reason


def test_paused_stream_hole_and_fade_are_seen_through():
    m = match_offline(take(pause_at=5000, hole_at=12000, fade_at=15000), EV, render)
    assert m.ok, m
    assert m.gaps == [(5000, 128), (12000, 128)] and m.taken == (True, False)
    assert len(m.windows) == 1 and m.windows[0][1] <= 64


def test_what_a_fade_cannot_explain_fails():
    assert not match_offline(take(fade_at=15000, loud=True), EV, render).ok       # louder
    assert not match_offline(take(fade_at=15000, xruns=0), EV, render).ok         # no xrun
    # a pause read as no pause (the notes after it placed 128 frames off) is not equal
    t = take(pause_at=5000)
    t.recorded[:] = True
    assert not match_offline(t, EV, render).ok


def test_gaps_judge_and_first_passing():
    rec = np.ones(1000, bool)
    rec[10:20] = False
    rec[990:] = False                   # the end of a take cut short is not a gap
    assert recorded_gaps(rec) == [(10, 10)]
    x = np.ones((500, 2), np.float32)
    y = x.copy()
    y[100:300] *= 0.5                   # too long for a fade
    assert not judge(y, x, np.ones(500, bool), 5, 0, 1e-5)[0]
    calls = []

    def check(v):
        calls.append(v)
        assert v >= 2
        return v
    it = iter(range(10))
    assert first_passing(lambda: next(it), check) == 2 and calls == [0, 1, 2]
