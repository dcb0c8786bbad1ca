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


def test_a_block_late_because_the_machine_stalled_returns_to_the_callback_soon():
    """A callback that lost the CPU for 8 ms (a VM's stall: the block's own work was small):
    the blocks go to the ring, but it is not rtsynth's own lateness, and rendering comes back
    into the callback after SYNC_QUICK_RETURN_S (1 s) of ring blocks that fit, not --lower-after."""
    from rtsynth.live.player import SYNC_QUICK_RETURN_S
    for attempt in range(3):
        p = _player(lower_after=4.0)
        p.start()
        trace: list = []
        try:
            _callbacks(p, p._startup_cbs + 10, trace)          # past the start-up grace
            # a loaded machine may have made a block late on its own already: try again
            clean = p.mode == MODE_SYNC and p.late_blocks == 0 and p.sync_fallbacks == 0
            if clean:
                _callbacks(p, 1, trace, preempt=0.008)
                assert p.sync_fallbacks == 1 and p.late_blocks == 1 and p.mode != MODE_SYNC
                fell = p.callbacks
                _callbacks(p, 1200, trace, until=lambda q: q.mode == MODE_SYNC)
        finally:
            p.stop()
        if clean:
            break
    assert clean, "every attempt had a late block of the loaded machine's before the stall"
    back = p.callbacks - fell
    per_s = SR / BLOCK
    assert p.server_underruns >= 1
    if p.own_underruns:
        # the loaded machine's generator fell behind in the ring: that is rtsynth's own
        # lateness, so the whole stable period is waited for (1200 callbacks: 3.2 of 4 s)
        assert p.mode != MODE_SYNC and p.sync_returns == 0, back
        return
    assert p.mode == MODE_SYNC and p.latency_frames == 0 and p.sync_returns == 1
    assert SYNC_QUICK_RETURN_S * per_s <= back < 2 * SYNC_QUICK_RETURN_S * per_s, back
