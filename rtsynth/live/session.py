"""What ``rtsynth play`` runs around the player: the screen, the keys, recording, a MIDI file.

``cli.cmd_play`` builds the engine with :func:`make_engine` (which puts a resampler under it when
the device's rate is not the instrument's), wraps it in a :class:`~rtsynth.live.monitor.LiveFront`
(:meth:`LiveSession.front`), and replaces its wait loop by :meth:`LiveSession.wait`; everything
here runs in threads of its own or the main thread, never in the audio path.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from . import record as record_mod
from .monitor import LiveFront, describe

#: a MIDI file starts this long after the stream (time to connect a recorder, see the screen)
FILE_LEAD_S = 0.5


def add_options(p: argparse.ArgumentParser) -> None:
    """The ``play`` options of this module (screen, keys, recording, files, rates)."""
    from .resample import DEFAULT_QUALITY, QUALITIES
    p.add_argument("midi_file", nargs="?", default=None,
                   help="a MIDI file to play live through the audio device (with --loop)")
    p.add_argument("--loop", action="store_true", help="play the MIDI file again and again")
    p.add_argument("--record", default=None, metavar="FILE.wav|.flac",
                   help="record what is played (the samples sent to the device) and FILE.mid "
                        "beside it (the MIDI that arrived, at the frames it took effect); "
                        "Ctrl-R starts/stops recording too")
    p.add_argument("--no-ui", action="store_true",
                   help="no live screen: plain lines (the default when stdout is no terminal)")
    p.add_argument("--no-keys", action="store_true",
                   help="do not play notes from the computer keyboard (stdin; see below)")
    from .keys import KEY_HELP
    p.epilog = ((p.epilog + "\n\n") if p.epilog else "") + "Computer " + KEY_HELP
    p.add_argument("-v", "--verbose", action="store_true", help="print incoming MIDI events")
    p.add_argument("--client-name", default="rtsynth",
                   help="JACK client name (default rtsynth; ports NAME:midi_in, NAME:out_1/2)")
    p.add_argument("--resample-quality", choices=QUALITIES, default=DEFAULT_QUALITY,
                   help="soxr quality when the device's rate is not the instrument's (QQ: "
                        "cubic, least latency; HQ: ~19 ms more at 44.1 kHz)")


def make_engine(args, block: int, device_rate: int | None, build):
    """``build(args, block, device_rate)`` -> engine; resampled when the instrument cannot run
    at the device's rate (a neural instrument at 48 kHz on a 44.1 or 96 kHz server)."""
    engine = build(args, block, device_rate)
    if not device_rate or engine.sr == device_rate or getattr(args, "sample_rate", None):
        return engine
    from .resample import ResampledEngine, inner_block
    ib = inner_block(block, device_rate, engine.sr)
    engine = build(args, ib, device_rate)
    return ResampledEngine(engine, device_rate, block, getattr(args, "resample_quality", "QQ"))


def hint_subcommand(argv: list[str]) -> str | None:
    """``rtsynth -i violin`` (options without a command): the command they belong to."""
    if not argv or not argv[0].startswith("-") or argv[0] in ("-h", "--help", "--version"):
        return None
    play_opts = {"-i", "--instrument", "-g", "--gain", "-z", "--block", "-r", "--sample-rate",
                 "--polyphony", "--reverb", "-a", "--audio-device", "-m", "--midi-api",
                 "--midi-port", "-j", "--jack-connect", "--record", "-v", "--verbose",
                 "--driver", "--no-ui", "--client-name", "--loop"}
    if argv[0].split("=")[0] in play_opts:
        import shlex
        return ("options need a command first: try `rtsynth play "
                + " ".join(shlex.quote(a) for a in argv) + "` (or `rtsynth render IN.mid -o "
                "OUT.wav " + " ".join(shlex.quote(a) for a in argv) + "`)")
    return None


class LiveSession:
    """Owns the front, recorder, keyboard, screen and MIDI file of one ``play`` run."""

    def __init__(self, args, build=None):
        self.args = args
        self.build = build
        self.front_: LiveFront | None = None
        self.recorder = None
        self.keys = None
        self.screen = None
        self.player = None
        self.file_events = None
        self.messages: list[str] = []
        self._verbose_seen = 0
        self._instruments: list[str] = []
        self._loading = None
        self._t0 = time.monotonic()
        self._file_end_t = None
        if args.record:
            record_mod.check_path(args.record)
        if args.midi_file:
            from ..render import read_midi_events
            self._file_path = Path(args.midi_file)
            self.file_events = args.midi_file       # read at the device's rate in front()

    @property
    def ui(self) -> bool:
        return not self.args.no_ui and sys.stdout.isatty()

    def front(self, engine) -> LiveFront:
        sr, block = engine.sr, engine.block
        self.recorder = record_mod.Recorder(sr, block)
        f = LiveFront(engine, recorder=self.recorder)
        if self.file_events is not None:
            from ..render import read_midi_events
            self.file_events = read_midi_events(self.file_events, sr)
            self._file_len = _file_length(self._file_path, sr, self.file_events)
        self.front_ = f
        return f

    def describe_rate(self) -> str | None:
        e = self.front_.engine
        if hasattr(e, "extra_frames"):
            return (f"resampling {e.in_rate} -> {e.sr} Hz (soxr {e.quality}) in the generator: "
                    f"+{e.extra_frames} frames ({e.added_latency_ms:.2f} ms) of latency")
        return None

    # ------------------------------------------------------------------ start
    def start(self, player) -> None:
        """After the stream runs: recording, the file, the keys, the screen."""
        self.player = player
        f = self.front_
        if self.args.record:
            p = self.recorder.start(self.args.record, f.time)
            self._say(f"rtsynth: recording to {p} and {record_mod.midi_path(p)}")
        if self.file_events is not None:
            start = f.time + player.latency_frames + int(FILE_LEAD_S * f.sr)
            f.play_file(self.file_events, self._file_len, self.args.loop, start)
            self._say(f"rtsynth: playing {self._file_path.name} "
                      f"({self._file_len / f.sr:.2f} s{', looped' if self.args.loop else ''})")
        if not self.args.no_keys and _stdin_tty():
            from .keys import KEY_HELP, KeyboardPlayer
            self.keys = KeyboardPlayer(player.midi_now, actions={
                "gain": self._gain, "instrument": self._instrument, "record": self._record_key,
            })
            self.keys.start()
            if not self.ui:
                self._say("rtsynth: " + KEY_HELP)
        if self.ui:
            from .screen import Screen
            e = f.engine
            title = f"{f.sr} Hz  block {f.block}" + (
                f"  (soxr {e.quality} from {e.in_rate}: +{e.added_latency_ms:.2f} ms)"
                if hasattr(e, "extra_frames") else "")
            self.screen = Screen(player, f, title, keys=self.keys, session=self).start()

    def _say(self, line: str) -> None:
        if self.screen is not None:
            self.screen.print(line)
        else:
            print(line, flush=True)
        self.messages.append(line)

    # ------------------------------------------------------------------ keys' actions
    def _gain(self, factor: float) -> None:
        from .keys import GAIN_MAX
        f = self.front_
        f.set_gain(min(max(f.inner.gain * factor, 0.0), GAIN_MAX))

    def _record_key(self) -> None:
        rec = self.recorder
        if rec.active:
            p = rec.stop()
            self._say(f"rtsynth: recorded {p} ({rec.seconds:.1f} s)")
            return
        if rec.files:
            path = record_mod.next_take(rec.files[-1])
        elif self.args.record:
            path = Path(self.args.record)
        else:
            path = record_mod.default_take()
        p = rec.start(path, self.front_.time)
        self._say(f"rtsynth: recording to {p}")

    def _instrument(self, step: int) -> None:
        """Load the next installed instrument in a thread, warm it up there, and swap it in
        between two blocks (the old voices fade out over one block)."""
        if self.build is None or self._loading is not None and self._loading.is_alive():
            return
        import threading
        from ..instruments import available_instruments
        names = self._instruments or available_instruments()
        self._instruments = names
        cur = self.front_.inner.inst.name
        i = names.index(cur) if cur in names else -1
        name = names[(i + step) % len(names)]

        def load():
            try:
                a = argparse.Namespace(**vars(self.args))
                a.instrument = name
                inner = self.front_.inner
                eng = self.build(a, inner.block, inner.sr)
                if eng.sr != inner.sr:
                    raise ValueError(f"{name} runs at {eng.sr} Hz, not {inner.sr}")
                eng.gain = inner.gain
                eng.warmup()
                self.front_.request_swap(eng)
                self._say(f"rtsynth: instrument {name}")
            except Exception as e:
                self._say(f"rtsynth: cannot change to {name}: {e}")

        self._say(f"rtsynth: loading {name}...")
        self._loading = threading.Thread(target=load, name="rtsynth-load", daemon=True)
        self._loading.start()

    # ------------------------------------------------------------------ screen
    def status_lines(self) -> list[str]:
        out = []
        f = self.front_
        fs = f.file
        if fs is not None:
            pos = fs.position(f.time)
            out.append(f"file: {self._file_path.name}  {pos / f.sr:6.2f} / "
                       f"{fs.length / f.sr:.2f} s" + (f"  loop {fs.rounds + 1}" if fs.loop else "")
                       + ("  (ended)" if fs.done and not fs.loop else ""))
        rec = self.recorder
        if rec is not None and rec.active:
            out.append(f"REC {rec.path}  {rec.taken / rec.sr:6.1f} s"
                       + (f"  dropped {rec.dropped}" if rec.dropped else ""))
        if self._loading is not None and self._loading.is_alive():
            out.append("loading the next instrument...")
        return out

    # ------------------------------------------------------------------ main loop
    def status(self, status):
        """The plain-lines reporter of ``cmd_play``, silenced while the screen shows it all."""
        return _Quiet(status) if self.screen is not None else status

    def tick(self, now: float) -> bool:
        """Main thread, every ~20 ms while playing; True when the run should end (the MIDI
        file has finished)."""
        self._print_midi()
        rec = self.recorder
        if rec is not None and rec.error is not None:
            self._say(f"rtsynth: recording stopped: {rec.error}")
            rec.error = None
        return self._file_finished(now)

    def _file_finished(self, now: float) -> bool:
        fs = self.front_.file
        if fs is None or fs.loop or not fs.done:
            return False
        f = self.front_
        if f.time < fs.end_frame + self.player.latency_frames:
            return False
        if self._file_end_t is None:
            self._file_end_t = now
        # let the release tails ring, up to 3 s
        return f.active_voices == 0 or now - self._file_end_t > 3.0

    def _print_midi(self) -> None:
        if not self.args.verbose:
            return
        f = self.front_
        n = f.midi_count
        new = n - self._verbose_seen
        if new <= 0:
            return
        evs = f.recent_midi(min(new, f.midi_log.maxlen))
        self._verbose_seen = n
        for when, data in evs:
            self._say(f"rtsynth: midi {when / f.sr:9.3f} s  {describe(data)}  "
                      f"[{' '.join(f'{b:02x}' for b in data)}]")

    def close(self) -> None:
        """After the player has stopped: the last block, the files, the terminal."""
        if self.keys is not None:
            self.keys.stop()
        f = self.front_
        if f is not None:
            f.flush()       # (-v: the player's own all-sound-off at exit is not printed)
            close = getattr(f.engine, "close", None)
            if callable(close) and hasattr(f.engine, "extra_frames"):
                close()     # the resampler's stream
        if self.screen is not None:
            self.screen.stop()
            print(f"rtsynth: {self.screen.cost()}", flush=True)
            self.screen = None
        rec = self.recorder
        if rec is not None and rec.active:
            path = rec.stop()
            print(f"rtsynth: recorded {path} ({rec.seconds:.2f} s) and "
                  f"{record_mod.midi_path(path)}", flush=True)


class _Quiet:
    """A status reporter that prints nothing (the screen shows the counters)."""

    def __init__(self, status):
        self._status = status

    def tick(self, now: float) -> None:
        pass

    def print_stats(self, now: float) -> None:
        pass


def _stdin_tty() -> bool:
    """stdin is a terminal and this process is in its foreground (a background job that read
    it, or changed its mode, would be stopped by SIGTTIN/SIGTTOU)."""
    try:
        return os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        return False


def _file_length(path: Path, sr: int, events) -> int:
    """The file's length in frames (its end-of-track), at least its last event."""
    last = int(events[-1][0]) + 1 if events else 1
    try:
        import mido
        return max(int(round(mido.MidiFile(path).length * sr)), last)
    except Exception:
        return last
