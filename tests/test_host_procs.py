"""A file render's rack parts in processes of their own (rtsynth.host.procs): the file is the
in-process render's, byte for byte (chords, the pool's steals of sounding voices cutting the
stolen parts' blocks, idle parts, the reverb's tail); the counters come back; a part that fails
is one error, the old file kept, no process left behind."""

from __future__ import annotations

import os

import numpy as np
import pytest

from test_host import dense_events, rack_args


def _events():
    """Four GM parts (flute, clarinet, cello, violin) with chords, overlapping long notes past a
    small pool (steals of sounding voices), a pause (every part idle) and notes beyond the
    flute's range."""
    ev = dense_events(n_notes=60)
    ev += [(0, bytes([0xC3, 40]))]
    rng = np.random.default_rng(5)
    for i in range(12):
        on = 3000 + i * 4100
        key = int(rng.integers(60, 76))
        for k in (0, 4, 7):
            ev.append((on, bytes([0x93, key + k, 80])))
            ev.append((on + 9000, bytes([0x83, key + k, 0])))
    late = 70000 + 48000 * 2
    ev += [(late, bytes([0x90, 104, 90])), (late + 9000, bytes([0x80, 104, 0])),
           (late + 100, bytes([0x91, 60, 90])), (late + 20000, bytes([0x81, 60, 0]))]
    return sorted(ev, key=lambda e: e[0])


def _render(path, processes: bool, block=4096, polyphony=8, reverb=0.12, tail=1.0, **kw):
    from rtsynth.host.wiring import build_rack
    from rtsynth.render import render_to_file
    rack = build_rack(rack_args(reverb=reverb, polyphony=polyphony), block, None, True, {}, [])
    rack.processes = processes
    try:
        frames, peak = render_to_file(rack, list(_events()), path, tail=tail, **kw)
    finally:
        rack.close()
    return rack, frames, peak


def _no_children():
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


@pytest.mark.parametrize("block,reverb,tail", [(4096, 0.12, 1.0), (1024, 0.0, 3.0)])
def test_parts_in_processes_give_the_in_process_file(tmp_path, block, reverb, tail):
    """(The reverb's tail up to ``tail``; without reverb the render ends in silence before.)"""
    here, f0, p0 = _render(tmp_path / "here.wav", False, block, reverb=reverb, tail=tail)
    forked, f1, p1 = _render(tmp_path / "forked.wav", True, block, reverb=reverb, tail=tail)
    last = _events()[-1][0]
    assert (f0 == last + int(tail * 48000)) == (reverb > 0)           # the end: silence
    assert here.forked_blocks == 0 and forked.forked_blocks > 20
    assert len(here.part_list) == 4 and here.blocks_cut > 3          # sounding voices stolen
    assert sum(p.skipped for p in here.part_list) > 10                # idle parts skipped
    a, b = (tmp_path / "here.wav").read_bytes(), (tmp_path / "forked.wav").read_bytes()
    assert len(a) > 200_000 and a == b
    assert (f0, p0) == (f1, p1)
    # the counters the children kept, in the parent's objects
    assert here.stats == forked.stats and forked.stats["steals"] > 5
    for p, q in zip(here.part_list, forked.part_list):
        g, h = p.engine.inst.guard, q.engine.inst.guard
        assert (g.out_of_range, g.bad_rows, g.fault) == (h.out_of_range, h.bad_rows, h.fault)
    assert forked.part_list[0].engine.inst.guard.out_of_range > 0    # key 104 on the flute
    _no_children()
    with pytest.raises(RuntimeError):
        forked.render()                   # its engines here are behind


def test_a_part_that_fails_is_one_error_and_the_old_file_stays(tmp_path, monkeypatch):
    from rtsynth.host import rack as rk
    out = tmp_path / "out.wav"
    out.write_bytes(b"the old render")
    real = rk.EnginePart.render_alone
    calls = {}

    def failing(self, n, beside=False):
        calls[self.name] = calls.get(self.name, 0) + 1
        if self.name == "clarinet" and calls[self.name] > 5:
            raise MemoryError("no memory for the clarinet")
        return real(self, n, beside)
    monkeypatch.setattr(rk.EnginePart, "render_alone", failing)
    with pytest.raises(RuntimeError, match="clarinet.*MemoryError: no memory"):
        _render(out, True)
    assert out.read_bytes() == b"the old render"
    assert [p.name for p in tmp_path.iterdir()] == ["out.wav"]        # no temporary left
    _no_children()


def test_a_stopped_render_with_parts_in_processes_leaves_nothing(tmp_path):
    from rtsynth.render import RenderInterrupted
    asked = []

    def stop():
        asked.append(1)
        return 15 if len(asked) > 4 else None
    with pytest.raises(RenderInterrupted):
        _render(tmp_path / "x.wav", True, stop=stop)
    assert list(tmp_path.iterdir()) == []
    _no_children()
