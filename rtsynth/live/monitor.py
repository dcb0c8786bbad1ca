"""The engine as the live player sees it: meters, the MIDI log, recording, a MIDI file, swaps.

:class:`LiveFront` stands between :class:`~rtsynth.live.player.Player` and the engine (or a
:class:`~rtsynth.live.resample.ResampledEngine`). The player calls ``push`` and ``render`` as it
would on the engine, from the generator thread (or the JACK callback in sync mode); the front:

- writes each played block's peak and mean square per channel into a preallocated history
  (:class:`Meters`): plain arrays and counters that the screen reads, never a lock;
- copies the played samples into the recorder's ring (copy only) and logs every MIDI message
  with the frame it takes effect at (for the screen, ``-v`` and the ``.mid`` beside a recording);
- feeds a MIDI file's events to the engine just in time, each at its exact frame;
- swaps to another engine (instrument change) between two blocks.

A block is metered and recorded when the *next* block is rendered (or at :meth:`flush`): by then
the player has applied its final fade to it, so the recording holds exactly what was copied to
the device. Live events wait here until the block they fall in: the engine's queue stays in time
order, so a file's events and live ones never delay each other.
"""

from __future__ import annotations

from collections import deque

import numpy as np

CLIP_LEVEL = 0.999       # a sample at or above this is counted as a clip (the limiter's ceiling)


class Meters:
    """Per-block peak and mean square per channel in a ring of ``n`` blocks (generator writes,
    screen reads)."""

    def __init__(self, block: int, n: int = 1024):
        self.hist = np.zeros((n, 2, 2), np.float32)     # [block, (peak, mean square), channel]
        self.count = 0
        self.clips = 0
        self._abs = np.zeros((block, 2), np.float32)

    def update(self, out: np.ndarray) -> None:
        n = len(out)
        a = self._abs[:n]
        row = self.hist[self.count % len(self.hist)]
        np.abs(out, out=a)
        np.max(a, axis=0, out=row[0])
        np.multiply(out, out, out=a)
        np.mean(a, axis=0, out=row[1])
        if row[0, 0] >= CLIP_LEVEL or row[0, 1] >= CLIP_LEVEL:
            self.clips += 1
        self.count += 1

    def since(self, count: int) -> tuple[np.ndarray, np.ndarray, int]:
        """(peak per channel, RMS per channel, blocks) over the blocks after ``count`` (at most
        the ring's length); read by the screen while the generator writes."""
        now = self.count
        k = min(now - count, len(self.hist))
        if k <= 0:
            return np.zeros(2), np.zeros(2), 0
        idx = np.arange(now - k, now) % len(self.hist)
        h = self.hist[idx]
        return h[:, 0].max(axis=0), np.sqrt(h[:, 1].mean(axis=0)), k


def db(x: float, floor: float = -120.0) -> float:
    return max(20.0 * float(np.log10(max(float(x), 1e-12))), floor)


class FileSchedule:
    """A MIDI file's events in frames, looped or once."""

    def __init__(self, events, length_frames: int, loop: bool):
        self.frames = np.array([f for f, _ in events], np.int64)
        self.data = [bytes(d) for _, d in events]
        last = int(self.frames[-1]) + 1 if len(self.frames) else 1
        self.length = max(int(length_frames), last)
        self.loop = bool(loop)
        self.start: int | None = None      # engine frame of the file's time 0
        self.i = 0
        self.rounds = 0
        self.done = not len(self.frames)

    @property
    def end_frame(self) -> int | None:
        """Engine frame of the last event (once, not looped)."""
        if self.start is None or not len(self.frames):
            return None
        return self.start + int(self.frames[-1])

    def take(self, end: int, push) -> None:
        """Push every event before engine frame ``end``."""
        if self.start is None or self.done:
            return
        fr, n = self.frames, len(self.frames)
        while True:
            base = self.start + self.rounds * self.length
            while self.i < n and base + fr[self.i] < end:
                push(base + int(fr[self.i]), self.data[self.i])
                self.i += 1
            if self.i < n:
                return
            if not self.loop:
                self.done = True
                return
            self.i = 0
            self.rounds += 1
            if self.start + self.rounds * self.length >= end:
                return

    def position(self, now: int) -> float:
        """Frames into the file (this round) at engine frame ``now``."""
        if self.start is None:
            return 0.0
        p = now - self.start
        return p % self.length if self.loop and p > 0 else max(p, 0)


class LiveFront:
    """What the player renders through (see the module docstring)."""

    def __init__(self, engine, recorder=None, log_len: int = 256):
        self.engine = engine
        self.sr = engine.sr
        self.block = engine.block
        self.time = 0
        self.meters = Meters(self.block)
        self.recorder = recorder
        self.midi_log: deque = deque(maxlen=log_len)    # (frame, bytes)
        self.midi_count = 0
        self.file: FileSchedule | None = None
        self._pending: deque = deque()                  # live events not yet due
        self._last: np.ndarray | None = None            # the block last handed out
        self._last_t = 0
        self._swap_to = None
        self._swap_state = 0
        self.swaps = 0
        #: device frames a MIDI event waits in a resampler (0 at the instrument's rate)
        self.extra_latency = int(getattr(engine, "extra_frames", 0))

    def __getattr__(self, name):          # inst, n_slots, stats, gain, warmup, ...
        return getattr(self.engine, name)

    @property
    def inner(self):
        """The engine that holds the voices (under a resampler, if any)."""
        return getattr(self.engine, "inner", self.engine)

    # ------------------------------------------------------------ generator side
    def push(self, when: int, message) -> None:
        self._pending.append((int(when), bytes(message)))

    def _push_now(self, when: int, data: bytes) -> None:
        self.engine.push(when, data)
        self.midi_log.append((when, data))
        self.midi_count += 1
        rec = self.recorder
        if rec is not None:
            rec.midi(when, data)

    def _tap(self) -> None:
        out = self._last
        if out is None:
            return
        self._last = None
        self.meters.update(out)
        rec = self.recorder
        if rec is not None:
            rec.write(out, self._last_t)

    def render(self, nframes: int | None = None) -> np.ndarray:
        self._tap()
        n = self.block if nframes is None else int(nframes)
        t0 = self.time
        end = t0 + n
        if self._swap_to is not None:
            self._swap(t0, n)
        q = self._pending
        while q and q[0][0] < end:
            when, data = q.popleft()
            self._push_now(when, data)
        if self.file is not None:
            self.file.take(end, self._push_now)
        out = self.engine.render(n)
        self.time = end
        self._last = out
        self._last_t = t0
        return out

    def flush(self) -> None:
        """Meter and record the last block (after the player has stopped)."""
        self._tap()

    def _swap(self, t0: int, n: int) -> None:
        if self._swap_state == 0:
            # fade the old instrument's voices out within this block, then change
            inner = self.inner
            inner.all_sound_off(0, seconds=0.8 * n / inner.sr)
            self._swap_state = 1
            return
        new = self._swap_to
        self._swap_to = None
        self._swap_state = 0
        if hasattr(self.engine, "swap"):
            self.engine.swap(new)
        else:
            new.time = self.engine.time
            self.engine = new
        self.swaps += 1

    # ------------------------------------------------------------ control side
    def request_swap(self, engine) -> None:
        """Continue on ``engine`` (warmed up, the same rate and block as the current engine
        under any resampler) from the next block but one. Any thread."""
        self._swap_to = engine

    @property
    def swapping(self) -> bool:
        return self._swap_to is not None

    def set_gain(self, g: float) -> None:
        self.inner.gain = float(g)

    def play_file(self, events, length_frames: int, loop: bool, start: int) -> FileSchedule:
        f = FileSchedule(events, length_frames, loop)
        f.start = int(start)
        self.file = f
        return f

    def _voice_engines(self) -> list:
        e = self.inner
        parts = getattr(e, "_engines", None)          # a rack: every engine part's voices
        if callable(parts):
            try:
                return list(parts())
            except Exception:
                return []
        return [e]

    def channels(self) -> list[tuple[int, int]]:
        """(MIDI channel 0-15, sounding voices) of every channel with a voice."""
        c = np.zeros(16, np.int64)
        for e in self._voice_engines():
            try:
                n = e.n_slots
                act = np.asarray(e.active[:n]) != 0
                ch = np.asarray(e.chan[:n])[act]
            except (AttributeError, TypeError):
                continue
            if len(ch):
                c += np.bincount(ch.astype(np.int64) & 15, minlength=16)
        return [(int(k), int(c[k])) for k in np.flatnonzero(c)]

    def instrument_name(self, channel: int) -> str:
        e = self.inner
        f = getattr(e, "channel_instrument", None)
        if callable(f):
            try:
                return str(f(channel))
            except Exception:
                pass
        return str(getattr(getattr(e, "inst", None), "name", "?"))

    @property
    def active_voices(self) -> int:
        """Voices sounding (the engine's count; the player and the screen read it)."""
        e = self.inner
        try:
            n = getattr(e, "active_voices")
            return int(n() if callable(n) else n)
        except Exception:
            return sum(self._count(x) for x in self._voice_engines())

    @staticmethod
    def _count(e) -> int:
        try:
            return int(np.count_nonzero(np.asarray(e.active[:e.n_slots])))
        except Exception:
            return 0

    def recent_midi(self, n: int = 8) -> list[tuple[int, bytes]]:
        for _ in range(3):
            try:
                return list(self.midi_log)[-n:]
            except RuntimeError:       # appended while copying
                continue
        return []


NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def note_name(n: int) -> str:
    return f"{NOTE_NAMES[n % 12]}{n // 12 - 1}"


_CC_NAMES = {1: "mod", 7: "volume", 10: "pan", 11: "expression", 64: "sustain", 74: "bright",
             120: "sound-off", 121: "reset-ctrl", 123: "notes-off"}


def describe(data: bytes) -> str:
    """One MIDI message in words: ``ch1 note-on C4 100``."""
    if not data:
        return "empty"
    st = data[0]
    kind, ch = st & 0xF0, (st & 0x0F) + 1
    d1 = data[1] if len(data) > 1 else 0
    d2 = data[2] if len(data) > 2 else 0
    if kind == 0x90 and d2:
        return f"ch{ch} note-on {note_name(d1)} {d2}"
    if kind in (0x80, 0x90):
        return f"ch{ch} note-off {note_name(d1)}"
    if kind == 0xB0:
        return f"ch{ch} cc{d1}{'(' + _CC_NAMES[d1] + ')' if d1 in _CC_NAMES else ''} {d2}"
    if kind == 0xE0:
        return f"ch{ch} bend {((d2 << 7) | d1) - 8192:+d}"
    if kind == 0xC0:
        return f"ch{ch} program {d1}"
    if kind == 0xD0:
        return f"ch{ch} pressure {d1}"
    if kind == 0xA0:
        return f"ch{ch} poly-pressure {note_name(d1)} {d2}"
    return " ".join(f"{b:02x}" for b in data)
