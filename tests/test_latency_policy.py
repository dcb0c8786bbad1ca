"""The live latency policy (rtsynth.live.player) driven callback by callback, without a server:
sync mode (JACK's default) falls back to the ring when a block is late, goes further ahead when
the ring runs dry, and returns into the callback once blocks fit for ``lower_after`` seconds,
straight from however far ahead it had gone (issue 16.1, and 16.2: no ratchet).

The process callback is this test's loop, paced at the period: what the JACK driver calls
(``begin_cycle``, ``cycle``), with a real engine and the player's real generator thread; the
lateness is the player's own test stall (``RTSYNTH_TEST_STALL``'s attributes).
Start-up lateness (the first ``STARTUP_GRACE_S``) is not rtsynth's own.
"""

from __future__ import annotations

import time

import numpy as np

from rtsynth.engine import Engine
from rtsynth.instruments import load_instrument
from rtsynth.live.player import MODE_SYNC, Player

BLOCK = 128
SR = 48000


def _player(lower_after: float) -> Player:
    eng = Engine(load_instrument("basic"), block=BLOCK, n_slots=8, reverb=0.0)
    eng.warmup()
    return Player(eng, ahead=0, ahead_max=2, sync=True, lower_after=lower_after)


def _callbacks(p: Player, n: int, trace: list, until=None, preempt: float = 0.0) -> None:
    """``n`` process callbacks at the period's pace (stop early once ``until(p)``); appends
    ``(callback, mode, latency_frames)`` after each. ``preempt``: the first callback's thread
    loses the CPU for that long after the cycle began (the machine's lateness)."""
    left = np.zeros(BLOCK, np.float32)
    right = np.zeros(BLOCK, np.float32)
    period = BLOCK / SR
    t_next = time.perf_counter()
    for _ in range(n):
        t_next += period
        p.begin_cycle()
        if preempt:
            time.sleep(preempt)
            preempt = 0.0
        p.cycle(left, right, BLOCK)
        trace.append((p.callbacks, p.mode, p.latency_frames))
        if until is not None and until(p):
            return
        dt = t_next - time.perf_counter()
        if dt < 0.6 * period:
            # a loaded machine: no burst of catching up (back-to-back callbacks are a server's
            # sign of a server-wide xrun, which this loop is not)
            t_next = time.perf_counter() + 0.6 * period
            dt = 0.6 * period
        time.sleep(dt)


def test_sync_falls_back_goes_further_ahead_and_returns_straight_to_the_callback():
    p = _player(lower_after=0.25)             # 94 callbacks of 2.67 ms
    p.start()
    trace: list = []
    try:
        # 8 ms (three periods) every third block, wherever it is rendered: in the start-up
        # grace (the client being wired up) late blocks are not its own and stay in the callback
        p._stall_every, p._stall_s, p._stall_until = 3, 0.008, 0
        _callbacks(p, p._startup_cbs - 5, trace)
        assert p.late_blocks >= 1 and p.own_underruns == 0 and p.sync_fallbacks == 0
        assert p.mode == MODE_SYNC and p.latency_frames == 0
        _callbacks(p, 5, trace)
        # ... after it, the callback's late block sends the next ones to the ring, and the ring,
        # one block ahead, runs dry (further ahead)
        _callbacks(p, 150, trace)
        assert p.sync_fallbacks >= 1 and p.late_blocks >= 1
        assert p.latency_raises >= 1 and max(lat for _, _, lat in trace) >= 2 * BLOCK, trace[-5:]
        p._stall_every = 0                    # blocks fit from here on
        calm = p.callbacks
        _callbacks(p, 3000, trace, until=lambda q: q.mode == MODE_SYNC)
    finally:
        p.stop()
    assert p.mode == MODE_SYNC and p.latency_frames == 0 and p.ahead == 0, trace[-5:]
    assert p.sync_returns >= 1
    # every block it had gone ahead given back (the stats' ahead = raises - lowers holds)
    assert p.latency_lowers == p.latency_raises
    # straight back: about one stable period after the stalls end, where giving the blocks back
    # one per stable period first (two of them from three blocks) and then leaving the ring
    # took three
    back = trace[-1][0]
    assert back - calm < 2 * p._lower_cbs, (back, calm, p._lower_cbs)
    # between the fallback and the return the latency never went below one block: the ring
    # was not skipped (MIDI keeps its place), it was played out
    ring = [lat for cb, mode, lat in trace if cb < back and mode != MODE_SYNC]
    assert ring and min(ring) >= BLOCK


def _heavy(p: Player, n: int = 2, seconds: float = 0.004) -> None:
    """The next ``n`` blocks rendered take ``seconds`` more of their thread's work (1.5
    periods each)."""
    p._stall_every, p._stall_s, p._stall_until = 1, seconds, p.blocks + n


def _past_startup(p: Player, trace: list) -> bool:
    """Past the start-up grace with no late block yet (a loaded machine may have made one)."""
    _callbacks(p, p._startup_cbs + 10, trace)
    return p.mode == MODE_SYNC and p.late_blocks == 0 and p.sync_fallbacks == 0


def test_a_block_late_because_the_machine_stalled_stays_in_the_callback():
    """A callback that lost the CPU for 8 ms (a VM's stall: its thread's own work was small) is
    late, counted as the server's; the next block is no heavier, so rendering stays in the
    callback: no fallback, latency 0 throughout."""
    for attempt in range(3):
        p = _player(lower_after=4.0)
        p.start()
        trace: list = []
        try:
            clean = _past_startup(p, trace)
            if clean:
                n0 = len(trace)
                _callbacks(p, 1, trace, preempt=0.008)
                assert p.late_blocks == 1 and p.server_underruns >= 1 and p.own_underruns == 0
                _callbacks(p, 200, trace)
        finally:
            p.stop()
        if clean:
            break
    assert clean, "every attempt had a late block of the loaded machine's before the stall"
    assert p.sync_fallbacks == 0, p.stats()["policy_trace"]
    assert all(mode == MODE_SYNC and lat == 0 for _, mode, lat in trace[n0:])


#: trace rows that are the machine's doing in a test that makes only heavy blocks of its own
#: (those are 'late_own' and 'fallback'): a block slow or late without its own work, a slow
#: ring block, an underrun of the ring, a fallback for a steady load
MACHINE_ROWS = {"slow", "late", "ring_slow", "own_underrun", "server_underrun", "load_fallback"}


def test_one_heavy_block_stays_two_fall_back_briefly_and_the_latency_comes_back_down():
    """At the default --lower-after (10 s): one block heavy in its own work (1.5 periods: a
    one-off spike) is late, its own, and rendering stays in the callback (the ring would not
    have saved it, and the next block is light). Two in a row: the next blocks come from the
    ring (latency one block), and rendering returns into the callback after SYNC_RETURN_S of
    ring blocks that fit (0.5 s), not the whole --lower-after.

    Counted from the first heavy block on. A loaded machine can make blocks late or slow that
    are not (its lateness, a ring block starved of the CPU: restarting the ring's stable
    period): such a take shows it in the policy trace and is taken again, for 30 s at most;
    a take without it must hold every claim."""
    from rtsynth.live.player import LOWER_AFTER_S, SYNC_RETURN_S
    per_s = SR / BLOCK
    deadline = time.monotonic() + 30.0
    takes = []
    while True:
        p = _player(lower_after=LOWER_AFTER_S)
        p.start()
        trace: list = []
        seen = {}
        try:
            _callbacks(p, p._startup_cbs + 10, trace)
            ready = p.mode == MODE_SYNC and p.sync_fallbacks == 0
            if ready:
                c0 = p.callbacks
                n0 = (p.late_blocks, p.own_underruns, p.sync_fallbacks)

                def since():
                    return tuple(x - y for x, y in zip(
                        (p.late_blocks, p.own_underruns, p.sync_fallbacks), n0))
                _heavy(p, 1)
                _callbacks(p, 1, trace)
                seen["one"] = since()
                _callbacks(p, int(0.3 * per_s), trace)       # past SYNC_REPEAT_S
                seen["after_one"] = (p.mode, p.latency_frames, since()[2])
                _heavy(p, 2)
                _callbacks(p, 2, trace)
                late, _, falls = since()
                seen["two"] = (falls, late, p.mode != MODE_SYNC, p.latency_frames)
                fell = p.callbacks
                _callbacks(p, int(4 * SYNC_RETURN_S * per_s), trace,
                           until=lambda q: q.mode == MODE_SYNC)
                seen["end"] = since()
        finally:
            p.stop()
        noisy = sorted({t["what"] for t in p.stats()["policy_trace"]
                        if t["cb"] > c0 and t["what"] in MACHINE_ROWS}) if ready else ["start"]
        takes.append(noisy)
        if not noisy or time.monotonic() > deadline:
            break
    assert not noisy, f"every take had the machine's late or slow blocks: {takes}"
    assert seen["one"] == (1, 1, 0), seen
    assert seen["after_one"] == (MODE_SYNC, 0, 0), seen
    assert seen["two"] == (1, 3, True, BLOCK), seen
    assert seen["end"] == (3, 3, 1), seen
    back = p.callbacks - fell
    assert p.mode == MODE_SYNC and p.latency_frames == 0 and p.sync_returns == 1, back
    assert SYNC_RETURN_S * per_s <= back < 2 * SYNC_RETURN_S * per_s, back
    # in the ring the latency was one block, never more (no underrun of its own there)
    ring = [lat for cb, mode, lat in trace if cb > fell and cb < p.callbacks and mode != MODE_SYNC]
    assert ring and set(ring) == {BLOCK}
    print(f"{len(takes)} takes: {takes}")


def test_falling_back_again_soon_after_a_return_waits_longer_then_forgets():
    """No flapping, no ratchet: a heavy block soon (within --lower-after) after a return doubles
    the ring's stable period; after a --lower-after in the callback without a fallback, a heavy
    block costs SYNC_RETURN_S again."""
    per_s = SR / BLOCK
    for attempt in range(3):
        p = _player(lower_after=1.0)          # 375 callbacks; SYNC_RETURN_S: 188
        p.start()
        trace: list = []
        backs = []
        try:
            clean = _past_startup(p, trace)
            for wait_after in (10, int(1.2 * per_s), 10):
                if not clean:
                    break
                _heavy(p, 2)
                _callbacks(p, 2, trace)
                fell = p.callbacks
                _callbacks(p, 3 * p._lower_cbs, trace, until=lambda q: q.mode == MODE_SYNC)
                backs.append(p.callbacks - fell)
                _callbacks(p, wait_after, trace)
        finally:
            p.stop()
        noisy = {t["what"] for t in p.stats()["policy_trace"]} & {
            "ring_slow", "own_underrun", "server_underrun"}
        if clean and p.own_underruns == 6 and p.sync_fallbacks == 3 and not noisy:
            break       # (else a loaded machine's slow ring block restarted a window: again)
    assert clean and p.sync_fallbacks == 3 and p.sync_returns == 3, (backs, p.stats()["policy_trace"])
    base, lower = p._return_base, p._lower_cbs
    first, again, forgot = backs
    assert base <= first < base + 20, backs               # the short period
    assert 2 * base - 1 <= again < 2 * base + 20, backs   # soon after a return: doubled
    assert base <= forgot < base + 20, backs              # after a --lower-after in sync: short
    assert p.latency_frames == 0 and p.ahead == 0


def test_one_spike_sheds_no_voice_an_overload_does():
    """Overload shedding follows the typical block, not one spike: a single 20 ms block (7.5
    periods: it lifted the average over SHED_HIGH alone, and shed 120 of 160 held voices on the
    loaded VM) fades no voice out; blocks that stay over the period (a simulated heavy
    instrument, 1.35 periods) still shed."""
    p = _player(lower_after=4.0)
    p.start()
    trace: list = []
    try:
        for i in range(6):
            p.midi_in.append((p.w + 10 + i, bytes([0x90, 60 + 2 * i, 100])))
        _callbacks(p, p._startup_cbs + 10, trace)
        assert p.engine.active_voices == 6
        _heavy(p, 1, 0.020)
        _callbacks(p, 60, trace)
        assert p.shed_voices == 0 and p.engine.active_voices == 6, p.stats()["policy_trace"]
        p._voice_s = 0.0006                  # 6 voices: 3.6 ms a block, every block
        _callbacks(p, 150, trace, until=lambda q: q.shed_voices > 0)
    finally:
        p.stop()
    assert 1 <= p.shed_voices <= 3, p.shed_voices
