"""The ``rtsynth`` command: play, render, devices, train, bench.

Options follow FluidSynth's where they mean the same thing: ``-r`` sample rate, ``-z`` block
size, ``-g`` gain, ``-i`` instrument, ``-j`` connect to the system playback ports.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import signal
import sys
import time
from pathlib import Path

from . import options
from .midi.messages import RTMIDI_APIS

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NO_DEVICE = 3


class UserError(Exception):
    """Printed as one line on stderr, exit code 1."""


def _err(msg: str) -> None:
    print(f"rtsynth: error: {msg}", file=sys.stderr)


def _realtime_setup() -> None:
    # A busy Python thread with the default 5 ms switch interval starves the audio callback.
    sys.setswitchinterval(0.0005)


def _make_engine(args, block: int | None, device_rate: int | None = None,
                 offline: bool = False):
    """The plain engine, or the rack (instruments per channel, LV2 effects: rtsynth.host)."""
    from .host.wiring import host_engine
    return host_engine(args, block, device_rate, offline, _plain_engine)


def _plain_engine(args, block: int | None, device_rate: int | None = None,
                  offline: bool = False):
    """The engine for ``play`` (``block`` frames per callback) or, ``offline``, for ``render``
    (big blocks, every frame of a block in one model call, voices over two threads; the same
    samples)."""
    from .instruments import BasicInstrument, load_instrument

    from .nn import guard as instrument_guard

    inst = getattr(args, "_instrument", None)  # loaded while JACK's client opened (_preload)
    args._instrument = None                    # (once: a resampled engine builds again)
    if inst is None:
        inst = load_instrument(args.instrument)   # neural instruments set torch to one thread
    instrument_guard.report(inst)             # a faulty model: muted, one warning
    rate = args.sample_rate or device_rate
    if isinstance(inst, BasicInstrument) and rate:
        inst = BasicInstrument(rate)          # the DSP instrument runs at any rate
    if args.sample_rate and args.sample_rate != inst.sample_rate:
        raise UserError(f"instrument {inst.name!r} is trained at {inst.sample_rate} Hz; "
                        f"-r {args.sample_rate} is not supported for it")
    kw = dict(sample_rate=inst.sample_rate, n_slots=args.polyphony, gain=args.gain,
              reverb=args.reverb, timbre_cc=args.timbre_cc)
    from .engine.expression import engine_options
    kw.update(engine_options(args))           # --mpe, --map
    if offline:
        from .render import offline_engine
        return offline_engine(inst, block=block, **kw)
    from .engine.parallel import ParallelEngine
    return ParallelEngine(inst, block=block, threads=getattr(args, "threads", None), **kw)


# --------------------------------------------------------------------------- play
#: the JACK library's soname (what ``ldconfig -p`` reports for ``find_library("jack")``)
JACK_SONAME = "libjack.so.0"


def _import_jack():
    """``import jack`` (JACK-Client), quietened, without its library search where it is not
    needed. JACK-Client asks ``ctypes.util.find_library("jack")``, which on Linux imports
    subprocess and tempfile and runs ``/sbin/ldconfig -p`` in a child process (5-10 ms of
    play's start-up here); the dynamic linker finds the library by its soname itself. So the
    import first sees a ``find_library`` that answers the soname; when that cannot be loaded,
    it is imported again with the real search (as before). Raises as ``import jack`` does."""
    if "jack" not in sys.modules and sys.platform.startswith("linux"):
        import types
        real = sys.modules.get("ctypes.util")
        stub = types.ModuleType("ctypes.util")
        stub.find_library = lambda name: JACK_SONAME if name == "jack" else None
        sys.modules["ctypes.util"] = stub
        try:
            import jack  # noqa: F401  (cffi's dlopen of the soname)
        except OSError:
            sys.modules.pop("jack", None)       # the soname is not there: search for it
        finally:
            if real is None:
                del sys.modules["ctypes.util"]
            else:
                sys.modules["ctypes.util"] = real
    from .live import drivers
    return drivers._quiet_jack()


class _JackOpen:
    """Play's JACK client ``name``, still inactive and without ports: it finds the server and
    gives its period and rate, then :class:`rtsynth.live.drivers.JackDriver` takes it over (one
    client at start-up, not a probe and then the real one: ~20 ms). Opened on a thread (the
    library call releases the GIL and waits ~15 ms for the server) while the main thread loads
    the instrument; :meth:`client`: the client, or None when no server accepts clients (as
    :func:`rtsynth.live.drivers.jack_running`). (The import of ``jack`` stays on the main thread:
    a thread importing while numpy imported made the start-up slower, both holding the GIL.)"""

    def __init__(self, name: str):
        self._client = None
        self._thread = None
        try:
            jack = _import_jack()
        except Exception:
            return
        import threading

        def open_():
            try:
                self._client = jack.Client(name, no_start_server=True)
            except Exception:
                self._client = None
        self._thread = threading.Thread(target=open_, name="rtsynth-jack-open", daemon=True)
        self._thread.start()

    def client(self):
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        return self._client


class _JackStart:
    """Play's :class:`rtsynth.live.drivers.JackDriver`, made (its ports) and started (the
    client activated, its connections made) on a thread, silent until ``driver.play()``;
    :meth:`result`: ``(driver, what was connected)``, or what it raised."""

    def __init__(self, player, args, client):
        import threading
        from .live import drivers
        self._out = None
        self._error: BaseException | None = None
        jack_midi = args.midi_api in (None, "jack")

        def start():
            try:
                d = drivers.JackDriver(player, connect_outputs=args.jack_connect,
                                       midi_ports=args.midi_port if jack_midi else None,
                                       hw_midi=not args.no_hw_midi and jack_midi,
                                       reconnect_timeout=args.reconnect_timeout,
                                       client_name=args.client_name, client=client,
                                       playing=False)
                self._out = (d, None)
                self._out = (d, d.start())
            except BaseException as e:  # noqa: BLE001 - raised on the main thread
                self._error = e
        self._thread = threading.Thread(target=start, name="rtsynth-jack-start", daemon=True)
        self._thread.start()

    def result(self):
        self._thread.join()
        if self._error is not None:
            self.close()
            raise self._error
        return self._out

    def close(self) -> None:
        """(After a failure) the driver closed, if it was made."""
        self._thread.join()
        if self._out is not None:
            self._out[0].close()


def _jack_open(name: str):
    """The client of :class:`_JackOpen`, waited for."""
    return _JackOpen(name).client()


def _peek_play(argv: list[str]) -> tuple[str, str]:
    """``play``'s --driver and --client-name as its command line gives them (before the parser
    is built: building it imports numpy and the engine), for opening the JACK client early;
    what the parser makes of them is checked before that client is used."""
    driver, name = "auto", "rtsynth"
    it = iter(argv)
    for a in it:
        if a == "--":
            break
        for opt in ("--driver", "--client-name"):
            if a == opt:
                v = next(it, None)
            elif a.startswith(opt + "="):
                v = a[len(opt) + 1:]
            else:
                continue
            if v is not None:
                if opt == "--driver":
                    driver = v
                else:
                    name = v
    return driver, name


class _EarlyJack:
    """``play``'s JACK client opened from the start of :func:`main` (on its thread, while the
    parser is built and numpy and the engine import: ~15 ms of waiting for the server, 30 and
    more on a loaded machine), for the driver and client name the command line names."""

    def __init__(self, argv: list[str]):
        self.driver, self.name = _peek_play(argv)
        self.opening = _JackOpen(self.name) if self.driver in ("auto", "jack") else None

    def take(self, args) -> "_JackOpen | None":
        """The opening client when the parsed options are the ones it was opened for (else it
        is closed and None)."""
        o, self.opening = self.opening, None
        if o is not None and (args.driver not in ("auto", "jack")
                              or args.client_name != self.name):
            _close_client(o.client())
            o = None
        return o

    def discard(self) -> None:
        o, self.opening = self.opening, None
        if o is not None:
            _close_client(o.client())


def _close_client(client) -> None:
    if client is not None:
        try:
            client.close()
        except Exception:  # noqa: BLE001
            pass


def _preload(args) -> None:
    """What the engine needs whatever the server's period and rate: the engine's modules and,
    for one instrument (no rack: --channel, --gm, --preset, --multi-out), the instrument itself
    (taken by :func:`_plain_engine`). Runs while the JACK client opens; an error here (a bad -i)
    is raised as it would be there."""
    from .engine import parallel  # noqa: F401
    if any(getattr(args, k, None) for k in ("channel", "gm", "preset", "multi_out", "fx",
                                            "sample_rate")):
        return
    from .instruments import load_instrument
    args._instrument = load_instrument(args.instrument)


def cmd_play(args) -> int:
    # no collector passes while the modules import and the engine is built and warmed (what
    # they leave is frozen below); main() disabled it already; enabled again (main) if it fails
    gc.disable()
    from .live import drivers
    from .live.player import Player
    from .live.session import LiveSession, make_engine
    from .nn import guard as instrument_guard

    _realtime_setup()
    t_start = time.perf_counter()
    driver_name = args.driver
    block = args.block
    device_rate = None
    jack_client = None
    if driver_name in ("auto", "jack"):
        # the client play will use both finds the server and reads its period and rate; it
        # opens on a thread (from main's start) while the instrument loads
        early = getattr(args, "_early_jack", None)
        opening = (early.take(args) if early is not None else None) or _JackOpen(
            args.client_name)
        try:
            _preload(args)
        finally:
            jack_client = opening.client()
        if jack_client is not None:
            driver_name = "jack"
            block = block or int(jack_client.blocksize)
            device_rate = int(jack_client.samplerate)
        elif driver_name == "jack":
            raise drivers.NoAudioDevice(drivers.NO_DEVICE_HINT)
        else:
            driver_name = "portaudio"
    if driver_name == "portaudio":
        # fail fast, before loading models, when there is no device at all
        drivers.find_output_device(args.audio_device)
    block = block or 128
    session = LiveSession(args, _make_engine)   # screen, keys, --record, a MIDI file
    engine = session.front(make_engine(args, block, device_rate, _make_engine))
    sync = _play_mode(args, driver_name)
    ahead, ahead_max = _ahead(args.ahead, driver_name)
    player = Player(engine, ahead=ahead, ahead_max=ahead_max, sync=sync,
                    host_margin=0 if driver_name == "jack" else block,
                    lower_after=args.lower_after)
    starting = None
    if driver_name == "jack":
        # the client's ports registered and the client activated (~12 ms of waiting for the
        # server) on a thread while the engine warms up; its callback plays silence, leaving
        # the MIDI unread, until the engine can play (driver.play() below)
        starting = _JackStart(player, args, jack_client)
    try:
        engine.warmup()
    except BaseException:
        if starting is not None:
            starting.close()
        raise
    # The steady state allocates no reference cycles: move everything alive now out of the
    # collector's sight and make collections rare, so a full pass cannot stall a block
    # (measured here: block-time max 3.9-6.8 ms with the default collector, 2.1 ms without).
    # No gc.collect() first (~8 ms at start-up): the ~200 objects it would free stay frozen.
    gc.freeze()
    gc.set_threshold(100_000, 50, 1000)
    gc.enable()
    player.prefill()
    midi_inputs = None
    if driver_name == "jack":
        driver, made = starting.result()
        if args.midi_api not in (None, "jack"):
            midi_inputs = drivers.RtMidiInputs(player, args.midi_api, args.midi_port,
                                               virtual=False)
    else:
        driver = drivers.PortAudioDriver(player, args.audio_device, client_name=args.client_name)
        ports = args.midi_port
        midi_inputs = drivers.RtMidiInputs(player, args.midi_api,
                                           ports if ports else ([] if args.no_hw_midi else None))
    stop = {"flag": False}

    def on_signal(signum, frame):
        stop["flag"] = True

    def on_usr1(signum, frame):
        stop["usr1"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    if hasattr(signal, "SIGUSR2"):
        import faulthandler      # SIGUSR2: every thread's stack on stderr (a run that hangs)
        faulthandler.register(signal.SIGUSR2, all_threads=True)
    if hasattr(signal, "SIGUSR1"):
        signal.signal(signal.SIGUSR1, on_usr1)
    player.start()
    if starting is not None:
        driver.play()
    else:
        made = driver.start()
    sr = engine.sr
    lat = player.latency_start     # as configured (a late first block may have moved it)
    dev_lat = driver.output_latency_frames
    inst = engine.inst
    print(f"rtsynth: playing {inst.name!r} ({inst.description}) at {sr} Hz, block {block}, "
          f"{engine.n_slots} voices", flush=True)
    print(f"rtsynth: {driver.describe()}", flush=True)
    for m in made:
        print(f"rtsynth: connected {m}", flush=True)
    if midi_inputs is not None:
        for n in midi_inputs.names:
            print(f"rtsynth: MIDI input {n}", flush=True)
    if player.sync:
        mode = "sync: rendered in the JACK callback, one block ahead for a while after a late one"
    else:
        n = 1 + player.ahead
        mode = f"buffered: {n} block{'s' if n > 1 else ''} rendered ahead"
        if player.ahead_max > player.ahead:
            mode += f", one more after each underrun up to {1 + player.ahead_max}"
    print(f"rtsynth: latency MIDI->audio {lat} frames ({lat / sr * 1e3:.2f} ms, {mode}) + "
          f"device output {dev_lat} frames ({dev_lat / sr * 1e3:.2f} ms); start-up "
          f"{time.perf_counter() - t_start:.2f} s. Ctrl-C stops.", flush=True)
    if session.describe_rate():
        print(f"rtsynth: {session.describe_rate()}", flush=True)
    session.start(player)
    t_end = time.monotonic() + args.duration if args.duration else None
    status = session.status(_Status(player, sr, block))
    from .live.player import ordinary_thread, realtime_thread
    main_rt = realtime_thread()      # never preempted holding the GIL the callback needs
    try:
        while not stop["flag"] and player.error is None:
            now = time.monotonic()
            if t_end is not None and now >= t_end:
                break
            if stop.pop("usr1", False):
                if args.cycle_log:           # before the line: whoever waits for it finds it
                    _write_cycle_log(player, args.cycle_log)
                status.print_stats(now)
            instrument_guard.report(engine.inst)     # muted while playing: one warning
            status.tick(now)
            drivers.poll(driver, midi_inputs, now)
            if session.tick(now):                     # the MIDI file has ended
                break
            time.sleep(0.02)
    finally:
        if main_rt:
            ordinary_thread()
        player.fade_out()
        player.stop()
        if midi_inputs is not None:
            midi_inputs.close()
        driver.close()
        session.close()
    if player.error is not None:
        raise UserError(f"the generator stopped: {player.error!r}")
    st = {**player.stats(), **getattr(driver, "fault_stats", dict)()}
    print(f"rtsynth: {_summary_line(st)}", flush=True)
    if args.stats_json:
        Path(args.stats_json).write_text(json.dumps(st))
    if args.cycle_log:
        _write_cycle_log(player, args.cycle_log)
    return 0


def _new_file_path(value: str) -> str:
    """An option's file to write: its folder must exist (checked before anything opens)."""
    folder = Path(value).resolve().parent
    if not value or Path(value).is_dir() or not folder.is_dir():
        raise argparse.ArgumentTypeError(f"{value!r}: must be a file in an existing folder")
    return value


def _write_cycle_log(player, path: str) -> None:
    """``player.cycle_log()`` to ``path`` (.npy), whole or not at all (written beside it,
    then renamed)."""
    import numpy as np
    p = Path(path)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.save(f, player.cycle_log())
        os.replace(tmp, p)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        print(f"rtsynth: warning: cannot write the cycle log {path}: {e.strerror or e}",
              file=sys.stderr, flush=True)


def _play_mode(args, driver_name: str) -> bool:
    """True for sync mode (render in the JACK callback: JACK's default), False for the ring
    (render ahead: --buffered or --ahead, and always on PortAudio)."""
    if args.sync and (args.buffered or args.ahead is not None):
        raise UserError("--sync renders in the callback; --buffered/--ahead render ahead: "
                        "choose one")
    if args.sync and driver_name != "jack":
        raise UserError("--sync needs the JACK driver (a JACK server must be running)")
    # JACK's default is sync: a heavy block followed by another that would be late too sends
    # the next ones to the ring for a while, and rendering comes back into the callback after
    # 0.5 s of blocks that fit (doubled when it flaps; see live.player)
    return driver_name == "jack" and not (args.buffered or args.ahead is not None)


#: ``--ahead auto`` (JACK's default): start one block ahead of the device (latency one block) and
#: render one more block ahead after each underrun, up to this many
AUTO_AHEAD_MAX = 2


def _ahead(value: str | None, driver_name: str) -> tuple[int, int]:
    """``--ahead`` -> (blocks rendered ahead at the start, the most after underruns)."""
    if value is None:
        value = "auto" if driver_name == "jack" else "1"
    if value == "auto":
        return 0, AUTO_AHEAD_MAX
    try:
        n = int(value)
    except ValueError:
        n = -1
    if n < 0:
        raise UserError(f"--ahead takes a number of blocks (0 or more) or 'auto', not {value!r}")
    return n, n


def _summary_line(st: dict) -> str:
    """The counters, as the exit line and SIGUSR1 print them (after 'rtsynth: ')."""
    late = f" ({st['late_blocks']} late blocks)" if st.get("late_blocks") else ""
    return (f"underruns {st['underruns']}{late} in {st['callbacks']} callbacks, server xruns "
            f"{st['xruns']}, generator per block median {st['gen_ms_median']:.3f} ms, p99 "
            f"{st['gen_ms_p99']:.3f} ms, max {st['gen_ms_max']:.3f} ms; latency "
            f"{st['latency_frames']} frames")


class _Status:
    """Live reports from the main thread (never the audio callback): a line at most once a
    second when the underrun count has changed, and the full counters on SIGUSR1."""

    def __init__(self, player, sr: int, block: int, interval: float = 1.0):
        self.player = player
        self.interval = interval
        self.t0 = time.monotonic()
        self.last_t = self.t0
        self.last_n = player.underruns
        self.last_latency = player.latency_frames
        self.blocks_per_s = max(1, int(sr / block))
        self.last_faults = (0, 0)
        self.last_fault_t = self.t0

    def report_faults(self, now: float) -> None:
        """Instrument faults while playing, as a render reports them at its end: a model muted
        by its output guard (once), and voices silenced as non-finite or frames scaled down by
        the engine's level guard (a line when the counts changed, at most once a second)."""
        from .nn.guard import report
        eng = self.player.engine
        report(getattr(eng, "inst", None))
        for part in getattr(eng, "part_list", ()):
            report(getattr(getattr(part, "engine", None), "inst", None))
        if now - self.last_fault_t < self.interval:
            return
        st = eng.stats
        faults = (int(st.get("nan_voices", 0)), int(st.get("clamped_frames", 0)))
        if faults != self.last_faults:
            print(f"rtsynth: warning: {faults[0]} voice(s) silenced as non-finite, "
                  f"{faults[1]} control frame(s) above the level limit scaled down",
                  file=sys.stderr, flush=True)
            self.last_faults = faults
        self.last_fault_t = now

    def tick(self, now: float) -> None:
        p = self.player
        self.report_faults(now)
        n = p.underruns
        if n == self.last_n and p.latency_frames < self.last_latency:
            # the latency policy gave a block back (or sync mode rendering returned into the
            # callback) after a stable period: say so once
            self.last_latency = p.latency_frames
            print(f"rtsynth: latency back to {p.latency_frames * 1e3 / p.engine.sr:.2f} ms "
                  f"({'sync' if p.latency_frames == 0 else f'{1 + p.ahead} block(s) ahead'})",
                  file=sys.stderr, flush=True)
        if n == self.last_n or now - self.last_t < self.interval:
            return
        s = p.summary(last_blocks=int(self.blocks_per_s * (now - self.last_t)) + 1)
        lat = ""
        if p.latency_frames != self.last_latency:
            self.last_latency = p.latency_frames
            lat = (f"; latency now {p.latency_frames * 1e3 / p.engine.sr:.2f} ms "
                   f"({1 + p.ahead} blocks ahead)")
        print(f"rtsynth: underruns {n} (+{n - self.last_n} in {now - self.last_t:.1f} s), "
              f"server xruns {s['xruns']}, generator per block p99 {s['gen_ms_p99']:.2f} ms, "
              f"max {s['gen_ms_max']:.2f} ms (period {1e3 / self.blocks_per_s:.2f} ms){lat}",
              file=sys.stderr, flush=True)
        self.last_t, self.last_n = now, n

    def print_stats(self, now: float) -> None:
        s = self.player.summary()
        print(f"rtsynth: at {now - self.t0:.1f} s: {_summary_line(s)}", flush=True)


# ------------------------------------------------------------------------- render
def cmd_render(args) -> int:
    from . import render as R

    # everything that can be refused is refused before the model loads or a file is touched
    out = R.check_output(args.output, None if args.demo else args.midi)
    if args.demo:
        timed = R.demo_timed()
    elif args.midi is None:
        raise UserError("give a MIDI file to render, or --demo")
    else:
        timed = R.read_midi_timed(args.midi)
    R.check_length(R.events_length(timed), args.tail, args.max_duration)
    with R.stop_on_signals() as stop:
        engine = _make_engine(args, args.block, offline=True)   # any block: the same samples
        R.check_fits(out, R.events_length(timed) + args.tail, engine.sr)
        events = R.to_samples(timed, engine.sr)          # at the engine's rate, not 48 kHz
        t0 = time.perf_counter()
        try:
            if args.quiet or not sys.stderr.isatty():
                frames, peak = R.render_to_file(engine, events, out, tail=args.tail, stop=stop)
            else:
                from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
                with Progress(TextColumn("rendering"), BarColumn(),
                              TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(),
                              transient=True) as prog:
                    task = prog.add_task("render", total=1)
                    frames, peak = R.render_to_file(
                        engine, events, out, tail=args.tail, stop=stop,
                        progress=lambda done, total: prog.update(task, completed=done,
                                                                 total=total))
        except R.RenderInterrupted as e:
            name = signal.Signals(e.signum).name
            print(f"rtsynth: interrupted by {name} after {e.frames / engine.sr:.2f} s of "
                  f"audio: the partial render is discarded, {out} "
                  + ("left as it was" if out.exists() else "not created"), file=sys.stderr)
            return 128 + e.signum
    from .host.wiring import finish
    finish(engine)                  # the rack's stems
    R.report_faults(engine)         # a model muted while rendering, voices that went NaN
    realtime_factor = R.realtime_factor
    took = time.perf_counter() - t0
    rtf = realtime_factor(frames, engine.sr, took)
    print(f"rtsynth: wrote {out} ({frames / engine.sr:.2f} s, {engine.inst.name}) in "
          f"{took:.2f} s: {rtf:.1f}x real time; peak {20 * _log10(peak):.1f} dBFS")
    return 0


def _log10(x: float) -> float:
    import math
    return math.log10(max(x, 1e-12))


# ------------------------------------------------------------------------ devices
def cmd_devices(args) -> int:
    from .live import drivers

    print("Audio output devices (use --audio-device NAME or INDEX):")
    try:
        import sounddevice as sd
        apis = sd.query_hostapis()
        devs = sd.query_devices()
        any_out = False
        for ai, api in enumerate(apis):
            outs = [(i, d) for i, d in enumerate(devs)
                    if d["hostapi"] == ai and d["max_output_channels"] > 0]
            if not outs:
                continue
            print(f"  {api['name']}:")
            for i, d in outs:
                star = "*" if i == sd.default.device[1] else " "
                print(f"   {star}{i:3d}  {d['name']}  ({d['max_output_channels']} out, "
                      f"{d['default_samplerate']:.0f} Hz)")
                any_out = True
        if not any_out:
            print("  none (no sound card; start JACK, e.g. `jackd -d dummy -r 48000 -p 128 &`)")
    except Exception as e:  # PortAudio missing or broken
        print(f"  unavailable: {e}")
    jr = drivers.jack_running()
    print(f"JACK server: {'running' if jr else 'not running'}"
          + (f" ({drivers.env_server_name()})" if drivers.env_server_name() else ""))
    print("MIDI input ports (use --midi-api API --midi-port NAME):")
    import rtmidi
    for api in rtmidi.get_compiled_api():
        api_name = rtmidi.get_api_name(api)
        label = next((k for k, v in drivers.RTMIDI_APIS.items()
                      if getattr(rtmidi, v, None) == api), api_name)
        if label == "jack" and not jr:
            print(f"  {label}: server not running")
            continue
        try:
            m = rtmidi.MidiIn(api, name="rtsynth-devices")
            ports = m.get_ports()
            m.delete()
        except Exception as e:
            print(f"  {label}: unavailable ({str(e).splitlines()[0] if str(e) else type(e).__name__})")
            continue
        print(f"  {label}: " + (", ".join(ports) if ports else "no ports"))
    from .instruments import available_instruments, default_instrument, user_models_dir
    print("Instruments (use -i NAME; -i help describes them): "
          + ", ".join(available_instruments()) + f"  [default: {default_instrument()}]")
    print(f"User models folder: {user_models_dir()}")
    from .engine.expression import DEVICES_LINE
    print(DEVICES_LINE)
    return 0


# --------------------------------------------------------------------------- main
#: ``play``'s voice slots: FluidSynth's capacity on two cores at 128 frames in session 9's
#: bench (256; the live engine synthesises over two threads, :mod:`rtsynth.engine.parallel`,
#: and sheds the quietest voices when blocks do not fit); ``render`` keeps 32
PLAY_POLYPHONY = 256


def _add_engine_options(p: argparse.ArgumentParser, polyphony: int = 32) -> None:
    from .instruments import add_option as _instrument_option
    _instrument_option(p)           # -i NAME|PATH|help
    p.add_argument("-r", "--sample-rate", type=options.checker("sample_rate"), default=None,
                   help="sample rate, " + options.help_range("sample_rate")
                   + " (the instrument's; 48000 for the shipped ones)")
    p.add_argument("-z", "--block", type=options.checker("block"), default=None,
                   help="audio block size, " + options.help_range("block")
                   + " (default: JACK's period, else 128; render: 8192)")
    p.add_argument("-g", "--gain", type=options.checker("gain"), default=0.5,
                   help="master gain, " + options.help_range("gain") + " (default 0.5)")
    p.add_argument("--polyphony", type=options.checker("polyphony"), default=polyphony,
                   help="voice slots, " + options.help_range("polyphony")
                   + f" (default {polyphony})")
    p.add_argument("--reverb", type=options.checker("reverb"), default=0.12,
                   help="reverb send, " + options.help_range("reverb") + ", 0 = dry")
    p.add_argument("--timbre-cc", type=options.checker("timbre_cc"), default=None,
                   help="CC that moves a morphing instrument's timbre, 0-127 (default: mod "
                        "wheel, 1)")
    from .host.wiring import add_options
    add_options(p)                  # --channel, --fx, --preset, --gm, --stems, --multi-out
    from .engine.expression import add_options as _expression_options
    _expression_options(p)          # --mpe, --map


def _live_drivers():
    from .live import drivers
    return drivers


#: the subcommands that live in their own module (``add_parser(subparsers)``, ``run(args)``)
SUBCOMMAND_MODULES = ("rtsynth.host.plugins_cli", "rtsynth.train.cli", "rtsynth.bench.cli",
                      "rtsynth.dataset.cli", "rtsynth.eval.cli", "rtsynth.batch")


#: the subcommands defined here
BUILTIN_COMMANDS = ("play", "render", "devices")


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's own formatter, with the terminal's width read as ``shutil`` reads it but
    without importing it: argparse makes a formatter for every option added, and its first
    imports shutil (and bz2 and lzma with it: ~2 ms of play's start-up)."""

    def __init__(self, prog, indent_increment=2, max_help_position=24, width=None):
        if width is None:
            width = _terminal_columns() - 2
        super().__init__(prog, indent_increment, max_help_position, width)


def _terminal_columns() -> int:
    """``shutil.get_terminal_size().columns``: $COLUMNS, else stdout's terminal, else 80."""
    try:
        n = int(os.environ.get("COLUMNS", 0))
    except ValueError:
        n = 0
    if n <= 0:
        try:
            n = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            n = 0
    return n if n > 0 else 80


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; ``command`` (one of :data:`BUILTIN_COMMANDS`): only that subcommand's,
    for a run of it (play's start-up: the other subcommands' modules and options cost
    ~30 ms to import and build)."""
    ap = argparse.ArgumentParser(prog="rtsynth", description=__doc__.splitlines()[0],
                                 formatter_class=_HelpFormatter)
    from . import __version__
    ap.add_argument("--version", action="version", version=f"rtsynth {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    if command not in BUILTIN_COMMANDS:
        command = None

    if command in (None, "play"):
        _play_parser(sub)
    if command in (None, "render"):
        _render_parser(sub)
    if command in (None, "devices"):
        p = sub.add_parser("devices", help="list audio devices, MIDI ports and instruments",
                           formatter_class=_HelpFormatter)
        p.set_defaults(func=cmd_devices)
    if command is not None:
        return ap

    for modname in SUBCOMMAND_MODULES:
        mod = importlib.import_module(modname)      # a broken module fails here, loudly
        p = mod.add_parser(sub)
        if p is not None and p.get_default("func") is None:
            p.set_defaults(func=mod.run)
    return ap


def _play_parser(sub) -> None:
    p = sub.add_parser("play", help="play live from MIDI inputs", formatter_class=_HelpFormatter)
    _add_engine_options(p, polyphony=PLAY_POLYPHONY)
    p.add_argument("--threads", type=options.checker("threads"), default=None,
                   help="synthesis threads, " + options.help_range("threads")
                   + " (default: 2 on a machine of two cores or more; the same samples)")
    p.add_argument("--driver", choices=["auto", "jack", "portaudio"], default="auto",
                   help="audio back end (auto: JACK when a server runs, else PortAudio)")
    p.add_argument("-a", "--audio-device", default=None,
                   help="audio output device: name substring (case-insensitive) or index")
    p.add_argument("-m", "--midi-api", default=None,
                   help="MIDI API for hardware inputs: " + ", ".join(RTMIDI_APIS))
    p.add_argument("--midi-port", action="append", default=None,
                   help="MIDI input port to open (substring; repeatable; default: all)")
    p.add_argument("--no-hw-midi", action="store_true",
                   help="open only the virtual MIDI input port")
    p.add_argument("-j", "--jack-connect", action="store_true",
                   help="connect the outputs to the system playback ports (JACK)")
    p.add_argument("--ahead", type=options.ahead, default=None, metavar="N|auto",
                   help="render N blocks ahead of the device into a ring: latency (1+N) "
                        "blocks (implies --buffered). 'auto' (--buffered's default on JACK): "
                        "start at 0 (one block of latency) and go one block further ahead after "
                        f"each underrun, up to {AUTO_AHEAD_MAX}. PortAudio's default: 1")
    p.add_argument("--sync", action="store_true",
                   help="JACK (the default there): render inside the process callback; no added "
                        "latency (MIDI sounds at its exact frame in the same period). A block "
                        "that misses its period is a dropout (counted as an underrun); heavy blocks "
                        "of rtsynth's own, one after another, send the next ones to the ring, "
                        "one block ahead, until 0.5 s of blocks fit (see --lower-after)")
    p.add_argument("--buffered", action="store_true",
                   help="render ahead in a generator thread into a ring (JACK's default before "
                        "sync; PortAudio always does): latency (1+ahead) blocks, a margin "
                        "against a slow block")
    p.add_argument("--duration", type=options.checker("duration"), default=None,
                   help="stop after SECONDS")
    p.add_argument("--stats-json", default=None, help="write run statistics to this file")
    p.add_argument("--cycle-log", default=None, metavar="FILE.npy", type=_new_file_path,
                   help="write each audio callback's server frame, stream frame, latency, "
                        "what was done to it (faded in, silent) and the MIDI messages it got "
                        "to FILE (NumPy .npy, the last "
                        "65536 callbacks) at exit and on SIGUSR1: where a recording of the "
                        "output lost or moved frames, and why")
    _live_drivers().add_play_options(p)
    from .live.session import add_options as _session_options
    _session_options(p)
    p.set_defaults(func=cmd_play)


def _render_parser(sub) -> None:
    p = sub.add_parser("render", help="render a MIDI file to WAV/FLAC",
                       formatter_class=_HelpFormatter)
    p.add_argument("midi", nargs="?", help="MIDI file (all tracks and channels)")
    p.add_argument("-o", "--output", required=True,
                   help="output file (.wav, .flac, .ogg), written under a temporary name and "
                        "renamed when complete: a failed or interrupted (SIGINT, SIGTERM, "
                        "SIGHUP) render leaves an existing file as it was")
    p.add_argument("--demo", action="store_true", help="render the built-in demo phrase")
    p.add_argument("--tail", type=options.checker("tail"), default=3.0,
                   help="max seconds after the last event, " + options.help_range("tail"))
    options.add_render_options(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_engine_options(p)
    p.set_defaults(func=cmd_render)


def main(argv: list[str] | None = None) -> int:
    # No collector passes while the modules import (numpy's and ours: ~50 passes, 10-20 ms of
    # play's start-up measured here); a command that runs long enables it (play after its
    # warm-up, the others before they start); enabled again at the end, whatever happens
    gc.disable()
    try:
        return _main(argv)
    finally:
        gc.enable()


def _main(argv: list[str] | None) -> int:
    args_in = sys.argv[1:] if argv is None else list(argv)
    early = _EarlyJack(args_in[1:]) if args_in[:1] == ["play"] else None
    try:
        return _run(argv, args_in, early)
    finally:
        if early is not None:
            early.discard()                    # not taken (a usage error, --help, ...)


def _run(argv: list[str] | None, args_in: list[str], early) -> int:
    ap = build_parser(args_in[0] if args_in else None)
    from .live.session import hint_subcommand
    hint = hint_subcommand(sys.argv[1:] if argv is None else list(argv))
    if hint:
        _err(hint)
        return EXIT_USAGE
    args = ap.parse_args(argv)
    if not getattr(args, "func", None):
        ap.print_help()
        return EXIT_USAGE
    from .instruments import InstrumentError
    from .live.drivers import DeviceError, NoAudioDevice
    from .midi.messages import MidiError
    if args.func is not cmd_play:
        gc.enable()
    else:
        args._early_jack = early
    try:
        return int(args.func(args) or 0)
    except NoAudioDevice as e:
        _err(str(e))
        return EXIT_NO_DEVICE
    except (UserError, InstrumentError, DeviceError, MidiError, ValueError, OSError) as e:
        if os.environ.get("RTSYNTH_DEBUG"):
            raise
        _err(str(e))
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
