"""The bench's capacity ramp: held voices dealt over 15 channels (no GM drum channel), each note
held once and released, bend and CC traffic on every channel used; the ramp reaches 256."""

from rtsynth.bench import measure as M
from rtsynth.bench.runner import BenchConfig


def _notes(ev, kind):
    return [(e[0] & 0x0F, e[1]) for _, e in ev if len(e) == 3 and e[0] & 0xF0 == kind]


def test_spread_over_fifteen_channels():
    ev, t_on, t_off = M.held_stream(256, 1.0, 48000, 512, program=73, spread=True)
    on, off = _notes(ev, 0x90), _notes(ev, 0x80)
    chans = {c for c, _ in on}
    assert chans == set(M.SPREAD_CHANNELS) and 9 not in chans and len(chans) == 15
    assert len(on) == 256 and len(set(on)) == 256           # no key struck twice on a channel
    assert sorted(off) == sorted(on)
    per = [sum(1 for c, _ in on if c == ch) for ch in sorted(chans)]
    assert max(per) - min(per) <= 1                          # dealt round
    bends = {e[0] & 0x0F for _, e in ev if e[0] & 0xF0 == 0xE0}
    progs = {e[0] & 0x0F for _, e in ev if len(e) == 2 and e[0] & 0xF0 == 0xC0}
    assert bends == chans and progs == chans
    # a few voices use as many channels as voices; the load row's stream is as before
    few, _, _ = M.held_stream(4, 1.0, 48000, 512, spread=True)
    assert {c for c, _ in _notes(few, 0x90)} == {0, 1, 2, 3}
    old, _, _ = M.held_stream(96, 1.0, 48000, 512)
    assert {c for c, _ in _notes(old, 0x90)} == {0, 1}


def test_ramp_reaches_256():
    cfg = BenchConfig().resolve()
    assert cfg.capacity_steps[-1] == 256 and 192 in cfg.capacity_steps
    assert cfg.capacity_steps == sorted(cfg.capacity_steps)
