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


# -- the cycle log: a real player driven callback by callback by a simulated server ---------

def _cycle_log_take(shift_event=None):
    """The real player (sync, the basic instrument) called as a JACK server whose cycles go
    wrong in every way the log must explain: a cycle skipped for rtsynth (its MIDI lost),
    a late callback that reads the next cycle's clock (that cycle then skipped), a late one
    followed by the cycle it took the clock of (two callbacks, one clock), an xrun (the next
    block faded in), a recorder hole, and the recorder's own late label (a hole, then the
    hole's block where the next one belongs). Returns (take, log, events, render)."""
    from types import SimpleNamespace

    from rtsynth.engine import Engine
    from rtsynth.instruments import load_instrument
    from rtsynth.live.player import Player
    B, n_cycles = 128, 400
    eng = Engine(load_instrument("basic"), block=B, n_slots=8, reverb=0.0)
    eng.warmup()
    p = Player(eng, ahead=0, ahead_max=2, sync=True)
    p.start()
    events = [(1000 + 900 * k + 37 * k, bytes([0x90 if k % 2 == 0 else 0x80, 60 + 2 * (k // 2),
                                                 90])) for k in range(48)]
    events.append((50 * B + 5, bytes([0x90, 90, 90])))     # in the cycle skipped for rtsynth
    events.append((100 * B + 20, bytes([0x90, 84, 90])))   # in the late callback's cycle
    events.append((150 * B + 60, bytes([0x90, 86, 90])))   # ... in the first of one clock's two
    events += [(220 * B + 10, bytes([0x90, 88, 90])),      # a cycle cut short: the second
               (220 * B + 50, bytes([0x90, 91, 90]))]      # never reaches the player
    events.sort(key=lambda e: e[0])
    if shift_event is not None:                # what the sender says it sent, one frame off
        events_sent = list(events)
        shift_event = next(i for i, (_, d) in enumerate(events) if d == bytes([0x90, 62, 90]))
        f, d = events_sent[shift_event]
        events_sent[shift_event] = (f + 1, d)
    n = n_cycles * B
    audio = np.zeros((2, n), np.float32)
    recorded = np.zeros(n, bool)
    left, right = np.zeros(B, np.float32), np.zeros(B, np.float32)
    skip = {50, 101}                 # clocks (in cycles) rtsynth's callback is not called for
    late = {100: 101, 150: 151, 151: 151}     # cycle -> the clock its callback reads
    try:
        for c in range(n_cycles):
            if c in skip:
                continue
            p.begin_cycle(late.get(c, c) * B, 0)
            for f, d in events:
                if c * B <= f < (c + 1) * B and f != 220 * B + 50:
                    p.midi_at_frame(f - c * B, d)
            p.cycle(left, right, B)
            if c == 200:
                p.server_xrun()
            if c in (250, 300):          # the recorder misses this cycle ...
                continue
            at = (c + 1) if c == 299 else c           # ... and labels 299's block as 300's
            audio[:, at * B:(at + 1) * B] = (left, right)
            recorded[at * B:(at + 1) * B] = True
            if c == 299:
                recorded[299 * B:300 * B] = False
    finally:
        p.stop()
    log = p.cycle_log()
    frames = [f for f, _ in (events_sent if shift_event is not None else events)]
    take = SimpleNamespace(audio=audio, recorded=recorded, start=0,
                           event_frames=np.asarray(frames), xruns=1)

    def render(sev):
        e2 = Engine(load_instrument("basic"), block=B, n_slots=8, reverb=0.0)
        e2.warmup()
        for f, d in sev:
            e2.push(f, d)
        return np.concatenate([e2.render(B).copy() for _ in range(n // B)])
    return take, log, events, render


def test_cycle_log_maps_a_take_exactly_through_skips_late_labels_and_fades():
    from rtsynth.live.player import CYCLE_FADE
    from rtsynth.testing.takes import match_render
    take, log, events, render = _cycle_log_take()
    assert len(log) == 400 - 2 - 1            # every callback but the newest (torn) one
    assert np.any(log[:, 4] & CYCLE_FADE)    # the block after the xrun and after the skip
    from rtsynth.testing.takes import stream_events
    # (to 1e-5 as the JACK tests: the voices' float sums, eight slots full and stealing, may
    # round apart by ~2e-6; an event a frame off differs by ~1e-2)
    m = match_render(take, log, events, render, tol=1e-5, max_lost=2)
    assert m.ok and m.miss < 1e-5, m.reason
    # the callbacks' MIDI counts say which were lost: the skipped cycle's, the cut one's second
    _, lost = stream_events(take, log, events, m.relabel)
    assert sorted(f for f, _ in lost) == [50 * 128 + 5, 220 * 128 + 50], lost
    assert np.max(np.abs(m.off)) > 1e-2
    assert "1 of 2 jumps taken as late callbacks" in m.reason, m.reason
    # the note-ons lost are not in what it played: the match says so when none may be lost
    assert not match_render(take, log, events, render, tol=1e-5, max_lost=1).ok


def test_cycle_log_match_fails_on_an_event_one_frame_off():
    from rtsynth.testing.takes import match_render
    take, log, events, render = _cycle_log_take(shift_event=True)     # the note-on of D4
    m = match_render(take, log, events, render, tol=1e-5, max_lost=2)
    assert not m.ok and "differs" in m.reason, m.reason
