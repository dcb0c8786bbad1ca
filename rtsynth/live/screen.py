"""The live screen of ``rtsynth play`` (stdout a terminal; ``--no-ui`` turns it off).

A rich ``Live`` display redrawn by its own thread at :data:`RATE_HZ`. Everything it shows is
read from plain counters and arrays that the real-time side writes anyway (the player's
underrun/xrun counters and block times, :class:`~rtsynth.live.monitor.Meters`, the MIDI log): it
takes no lock and the real-time side never waits for it. What it shows, top to bottom:

- the instrument, rate, block and driver;
- a meter per output channel: peak and RMS in dBFS over the last redraw interval, with a peak
  hold and ``CLIP`` when a block reached full scale in the last 2 s;
- voices sounding against the polyphony, generator time against the period (the CPU load of
  the render thread: median and max per block over the last interval), latency now (MIDI to
  audio, plus any resampler), underruns and server xruns;
- the instrument of each channel that has a voice, with its voice count;
- the last MIDI events (a monitor line), and what the computer keys are set to;
- the MIDI file being played (position, loop), the recording (file, seconds).
"""

from __future__ import annotations

import threading
import time

import numpy as np

from .monitor import db, describe

RATE_HZ = 10
METER_WIDTH = 40
METER_FLOOR_DB = -60.0
CLIP_HOLD_S = 2.0
PEAK_HOLD_S = 1.5


def meter_bar(peak_db: float, rms_db: float, hold_db: float, width: int = METER_WIDTH) -> str:
    """``|======----    |`` : ``=`` up to RMS, ``-`` up to peak, ``|`` at the held peak."""
    def pos(d):
        return int(round(np.clip((d - METER_FLOOR_DB) / -METER_FLOOR_DB, 0.0, 1.0) * width))
    r, p, h = pos(rms_db), pos(peak_db), pos(hold_db)
    cells = ["=" if i < r else "-" if i < p else " " for i in range(width)]
    if 0 < h <= width:
        cells[h - 1] = "|"
    return "[" + "".join(cells) + "]"


class Screen:
    """Draws the player's state; :meth:`start` / :meth:`stop`, or a ``with`` block."""

    def __init__(self, player, front, title: str, keys=None, session=None,
                 console=None, rate_hz: float = RATE_HZ):
        from rich.console import Console
        self.player = player
        self.front = front
        self.title = title
        self.keys = keys
        self.session = session
        self.console = console or Console()
        self.interval = 1.0 / rate_hz
        self._live = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._meter_count = front.meters.count
        self._blocks = player.blocks
        self._clips = front.meters.clips
        self._clip_t = -1e9
        self._hold = np.full(2, -120.0)
        self._hold_t = np.zeros(2)
        self.frames_drawn = 0
        self.cpu_s = 0.0
        self._t_start = time.monotonic()

    # ------------------------------------------------------------------ drawing
    def render_text(self, now: float | None = None):
        from rich.text import Text
        now = time.monotonic() if now is None else now
        p, f = self.player, self.front
        sr, block = f.sr, f.block
        peak, rms, nb = f.meters.since(self._meter_count)
        self._meter_count = f.meters.count
        if f.meters.clips != self._clips:
            self._clips = f.meters.clips
            self._clip_t = now
        t = Text(no_wrap=True, overflow="crop")      # no line wrapping: half the cost of a frame
        t.append(f"rtsynth  {f.instrument_name(0)}  {self.title}\n", style="bold")
        for ch, name in enumerate(("L", "R")):
            pk, rm = db(peak[ch]), db(rms[ch])
            if pk >= self._hold[ch] or now - self._hold_t[ch] > PEAK_HOLD_S:
                self._hold[ch], self._hold_t[ch] = pk, now
            t.append(f"out {name} ")
            t.append(meter_bar(pk, rm, self._hold[ch]),
                     style="red" if pk > -1 else "yellow" if pk > -12 else "green")
            t.append(f" peak {pk:6.1f}  rms {rm:6.1f} dBFS")
            if now - self._clip_t < CLIP_HOLD_S:
                t.append("  CLIP", style="bold red")
            t.append("\n")
        b = p.blocks
        k = min(b - self._blocks, len(p.gen_ms), max(1, int(sr / block)))
        self._blocks = b
        period_ms = block / sr * 1e3
        if k > 0:
            g = p.gen_ms[(np.arange(b - k, b)) % len(p.gen_ms)]
            med, mx = float(np.median(g)), float(np.max(g))
        else:
            med = mx = 0.0
        lat = p.latency_frames + f.extra_latency
        t.append(f"voices {f.active_voices:3d}/{f.n_slots}   ")
        t.append(f"cpu {100 * med / period_ms:5.1f}% (gen {med:.2f} ms, max {mx:.2f} ms "
                 f"of a {period_ms:.2f} ms period)\n")
        t.append(f"latency {lat * 1e3 / sr:.2f} ms ({lat} frames)   ")
        t.append(f"underruns {p.underruns}", style="bold red" if p.underruns else "")
        t.append(f"   xruns {p.xruns}\n")
        chans = f.channels()
        if chans:
            t.append("channels: " + "  ".join(
                f"{c + 1}:{f.instrument_name(c)} ({n})" for c, n in chans) + "\n")
        else:
            t.append(f"channels: none sounding (instrument {f.instrument_name(0)})\n")
        ev = f.recent_midi(6)
        t.append("midi: " + ("  |  ".join(describe(d) for _, d in reversed(ev))
                             if ev else "(nothing yet)") + "\n")
        s = self.session
        if s is not None:
            for line in s.status_lines():
                t.append(line + "\n")
        kb = self.keys
        if kb is not None:
            t.append(f"keys: octave {4 + kb.octave} (z = {60 + 12 * kb.octave})  velocity "
                     f"{kb.velocity}  sustain {'on' if kb.sustain else 'off'}  gain "
                     f"{getattr(f.inner, 'gain', 0.0):.2f}  held {' '.join(map(str, kb.held[:8])) or '-'}\n",
                     style="cyan")
            t.append("z..m C4-B4  q..i C5-C6  [ ] octave  - = velocity  , . gain  space sustain\n"
                     "Esc panic  Tab instrument  Ctrl-R record  Ctrl-C quit", style="dim")
        self.frames_drawn += 1
        return t

    # ------------------------------------------------------------------ thread
    def _run(self) -> None:
        last = None
        c0 = time.thread_time()
        while not self._stop.wait(self.interval):
            self.cpu_s = time.thread_time() - c0     # this thread's CPU: the screen's cost
            try:
                t = self.render_text()
                if t.plain != last:          # an unchanged screen is not sent again
                    last = t.plain
                    self._live.update(t, refresh=True)
            except Exception as e:          # never take the player down with the screen
                self.error = e

    def cost(self) -> str:
        """The screen thread's CPU so far, in words."""
        wall = max(time.monotonic() - self._t_start, 1e-9)
        n = max(self.frames_drawn, 1)
        return (f"screen: {self.frames_drawn} redraws in {wall:.0f} s, {self.cpu_s:.2f} s of CPU "
                f"({self.cpu_s / n * 1e3:.2f} ms each, {100 * self.cpu_s / wall:.2f}% of a core)")

    def print(self, *a, **kw) -> None:
        """A line above the live display (``-v``, messages)."""
        self.console.print(*a, **kw)

    def start(self) -> "Screen":
        from rich.live import Live
        self._live = Live(self.render_text(), console=self.console, auto_refresh=False,
                          transient=False, redirect_stdout=False, redirect_stderr=False)
        self._live.start()
        self._thread = threading.Thread(target=self._run, name="rtsynth-screen", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        if self._live is not None:
            try:
                self._live.update(self.render_text(), refresh=True)
            finally:
                self._live.stop()

    def __enter__(self) -> "Screen":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
