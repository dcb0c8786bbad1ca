"""The rack: an instrument per MIDI channel, their sum, one master chain.

Each distinct neural or basic instrument is one :class:`~rtsynth.engine.Engine` built with
``master=False`` (its voices step in one batched model call; only its channels' messages reach
it); an LV2 instrument (``lv2:URI``) is an :class:`LV2Part`. :class:`Rack` routes every MIDI
message at the time it is pushed (pushes come in time order, live and from a file):

- a note-on goes to the part of its channel's instrument at that moment (``--channel``,
  ``-i``, else the channel's last GM program change, else the default instrument);
- the other channel messages go to every part that has played on the channel (a note-off
  reaches the part that started the note, also after a program change);
- channel 10 (General MIDI percussion) is never pitched: its notes go to the LV2 instrument
  set for it, or nowhere;
- the engine parts share one voice pool (``budget``, :mod:`rtsynth.host.pool`): a note-on
  past it steals across the instruments, decided from the MIDI alone; the block is cut at a
  steal's sample (:meth:`Rack._render_pieces`), so live and offline steal alike.

:meth:`Rack.render` sums the parts and runs the one master chain (LV2 effects, reverb, DC
blocker, limiter, safety stage) -- the same ``push / render / warmup / reset`` surface as the
engine, so the live player and the file render use it unchanged. ``per_channel=True`` gives
each channel its own part (stems, multi-out): the parts then are the channels, alone.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from collections import deque
from typing import Callable

import numpy as np

from ..dsp.effects import MasterState, safety_clip
from ..midi.messages import parse_message
from . import gm

LV2_PREFIX = "lv2:"


def _noop() -> None:
    """The task beside a cut block's later pieces (:meth:`Rack._render_pieces`)."""


class _Notices:
    """Lines for stderr, each said once, printed by a thread of its own (a push may come from
    the audio callback, which must not do I/O)."""

    def __init__(self):
        self.said: set[str] = set()
        self.q: queue.SimpleQueue = queue.SimpleQueue()
        self._t = None

    def say(self, line: str) -> None:
        if line in self.said:
            return
        self.said.add(line)
        self.q.put_nowait(line)
        if self._t is None:
            self._t = threading.Thread(target=self._loop, name="rtsynth-notices", daemon=True)
            self._t.start()

    def say_now(self, line: str) -> None:
        if line not in self.said:
            self.said.add(line)
            print(f"rtsynth: {line}", file=sys.stderr, flush=True)

    def _loop(self) -> None:
        while True:
            line = self.q.get()
            print(f"rtsynth: {line}", file=sys.stderr, flush=True)


class EnginePart:
    """A neural or basic instrument: one engine (``master=False``) for all its channels."""

    kind = "engine"

    def __init__(self, name: str, engine):
        self.name = name
        self.engine = engine
        self.channels: set[int] = set()

    def push(self, when: int, msg) -> None:
        self.engine.push(when, msg)

    #: blocks skipped as idle (:meth:`_at_rest`): silence without running the engine
    skipped = 0

    def render(self, n: int) -> np.ndarray:
        e = self.engine
        if self._at_rest(e, n):
            # what the engine's block would do: its task, silence, its clock on
            task = getattr(e, "_beside", None)
            if task is not None:
                e._beside = None
                task()
            out = e.out[:n]
            out.fill(0.0)
            e.time += n
            self.skipped += 1
            return out
        return e.render(n)

    def render_alone(self, n: int, beside: bool = False) -> np.ndarray:
        """:meth:`render` on this thread alone (the part's own process,
        :mod:`rtsynth.host.procs`): the idle skip, else the engine's block with both halves of
        its voice split computed here (:meth:`OfflineEngine.render_here`: the same samples;
        ``beside``: split as in a block with a file render's task beside it)."""
        e = self.engine
        if self._at_rest(e, n):
            return self.render(n)
        here = getattr(e, "render_here", None)
        return here(n, beside=beside) if here is not None else e.render(n)

    @staticmethod
    def _at_rest(e, n: int) -> bool:
        """Whether engine ``e``'s next ``n`` frames are provably silence that changes nothing
        but its clock: a plain engine (``Engine``/``OfflineEngine`` render, no chain of its own:
        ``master=False``, so no reverb tail), no event before the block's end, no voice in any
        slot (releases and fades are voices), no per-note control queued, and every channel's
        rows at rest (no row written by the block before, each gain row settled on its target
        for at least ``n`` frames: :func:`~rtsynth.engine.channels.begin_rows` and
        ``smooth_rows`` would write nothing). Such a block runs no model step, synthesises
        nothing and its safety stage sees zeros; tests/test_host.py checks the samples."""
        if e.use_master or type(e).render not in _PLAIN_RENDERS:
            return False
        q = e.events
        if q and q[0][0] < e.time + n:
            return False
        if e.voices.active.any():
            return False
        ch = e.channels
        if ch.n_ops or ch.touched.any() or ch.settled.min() < n:
            return False
        return n <= e.block

    @property
    def active_voices(self) -> int:
        return self.engine.active_voices

    def warmup(self) -> None:
        self.engine.warmup()

    def reset(self) -> None:
        self.engine.reset()

    def all_sound_off(self, off: int = 0, seconds: float = 0.03) -> None:
        self.engine.all_sound_off(off, seconds)

    def close(self) -> None:
        c = getattr(self.engine, "close", None)
        if c is not None:
            c()


def _plain_renders() -> tuple:
    from ..engine.block import Engine
    from ..engine.offline import OfflineEngine
    return (Engine.render, OfflineEngine.render)


_PLAIN_RENDERS = _plain_renders()


class LV2Part:
    """An LV2 instrument on its channels: MIDI in at its frames, stereo out (a mono output on
    both sides), the rack's gain."""

    kind = "lv2"

    def __init__(self, uri: str, sample_rate: int, block: int, gain: float,
                 controls: dict | None = None):
        from ..lv2.host import make_instance
        from ..lv2.world import LV2Error, plugin_info

        info = plugin_info(uri)
        if not info.midi_in:
            raise LV2Error(f"{uri} takes no MIDI: it is not an instrument")
        if not info.audio_out:
            raise LV2Error(f"{uri} has no audio output")
        self.name = f"lv2:{uri}"
        self.uri = uri
        self._new = lambda: make_instance(info, sample_rate, block, controls)
        self.inst = self._new()
        self.gain = float(gain)
        self.block = int(block)
        self.out = np.zeros((block, 2), np.float32)
        self.events: deque = deque()
        self.channels: set[int] = set()
        self.time = 0
        self.held = 0
        self._counters = np.zeros(2, np.int64)

    def push(self, when: int, msg) -> None:
        self.events.append((int(when), msg[0], msg[1], msg[2]))

    def render(self, n: int) -> np.ndarray:
        inst = self.inst
        end = self.time + n
        q = self.events
        while q and q[0][0] < end:
            when, st, d1, d2 = q.popleft()
            off = when - self.time
            if off < 0:
                off = 0
            kind = st & 0xF0
            if kind == 0x90 and d2 > 0:
                self.held += 1
            elif kind == 0x80 or (kind == 0x90 and d2 == 0):
                self.held = max(0, self.held - 1)
            elif kind == 0xB0 and d1 in (120, 123):
                self.held = 0
            size = 2 if kind in (0xC0, 0xD0) else 3
            inst.midi(off, st, d1, d2, size)
        out = self.out[:n]
        for a in inst.audio_in:
            a[:n] = 0.0
        if inst.run(n):
            outs = inst.audio_out
            out[:, 0] = outs[0][:n]
            out[:, 1] = outs[1 if len(outs) > 1 else 0][:n]
        else:
            out[:] = 0.0
        safety_clip(out, self.gain, self._counters)
        self.time = end
        return out

    @property
    def active_voices(self) -> int:
        return self.held

    def warmup(self) -> None:
        """Every path of a block, with a note; then a fresh instance (a plugin's activate need
        not forget everything, and live must equal offline: synthv1's voices start a note's
        parameter ramps -- volume, panning, balance, pressure -- from the values their note
        before reached, so a note after the warm-up's would differ in its first ~43 samples
        from the same note in a render; its activate, deactivate and all-sound-off keep this
        history; tests/test_lv2.py::test_synthv1_voices_keep_history_a_fresh_instance_forgets_it)."""
        t = self.time
        self.push(t, (0x90, 60, 100))
        self.push(t + 5, (0x80, 60, 0))
        for _ in range(3):
            self.render(self.block)
        self.reset()
        self.time = t

    def reset(self) -> None:
        """Silence and forget everything: a fresh instance of the plugin (not on the audio
        path: warm-up and stop)."""
        self.events.clear()
        self.held = 0
        old, self.inst = self.inst, self._new()
        self.inst.restore_state(old.save_state())     # its configuration, not its history
        old.close()

    def all_sound_off(self, off: int = 0, seconds: float = 0.03) -> None:
        for ch in self.channels:
            self.push(self.time + off, (0xB0 | ch, 123, 0))
            self.push(self.time + off, (0xB0 | ch, 120, 0))

    def close(self) -> None:
        self.inst.close()


class MultiOut:
    """The parts' blocks for ``--multi-out``: the rack writes each part's block into a ring
    indexed by the frames it has rendered (the player's write position: both count every
    rendered frame from the first block on); the JACK callback copies the frames the master
    pair just played (``copy``) into each part's pair. Preallocated; no allocation per block
    beyond the port arrays JACK hands out."""

    def __init__(self, rack: "Rack"):
        self.parts = list(rack.part_list)
        names = []
        for p in self.parts:
            ch = getattr(p, "own_channel", None)
            label = f"ch{ch + 1}" if ch is not None else "other"
            names += [f"{label}_L", f"{label}_R"]
        self.port_names = names
        cap = 1
        while cap < 16 * rack.block:
            cap *= 2
        self.cap = cap
        self.ring = np.zeros((len(self.parts), 2, cap), np.float32)
        self.w = 0

    def write(self, outs, n: int) -> None:
        i = self.w & (self.cap - 1)
        k = min(n, self.cap - i)
        ring = self.ring
        for j in range(len(self.parts)):
            o = outs[j]
            ring[j, :, i:i + k] = o[:k].T
            if k < n:
                ring[j, :, :n - k] = o[k:].T
        self.w += n

    def copy(self, r0: int, r1: int, frames: int, ports) -> None:
        """The frames ``r0 .. r0+frames`` of each part into its two ``ports`` (JACK ports),
        silence where the master pair played none (an underrun)."""
        ok = r1 - r0 == frames and r0 + frames <= self.w and self.w - r0 <= self.cap
        i = r0 & (self.cap - 1)
        k = min(frames, self.cap - i)
        for j in range(len(self.parts)):
            for c in range(2):
                dst = ports[2 * j + c].get_array()
                if ok:
                    src = self.ring[j, c]
                    dst[:k] = src[i:i + k]
                    dst[k:frames] = src[:frames - k]
                else:
                    dst[:frames] = 0.0


class _Ways:
    """The offline rack's choice between its two ways of rendering the parts (at once on two
    threads: True; one after another: False): ``TRIAL`` blocks of each, then ``KEEP`` blocks of
    the one that took less wall time per unit of work (frames x (voices + parts)), again and
    again (the load of the machine changes)."""

    TRIAL = 4
    KEEP = 40

    def __init__(self):
        self.k = 0
        self.cost = {True: [0.0, 0.0], False: [0.0, 0.0]}
        self.best = True
        self.blocks = {True: 0, False: 0}

    def way(self) -> bool:
        k = self.k % (2 * self.TRIAL + self.KEEP)
        if k < self.TRIAL:
            return True
        if k < 2 * self.TRIAL:
            return False
        return self.best

    def took(self, way: bool, seconds: float, work: float) -> None:
        k = self.k % (2 * self.TRIAL + self.KEEP)
        self.k += 1
        self.blocks[way] += 1
        if k >= 2 * self.TRIAL:
            return
        c = self.cost[way]
        c[0] += seconds
        c[1] += work
        if k == 2 * self.TRIAL - 1:
            a, b = self.cost[True], self.cost[False]
            self.best = a[0] / max(a[1], 1.0) <= b[0] / max(b[1], 1.0)
            for c in (a, b):
                c[0] = c[1] = 0.0


class _RackInstrument:
    """What ``engine.inst`` tells the CLI about a rack."""

    def __init__(self, rack: "Rack"):
        self.rack = rack

    @property
    def name(self) -> str:
        return "rack"

    @property
    def description(self) -> str:
        return self.rack.describe()


class Rack:
    """Instruments per channel (see the module doc). ``make_engine(name)`` builds the engine
    of an instrument (``master=False``, the rack's gain); ``channel_specs`` ``{channel (0-based):
    spec}`` set channels (``NAME``, a path, ``basic``, ``lv2:URI``); ``force`` plays one
    instrument on every channel but the percussion one (``-i``); ``preload``: instruments to
    build now (a live rack builds every instrument the GM table can select: a program change
    then never loads a model on the audio path)."""

    def __init__(self, make_engine: Callable[[str], object], *, sample_rate: int, block: int,
                 gain: float = 0.5, reverb: float = 0.12, default: str = "basic",
                 channel_specs: dict[int, str] | None = None, force: str | None = None,
                 available: list[str] | None = None, preload=(), per_channel: bool = False,
                 fx=None, master: bool = True, lv2_controls: dict | None = None,
                 notices: _Notices | None = None, lazy: bool = False,
                 budget: int | None = None):
        self.sr = int(sample_rate)
        self.block = int(block)
        self.gain = float(gain)
        self._make_engine = make_engine
        self.default = default
        self.force = force
        self.available = list(available or [])
        self.channel_specs = dict(channel_specs or {})
        self.per_channel = bool(per_channel)
        #: offline: a part is built when a pushed event first needs it (a render pushes every
        #: event before the first block); live parts are all built up front
        self.lazy = bool(lazy)
        #: the one voice pool of the engine parts (:mod:`rtsynth.host.pool`): a note-on
        #: anywhere takes a voice from it; full, it steals across the instruments, decided
        #: from the MIDI alone (the same voices live and offline). None: each engine alone
        self.budget = None if budget is None else int(budget)
        self.pool = None
        if self.budget is not None:
            from .pool import VoicePool
            self.pool = VoicePool(self.budget, self.sr)
        self.lv2_controls = dict(lv2_controls or {})
        self.notices = notices or _Notices()
        self.parts: dict = {}                 # key -> part
        self.part_list: list = []
        self.program: list[str | None] = [None] * 16
        for ch in range(16):
            self.program[ch] = self._initial(ch)
        self._seen: list[list] = [[] for _ in range(16)]   # parts that played on each channel
        self.master = MasterState(self.sr, reverb=reverb)
        self.master.fx = fx
        self.use_master = bool(master)
        self.defer_master = False
        self.out = np.zeros((self.block, 2), np.float32)
        self.time = 0
        self._stats = {"events": 0, "bad_messages": 0, "muted_percussion": 0}
        #: the samples of the pool's steals to come (:meth:`_render_pieces`)
        self._ways = _Ways()
        self._cuts: deque = deque()
        self._cut_at = np.zeros(256, np.int64)
        self._cut_who = np.zeros(256, np.int64)
        self._due_cuts_n = 0
        self._accs: list = []
        self.blocks_cut = 0
        self.inst = _RackInstrument(self)
        self.stems = None                     # :class:`~rtsynth.host.stems.Stems` (render)
        self.multi_out: MultiOut | None = None   # live --multi-out (JACK): :meth:`open_multi_out`
        self._outs: list = []                 # each part's block (stems, multi-out)
        self._task = None                     # the file render's task beside the next block
        self._pool = None                     # the rack's worker (offline, parts at once)
        self.blocks_at_once = 0               # blocks whose parts rendered on two threads
        self._voices_now: list = []
        #: a file render's parts in processes of their own (:meth:`fork_parts`, when
        #: :func:`rtsynth.host.procs.usable`); off unless ``RTSYNTH_RENDER_PROCESSES=1``: on
        #: this 2-core VM under load (346 s 4-part file) it took 1.0-1.5x the wall time and
        #: ~1.15x the CPU of the two threads here (five processes time-slicing two cores)
        self.processes = self.lazy and os.environ.get("RTSYNTH_RENDER_PROCESSES") == "1"
        self._procs = None
        for ch in range(16):
            if self.program[ch] is not None and ch in self.channel_specs:
                self._part(self.program[ch], ch)
        for name in preload:
            # per channel (live multi-out): the channels without a part of their own share
            # one part per instrument, keyed (name, None)
            self._part(name, None)
        if self.program[gm.PERCUSSION_CHANNEL] is None:
            self.percussion_muted = True
        else:
            self.percussion_muted = False

    # -------------------------------------------------------------- setup
    def _initial(self, ch: int) -> str | None:
        if ch in self.channel_specs:
            return self.channel_specs[ch]
        if ch == gm.PERCUSSION_CHANNEL:
            return None
        return self.force or self.default

    def _key(self, name: str, ch: int | None):
        return (name, ch) if self.per_channel else name

    def _part(self, name: str, ch: int | None):
        """The part playing ``name`` (on channel ``ch`` when parts are per channel), built on
        first use."""
        key = self._key(name, ch)
        p = self.parts.get(key)
        if p is None:
            if name.startswith(LV2_PREFIX):
                uri = name[len(LV2_PREFIX):]
                p = LV2Part(uri, self.sr, self.block, self.gain, self.lv2_controls.get(uri))
            else:
                p = EnginePart(name, self._make_engine(name))
            p.own_channel = ch if self.per_channel else None
            if self.pool is not None and p.kind == "engine":
                from .pool import END_MARGIN_S
                hold = int(getattr(p.engine, "max_release", 0) + END_MARGIN_S * self.sr)
                self.pool.hold = max(self.pool.hold, hold)
            self._sync_time(p)
            self.parts[key] = p
            self.part_list.append(p)
            self._accs.append(np.zeros((self.block, 2), np.float32))   # (_render_pieces)
        return p

    def _sync_time(self, p) -> None:
        if p.kind == "engine":
            p.engine.time = self.time
        else:
            p.time = self.time

    def channel_instrument(self, ch: int) -> str:
        """What channel ``ch`` (0-based) plays now (the live screen shows it)."""
        name = self.program[ch]
        return "muted (percussion)" if name is None else name

    @property
    def gain(self) -> float:
        return self._gain

    @gain.setter
    def gain(self, g: float) -> None:
        """The rack's gain is each part's (applied before the sum, as the engine does)."""
        self._gain = float(g)
        for p in getattr(self, "part_list", []):
            if p.kind == "engine":
                p.engine.gain = self._gain
            else:
                p.gain = self._gain

    def program_name(self, ch: int, program: int) -> str:
        name, notice = gm.model_for(program, self.available)
        if notice:
            self._say(notice)
        return name

    def _say(self, line: str) -> None:
        (self.notices.say_now if self.lazy else self.notices.say)(line)

    def _follows_programs(self, ch: int) -> bool:
        return ch not in self.channel_specs and self.force is None \
            and ch != gm.PERCUSSION_CHANNEL

    def open_multi_out(self) -> "MultiOut":
        """Each part's own stereo pair for the JACK driver (``ch1_L``, ``ch1_R``, ...; the
        shared part of the channels without one: ``other_L``, ``other_R``)."""
        self.multi_out = MultiOut(self)
        return self.multi_out

    # -------------------------------------------------------------- input
    def push(self, when: int, message) -> None:
        msg = parse_message(message)
        if msg is None:
            self._stats["bad_messages"] += 1
            return
        st, d1, d2 = msg
        self._stats["events"] += 1
        if st >= 0xF0:
            for p in self.part_list:
                p.push(when, msg)
            return
        ch = st & 0x0F
        kind = st & 0xF0
        if kind == 0xC0:
            if self._follows_programs(ch):
                name = self.program_name(ch, d1)
                key = self._key(name, ch)
                if key in self.parts or self.lazy:
                    self.program[ch] = name
                else:
                    self._say(f"channel {ch + 1}: program {d1 + 1} needs {name}, which "
                                     f"is not loaded: the channel keeps "
                                     f"{self.program[ch]}")
            return
        if kind == 0x90 and d2 > 0:
            name = self.program[ch]
            if name is None:
                self._stats["muted_percussion"] += 1
                if self._stats["muted_percussion"] == 1:
                    self._say("channel 10 (GM percussion) is muted: set an LV2 drum "
                              "instrument with --channel 10=lv2:URI")
                return
            p = self.parts.get(self._key(name, ch))
            if p is None and self.per_channel and not self.lazy:
                p = self.parts.get((name, None))
            if p is None:
                if not self.lazy:
                    return               # not built (live: cannot load on the audio path)
                p = self._part(name, ch)
            seen = self._seen[ch]
            if p not in seen:
                seen.append(p)
                p.channels.add(ch)
            pool = self.pool
            if pool is not None and p.kind == "engine":
                stolen = pool.note_on(when, p, ch, d1)
                if stolen is not None:          # before the note-on: its slot is free
                    q, sch, skey, start = stolen
                    q.engine.steal(when, sch, skey, start)
                    self._cuts.append((when, q, sch, skey, start))
            p.push(when, msg)
            return
        pool = self.pool
        if pool is not None:
            if kind == 0x80:
                pool.note_off(when, ch, d1)
            elif kind == 0xB0:
                pool.control(when, ch, d1, d2)
        for p in self._seen[ch]:
            p.push(when, msg)

    # -------------------------------------------------------------- parts in processes
    def fork_parts(self, frames: int, beside_from: int = 1) -> bool:
        """A file render, once every event is pushed: the parts render their next ``frames``
        (whole blocks) each in a process of its own (:mod:`rtsynth.host.procs`); :meth:`render`
        then sums their blocks. ``beside_from``: the first block that has a :meth:`beside` task
        (a file render's: the second; the voice split of the task's part follows it). False (nothing changed) when :attr:`processes` is off or the
        rack cannot (:func:`~rtsynth.host.procs.usable`). End with :meth:`join_parts`; the
        parts' engines in this process are then behind: the rack renders no more."""
        if not self.processes or self._procs is not None:
            return False
        from . import procs
        if not procs.usable(self):
            return False
        self._procs = procs.PartProcesses(self, frames, beside_from)
        return True

    def join_parts(self) -> None:
        """The end of :meth:`fork_parts`: the processes stopped and reaped."""
        pp, self._procs = self._procs, None
        if pp is not None:
            pp.close()
            self._forked_blocks = pp.read_blocks
            self._spent = True

    _spent = False

    #: blocks the last :meth:`fork_parts` render took from the parts' processes
    _forked_blocks = 0

    @property
    def forked_blocks(self) -> int:
        pp = self._procs
        return pp.read_blocks if pp is not None else self._forked_blocks

    # -------------------------------------------------------------- render
    def render(self, nframes: int | None = None) -> np.ndarray:
        n = self.block if nframes is None else int(nframes)
        if n > self.block:
            raise ValueError(f"block of {n} frames is larger than the rack's {self.block}")
        out = self.out[:n]
        out[:] = 0.0
        st = self.stems
        mo = self.multi_out
        outs = self._outs
        if len(outs) != len(self.part_list):
            outs[:] = [None] * len(self.part_list)
        task, self._task = self._task, None
        cuts = self._cuts
        t0 = self.time
        if self._spent:
            raise RuntimeError("this rack's parts rendered in processes (fork_parts): its "
                               "engines here are behind; build a new rack")
        if self._procs is not None:
            if n != self.block:
                raise ValueError("a rack whose parts render in processes renders whole blocks")
            if task is not None:
                task()              # the block before's master and writing, as they render on
            outs[:] = self._procs.read()
        elif cuts and cuts[0][0] < t0 + n and self._cuts_in(t0, t0 + n):
            self._render_pieces(n, task, outs)
        else:
            self._render_parts(n, task, outs)
        # the sum in the parts' order, whichever thread rendered them
        for o in outs:
            np.add(out, o, out=out)
        if st is not None:
            st.capture(outs, n)
        if mo is not None:
            mo.write(outs, n)
        if self.use_master:
            if not self.defer_master:
                self.master_block(out)
        else:
            safety_clip(out, 1.0, self.master.counters)
        self.time = t0 + n
        return out

    def _render_parts(self, n: int, task, outs) -> None:
        """Each part's next ``n`` frames into ``outs`` (the file render's task beside them).
        Offline, with two or more parts, the rack tries both ways in turn -- the parts at once
        on two threads (:meth:`_render_at_once`) and one after another -- and renders on with
        the one that took less time per voice (:class:`_Ways`): which wins depends on whether
        the machine has a core to spare (on a loaded one the second thread waits for a core);
        both give the same samples, byte for byte."""
        ways = self._ways
        if not self.lazy or len(self.part_list) < 2:
            self._render_way(n, task, outs, True)
            return
        way = ways.way()
        t = time.perf_counter()
        self._render_way(n, task, outs, way)
        ways.took(way, time.perf_counter() - t, n * (self.active_voices + len(self.part_list)))

    def _render_way(self, n: int, task, outs, at_once: bool) -> None:
        if not (at_once and self._render_at_once(n, task, outs)):
            first = self._first_beside()
            if first is not None:
                first.engine.beside(task)
            elif task is not None:
                task()
            for i, p in enumerate(self.part_list):
                outs[i] = p.render(n)

    def _cuts_in(self, t0: int, end: int) -> int:
        self._due_cuts_n = self._due_cuts(t0, end)
        return self._due_cuts_n

    def _due_cuts(self, t0: int, end: int, only=None) -> int:
        """This block's steals whose voice may still sound there (it sounds at the block's
        start, or starts in the block before the steal): their samples into :attr:`_cut_at` and
        the stolen part's index into :attr:`_cut_who`, in order, each (part, sample) once;
        returns how many. A steal of a voice that has ended needs no cut: it does nothing in any
        block. Each cut depends only on its own part's engine (``only``: that part's cuts alone,
        the others dropped: a part rendered in a process of its own, :mod:`~.procs`)."""
        cuts = self._cuts
        at, who = self._cut_at, self._cut_who
        parts = self.part_list
        k = 0
        while cuts and cuts[0][0] < end:
            when, q, ch, key, start = cuts.popleft()
            if when <= t0 or start >= when or (only is not None and q is not only):
                continue
            i = parts.index(q)
            j = k - 1
            while j >= 0 and at[j] == when and who[j] != i:
                j -= 1
            if j >= 0 and at[j] == when:
                continue                    # this part is cut there already
            if start >= t0 or self._sounds(q.engine, ch, key, start):
                if k == len(at):
                    self._cut_at = at = np.concatenate([at, np.zeros_like(at)])
                    self._cut_who = who = np.concatenate([who, np.zeros_like(who)])
                at[k] = when
                who[k] = i
                k += 1
        return k

    @staticmethod
    def _sounds(e, ch: int, key: int, start: int) -> bool:
        """Whether engine ``e`` sounds the voice of channel ``ch``, key ``key`` that started at
        sample ``start`` (now, at its block's start)."""
        vs = e.voices
        ns = e.n_slots
        return bool(np.any((vs.active[:ns] != 0) & (vs.kill_start[:ns] < 0)
                           & (vs.chan[:ns] == ch) & (vs.note[:ns] == key)
                           & (vs.start_off[:ns] - vs.vpos[:ns] == start - e.time)))

    def _render_pieces(self, n: int, task, outs) -> None:
        """A block with the pool's steals in it (:meth:`_due_cuts`): each stolen part renders
        up to each of its steals' samples, then on from it, so a stolen voice is frozen and
        faded from that very sample whatever the block (128 frames live, 8192 offline: the same
        samples), its pieces gathered in its own buffer; the other parts render their whole
        block. The parts one after another; the file render's task beside the first engine part
        (:meth:`_first_beside`) as in any block -- and beside its every piece (a no-op after the
        first): its voice split is then the one of a block with a task, cut or not
        (:attr:`OfflineEngine.BESIDE_SHARE`), so each part's samples depend on its own cuts
        alone, and a part rendered in a process of its own gives the same."""
        t0 = self.time
        end = t0 + n
        at, who = self._cut_at, self._cut_who
        m = self._due_cuts_n
        first = self._first_beside()
        if task is not None and first is None:
            task()
            task = None
        for i, p in enumerate(self.part_list):
            beside = task if p is first else None
            acc = self._accs[i]
            a = t0
            for j in range(m):
                if who[j] != i:
                    continue
                b = int(at[j])
                if beside is not None:
                    p.engine.beside(beside)
                    beside = _noop
                acc[a - t0:b - t0] = p.render(b - a)
                a = b
            if a == t0:
                if beside is not None:
                    p.engine.beside(beside)
                outs[i] = p.render(n)
                continue
            if beside is not None:
                p.engine.beside(beside)
            acc[a - t0:n] = p.render(end - a)
            outs[i] = acc[:n]
        self.blocks_cut += 1

    # -------------------------------------------------------------- parts at once (offline)
    #: a part's cost in a block, in voices: what a part costs beyond its voices (its model
    #: call, planning, the empty half of its split), and the file render's task (master chain,
    #: writing the block before)
    PART_COST = 1.0
    TASK_COST = 1.0
    #: this thread's own share of a block (the idle parts, the sum, the render loop): without
    #: it the worker's CPU time was 13% below this thread's (a 300 s 4-part file)
    MAIN_COST = 0.5

    def _first_beside(self):
        """The engine part a file render's task goes to when the parts render one after another
        (:meth:`beside`): the first that can run one."""
        for p in self.part_list:
            if p.kind == "engine" and getattr(p.engine, "beside", None) is not None:
                return p
        return None

    def _worker(self):
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="rtsynth-rack")
        return self._pool

    @staticmethod
    def _voices(p, end: int) -> int:
        """The voices of an engine part that can render on another thread, at least 0.5 when
        it has none but an event in this block (it starts a note); -1 when it has neither or is
        not such a part (an idle engine renders on this thread: a few microseconds)."""
        if p.kind != "engine" or not hasattr(p.engine, "render_here"):
            return -1
        e = p.engine
        v = e.active_voices
        if v:
            return v
        q = e.events
        return 0.5 if q and q[0][0] < end else -1

    def _render_at_once(self, n: int, task, outs) -> bool:
        """An offline block with two or more engine parts sounding (or starting notes): the
        parts spread over this thread and the rack's worker, each engine rendering its whole
        block on the thread it is given (:meth:`OfflineEngine.render_here`: the same batches
        as its own two-thread split, the task's share of it included, so the same samples),
        the file render's task on the worker beside them. With one sounding part that is not
        the task's (:meth:`_first_beside`), the task on the worker beside the parts rendered
        here (the one splits its voices over its own worker, as a single engine does). Else
        False: the parts one after another, the task beside the first."""
        if not self.lazy or len(self.part_list) < 2:
            return False
        parts = self.part_list
        end = self.time + n
        voices = self._voices_now
        voices[:] = [self._voices(p, end) for p in parts]
        busy = [i for i, v in enumerate(voices) if v >= 0]
        first = self._first_beside()
        if len(busy) < 2:
            if task is None or not busy or first is None or first is parts[busy[0]]:
                return False
            # one part sounds, not the first (the task's part, which has no voice to split):
            # the task on the rack's worker beside the block, the part split as it alone is
            fut = self._worker().submit(task)
            try:
                for i, p in enumerate(parts):
                    outs[i] = p.render(n)
            finally:
                err = fut.exception()
            if err is not None:
                raise err
            return True
        # the largest first, each to the less loaded thread (this one on a tie)
        busy.sort(key=lambda i: -voices[i])
        load = [self.MAIN_COST, self.TASK_COST if task is not None else 0.0]
        theirs, mine = [], []
        for i in busy:
            c = voices[i] + self.PART_COST
            k = 1 if load[1] < load[0] else 0
            (theirs if k else mine).append(i)
            load[k] += c
        if not theirs:
            theirs.append(mine.pop())

        def work():
            if task is not None:
                task()
            for i in theirs:
                p = parts[i]
                outs[i] = p.engine.render_here(n, beside=task is not None and p is first)

        fut = self._worker().submit(work)
        try:
            for i, p in enumerate(parts):
                if i in mine:
                    outs[i] = p.engine.render_here(n, beside=task is not None and p is first)
                elif i not in theirs:
                    outs[i] = p.render(n)       # idle engines, LV2 instruments
        finally:
            err = fut.exception()
        if err is not None:
            raise err
        self.blocks_at_once += 1
        return True

    # -------------------------------------------------------------- the voice budget
    def _engines(self):
        return [p.engine for p in self.part_list if p.kind == "engine"]

    def _sounding(self) -> int:
        n = 0
        for e in self._engines():
            try:
                ns = e.n_slots
                n += int(np.count_nonzero((e.active[:ns] != 0) & (e.kill_start[:ns] < 0)))
            except AttributeError:
                n += e.active_voices
        return n

    def shed_quietest(self, n: int = 1, seconds: float = 0.01) -> int:
        """Fade out the ``n`` quietest sounding voices of all the engine parts together over
        ``seconds`` (released before held, then by level; the player's overload relief: live
        only, the pool counts them on); returns how many. Not real-time (small index arrays)."""
        keys, owners = [], []
        for j, e in enumerate(self._engines()):
            try:
                ns = e.n_slots
                act = (e.active[:ns] != 0) & (e.kill_start[:ns] < 0)
                held = e.key_down[:ns] | e.sustained[:ns]
                key = e.level[:ns].astype(np.float64) + np.where(held, 1e6, 0.0)
            except AttributeError:
                continue
            v = np.flatnonzero(act)
            keys.append(key[v])
            owners.append((e, v))
        if not keys or n <= 0:
            return 0
        allk = np.concatenate(keys)
        which = np.concatenate([np.full(len(k), j) for j, k in enumerate(keys)])
        idx = np.concatenate([np.arange(len(k)) for k in keys])
        pick = np.argsort(allk, kind="stable")[:int(n)]
        done = 0
        for j, (e, v) in enumerate(owners):
            mine = idx[pick[which[pick] == j]]
            if len(mine):
                # the next block starts at the end of this one: fade from its first sample
                e._kill(v[mine].astype(np.int64), 0, seconds)
                done += len(mine)
        return done

    def master_block(self, out: np.ndarray) -> None:
        """The master chain on a block :meth:`render` returned with :attr:`defer_master` set
        (blocks in order); the stems of that block are written here too."""
        if self.stems is not None:
            self.stems.write_next(len(out))
        if self.use_master:
            self.master.process(out, 1.0)

    def beside(self, task) -> None:
        """A file render's per-block task (:meth:`OfflineEngine.beside`), run during the next
        :meth:`render`: on the rack's worker beside the parts when two or more sound, else by
        the first engine part that can run it beside its block, else first."""
        self._task = task

    @property
    def active_voices(self) -> int:
        if self._procs is not None:
            return self._procs.active
        return sum(p.active_voices for p in self.part_list)

    @property
    def n_slots(self) -> int:
        return max((p.engine.n_slots for p in self.part_list if p.kind == "engine"),
                   default=0)

    @property
    def stats(self) -> dict:
        s = dict(self._stats)
        for p in self.part_list:
            if p.kind == "engine":
                for k, v in p.engine.stats.items():
                    if k not in ("events", "bad_messages"):
                        s[k] = s.get(k, 0) + v
        return s

    def warmup(self) -> None:
        t = self.time
        for p in self.part_list:
            p.warmup()
        if self.master.fx is not None:
            buf = np.zeros((self.block, 2), np.float32)
            for _ in range(2):
                self.master.process(buf, 1.0)
        self.reset()
        self.time = t
        for p in self.part_list:
            self._sync_time(p)

    def reset(self) -> None:
        for p in self.part_list:
            p.reset()
        if self.pool is not None:
            self.pool.reset()
        self._cuts.clear()
        self.master.reset()
        self.program = [self._initial(ch) for ch in range(16)]

    def all_sound_off(self, off: int = 0, seconds: float = 0.03) -> None:
        for p in self.part_list:
            p.all_sound_off(off, seconds)
        if self.pool is not None:
            for ch in range(16):
                self.pool.control(self.time + off, ch, 120, 0)

    def close(self) -> None:
        self.join_parts()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        for p in self.part_list:
            p.close()

    def describe(self) -> str:
        chans = []
        for ch in range(16):
            name = self.program[ch]
            if ch == gm.PERCUSSION_CHANNEL and name is None:
                chans.append("ch10 muted")
        names = ", ".join(p.name + (f" (ch{min(p.channels) + 1})" if self.per_channel and
                                    p.channels else "") for p in self.part_list)
        fx = self.master.fx
        s = f"{len(self.part_list)} instruments: {names}"
        if fx is not None and fx.stages:
            s += f"; effects: {fx.describe()}"
        if chans:
            s += "; " + ", ".join(chans)
        return s


__all__ = ["Rack", "EnginePart", "LV2Part", "MultiOut", "LV2_PREFIX"]
