"""Audio and MIDI back ends for live playing.

``jack``: one JACK client named ``rtsynth`` owns the MIDI input port ``midi_in`` and the audio
ports ``out_1``/``out_2``. MIDI arrives in the same process callback as the audio, with its exact
frame, so events are scheduled with zero jitter. Physical JACK MIDI inputs are connected to
``midi_in``; ``-j`` connects the outputs to the system playback ports.

``portaudio``: sounddevice for audio (any device, any host API) and python-rtmidi for MIDI
(hardware inputs and a virtual input port named ``rtsynth:midi_in`` where the API supports
virtual ports), stamped with the host clock.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Sequence

from typing import TYPE_CHECKING

from ..midi.messages import split_messages

if TYPE_CHECKING:
    from .player import Player

CLIENT_NAME = "rtsynth"
MIDI_PORT = "midi_in"
OUT_PORTS = ("out_1", "out_2")


class DeviceError(Exception):
    """A device problem the user can act on (one clear line)."""


class NoAudioDevice(DeviceError):
    """There is no audio output at all."""


NO_DEVICE_HINT = ("no audio output device found (no sound card and no JACK server running). "
                  "Start an audio server, e.g. `jackd -d dummy -r 48000 -p 128 &` for a virtual "
                  "one, or render to a file: `rtsynth render IN.mid -o OUT.wav`")


def _quiet_jack():
    import jack
    jack.set_error_function(lambda msg: None)
    jack.set_info_function(lambda msg: None)
    return jack


def close_jack_clients(clients, timeout: float = 3.0, name: str = "rtsynth-jack-close") -> bool:
    """Deactivate and close JACK clients on a daemon thread, waiting at most ``timeout``: a
    wedged or dead server may never answer, and nothing must hang on it. True when done."""
    def shut():
        for c in clients:
            for step in (c.deactivate, c.close):
                try:
                    step()
                except Exception:
                    pass

    t = threading.Thread(target=shut, name=name, daemon=True)
    t.start()
    t.join(timeout)
    return not t.is_alive()


def jack_running() -> bool:
    """True when a JACK server (the one JACK_DEFAULT_SERVER names, if set) accepts clients."""
    try:
        jack = _quiet_jack()
    except Exception:
        return False
    try:
        c = jack.Client("rtsynth-probe", no_start_server=True)
    except Exception:
        return False
    c.close()
    return True


def _match(names: Sequence[str], wanted: Sequence[str]) -> list[str]:
    out = []
    for w in wanted:
        hits = [n for n in names if w.lower() in n.lower()]
        if not hits:
            raise DeviceError(f"no MIDI port matches {w!r}; available: "
                              + (", ".join(names) or "none"))
        out += [h for h in hits if h not in out]
    return out


#: seconds without an underrun of rtsynth's own before one block of latency is given back
#: (and, in sync mode, before the ring is left again): long enough that a machine which is
#: really too slow does not flap between two latencies more than every few seconds, short
#: enough that a dropout in the first seconds costs little of a performance (--lower-after)
LOWER_AFTER_S = 10.0
#: seconds rtsynth waits for a JACK server that shut down to come back (--reconnect-timeout)
RECONNECT_TIMEOUT_S = 30.0
#: the watchdog warns when the process callback has not run for this long (and at least 50
#: periods) while the client is active
WATCHDOG_S = 0.5


def add_play_options(p) -> None:
    """``rtsynth play`` options of the live drivers and the player's latency policy."""
    from ..options import checker
    p.add_argument("--reconnect-timeout", type=checker("reconnect_timeout"),
                   default=RECONNECT_TIMEOUT_S,
                   metavar="SECONDS",
                   help="JACK: when the server shuts down, wait this long for it to come back "
                        "(client, ports and connections restored), then exit with an error "
                        f"(default {RECONNECT_TIMEOUT_S:g}; 0: exit at once)")
    p.add_argument("--lower-after", type=checker("lower_after"), default=LOWER_AFTER_S,
                   metavar="SECONDS",
                   help="latency raised after underruns of rtsynth's own comes down one block "
                        "after this many seconds without one; --sync returns into the callback "
                        "after 0.5 s of blocks that fit, doubled (up to this) when it falls "
                        f"back again within this of a return (default {LOWER_AFTER_S:g})")


class JackDriver:
    """The native JACK back end (see module docstring).

    Faults: the server's shutdown callback marks the client lost at once; :meth:`poll` (main
    thread) says so on stderr, waits for the server to come back (a new client of the same
    name, its ports, and every connection its ports had) or raises :class:`DeviceError` after
    ``reconnect_timeout`` s. A watchdog in :meth:`poll` notices when the process callback stops
    running. A MIDI source that disconnects from ``midi_in`` releases every held note.
    """

    def __init__(self, player: "Player", connect_outputs: bool = False,
                 midi_ports: Sequence[str] | None = None, hw_midi: bool = True,
                 client_name: str = CLIENT_NAME,
                 reconnect_timeout: float = RECONNECT_TIMEOUT_S, client=None,
                 playing: bool = True):
        # ``client``: an inactive jack.Client named ``client_name`` opened already (play opens
        # it early to read the server's period and rate), taken over by the first _open()
        self._given_client = client
        #: False: the process callback plays silence and leaves the MIDI unread, until
        #: :meth:`play` (play's start-up activates the client while the engine warms up)
        self.playing = bool(playing)
        self.player = player
        self.client_name = client_name
        self.connect_outputs = connect_outputs
        self.midi_ports = midi_ports
        self.hw_midi = hw_midi
        self.reconnect_timeout = float(reconnect_timeout)
        #: audio output port names (short); a rack's --multi-out pairs after the master pair
        self.multi_out = getattr(player.engine, "multi_out", None)
        self.out_names = list(OUT_PORTS) + list(getattr(self.multi_out, "port_names", []))
        #: connections of our ports, (our port's short name, the other port's full name),
        #: kept up to date by the server's port-connect callback, restored after a restart
        self.connections: set[tuple[str, str]] = set()
        self.lost_at: float | None = None      # monotonic time the server shut down
        self.lost_reason = ""
        self.losses = 0
        self.reconnects: list[dict] = []       # {"detect_s", "back_s", "restored", "wanted"}
        self._pending_conns: set[tuple[str, str]] = set()
        self._pending_until = 0.0
        self._wd_cb = 0
        self._wd_t = time.monotonic()
        self._wd_warned = False
        self.watchdog_stalls = 0
        self._open()

    # -- the client ------------------------------------------------------------------------
    def _open(self) -> None:
        jack = _quiet_jack()
        player = self.player
        given, self._given_client = self._given_client, None
        try:
            self.client = given or jack.Client(self.client_name, no_start_server=True)
        except jack.JackOpenError as e:
            raise NoAudioDevice(NO_DEVICE_HINT) from e
        c = self.client
        sr = player.engine.sr
        # read before close(): a closed client reports 0 Hz and 0 frames
        server_rate, server_period = c.samplerate, c.blocksize
        if server_rate != sr:
            c.close()
            raise DeviceError(f"the JACK server runs at {server_rate} Hz but the instrument at "
                              f"{sr} Hz: leave out -r (rtsynth then resamples) or restart "
                              f"jackd with -r {sr}")
        if server_period != player.block:
            c.close()
            raise DeviceError(f"the JACK server's period is {server_period} frames, not the "
                              f"{player.block} of -z {player.block}: play with -z "
                              f"{server_period} (or leave out -z) or restart jackd with -p "
                              f"{player.block}")
        self.midi = c.midi_inports.register(MIDI_PORT)
        self.outs = [c.outports.register(n) for n in self.out_names]
        out_l, out_r = self.outs[:2]
        multi, multi_ports = self.multi_out, self.outs[2:]
        midi = self.midi
        cycle = player.cycle
        at_frame = player.midi_at_frame
        begin = player.begin_cycle
        split = split_messages

        outs = self.outs

        def process(frames):
            if not self.playing:
                for p in outs:
                    p.get_array().fill(0)
                return
            # MIDI first: pull() wakes the generator, which may start the next block at once
            begin(c.last_frame_time, c.frames_since_cycle_start)
            for offset, data in midi.incoming_midi_events():
                # an event may hold several messages; JACK's buffer indexes as bytes, not ints
                for m in split(bytes(data)):
                    at_frame(offset, m)
            r0 = player.r
            cycle(out_l.get_array(), out_r.get_array(), frames)
            if multi is not None:
                # each part's own pair: the frames just played (a cycle that gave a block of
                # latency back skipped one; an underrun played none)
                r1 = player.r
                multi.copy(r1 - frames if r1 != r0 else r0, r1, frames, multi_ports)

        from .sched import realtime_thread
        rt_notify = []

        def xrun(delay):
            if not rt_notify:        # JACK's notification thread also takes the GIL
                rt_notify.append(realtime_thread())
            player.server_xrun()

        def shutdown(status, reason):
            # JACK's thread: only mark it; poll() does the rest
            self.lost_reason = str(reason)
            self.lost_at = time.monotonic()

        mine = {p.name: p.shortname for p in (self.midi, *self.outs)}
        midi_name = self.midi.name

        def port_connect(a, b, connected):
            if self.lost_at is not None:
                return
            for p, other in ((a, b), (b, a)):
                short = mine.get(p.name)
                if short is None:
                    continue
                if connected:
                    self.connections.add((short, other.name))
                else:
                    self.connections.discard((short, other.name))
                    if p.name == midi_name:
                        # a MIDI source went away: what it held must not hang
                        player.release_all()

        c.set_process_callback(process)
        c.set_xrun_callback(xrun)
        c.set_shutdown_callback(shutdown)
        c.set_port_connect_callback(port_connect)

    @property
    def output_latency_frames(self) -> int:
        try:
            return max(self.outs[0].get_latency_range(self._jack.LatencyType.PLAYBACK)[1], 0)
        except Exception:
            return 0

    def start(self) -> list[str]:
        """Activate and make the connections; returns what was connected (for the banner)."""
        import jack
        self._jack = jack
        c = self.client
        c.activate()
        made = []
        if self.connect_outputs:
            playback = [p for p in c.get_ports(is_audio=True, is_input=True, is_physical=True)
                        if not p.name.startswith(CLIENT_NAME + ":")]
            for src, dst in zip(self.outs, playback):
                c.connect(src, dst)
                made.append(f"{src.name} -> {dst.name}")
        if self.hw_midi or self.midi_ports:
            sources = [p.name for p in c.get_ports(is_midi=True, is_output=True)
                       if not p.name.startswith(CLIENT_NAME + ":")]
            if self.midi_ports:
                chosen = _match(sources, self.midi_ports)
            else:
                chosen = [p.name for p in c.get_ports(is_midi=True, is_output=True,
                                                      is_physical=True)]
            for name in chosen:
                try:
                    c.connect(name, self.midi)
                    made.append(f"{name} -> {self.midi.name}")
                except jack.JackError:
                    pass
        self._wd_cb, self._wd_t = self.player.callbacks, time.monotonic()
        return made

    def play(self) -> None:
        """The process callback plays from the player from now on (see ``playing``)."""
        self._wd_cb, self._wd_t = self.player.callbacks, time.monotonic()
        self.playing = True

    def describe(self) -> str:
        return (f"JACK client {self.client.name!r}: MIDI in {self.midi.name}, audio "
                f"{', '.join(p.name for p in self.outs)}")

    def _close_client(self, timeout: float = 3.0) -> None:
        if self._closed:
            return
        self._closed = True
        close_jack_clients([self.client], timeout)

    def close(self) -> None:
        self._close_client()

    # -- faults (main thread) ---------------------------------------------------------------
    @property
    def lost(self) -> bool:
        return self.lost_at is not None

    def poll(self, now: float | None = None) -> None:
        """Watchdog, server loss and reconnection; call a few times a second (main thread).
        Raises :class:`DeviceError` when the server stays away past ``reconnect_timeout``."""
        now = time.monotonic() if now is None else now
        if self.lost_at is not None:
            self._while_lost(now)
            return
        if self._pending_conns and now < self._pending_until and now >= self._next_try:
            self._next_try = now + 0.25
            self._restore(self._pending_conns)
        cb = self.player.callbacks
        if cb != self._wd_cb:
            if self._wd_warned:
                print(f"rtsynth: the JACK process callback runs again after "
                      f"{now - self._wd_t:.1f} s", file=sys.stderr, flush=True)
                self._wd_warned = False
            self._wd_cb, self._wd_t = cb, now
            return
        quiet = now - self._wd_t
        limit = max(WATCHDOG_S, 50 * self.player.block / self.player.engine.sr)
        if quiet > limit and not self._wd_warned:
            self._wd_warned = True
            self.watchdog_stalls += 1
            print(f"rtsynth: warning: the JACK process callback has not run for {quiet:.1f} s "
                  "(the server is stalled or stopped)", file=sys.stderr, flush=True)
        if quiet > max(limit, self.reconnect_timeout):
            raise DeviceError(f"the JACK server has not run rtsynth's process callback for "
                              f"{quiet:.0f} s (--reconnect-timeout {self.reconnect_timeout:g})")

    def _while_lost(self, now: float) -> None:
        import jack
        if self._lost_seen != self.lost_at:
            self._lost_seen = self.lost_at
            self.losses += 1
            self._wanted = set(self.connections)
            self.player.release_all()
            print(f"rtsynth: JACK server shut down ({self.lost_reason or 'no reason given'}); "
                  f"waiting up to {self.reconnect_timeout:g} s for it to come back",
                  file=sys.stderr, flush=True)
            self._close_client(timeout=1.0)
            self._next_try = now
        if now - self.lost_at > self.reconnect_timeout:
            raise DeviceError(f"the JACK server did not come back within "
                              f"{self.reconnect_timeout:g} s (--reconnect-timeout)")
        if now < self._next_try:
            return
        self._next_try = now + 0.1
        try:
            self._open()
        except NoAudioDevice:
            return                      # not back yet
        self._closed = False
        p = self.player
        p._next_clock = None            # a new server: a new frame clock
        p._gap = True
        self.lost_at = None
        self.connections = set()
        self.client.activate()
        wanted = self._wanted
        restored = self._restore(wanted)
        self._pending_conns = {w for w in wanted if w not in restored}
        self._pending_until = now + self.reconnect_timeout
        self._wd_cb, self._wd_t = p.callbacks, time.monotonic()
        back = time.monotonic() - self._lost_seen
        self.reconnects.append({"back_s": back, "restored": len(restored),
                                "wanted": len(wanted)})
        print(f"rtsynth: JACK server back after {back:.2f} s: client {self.client.name!r}, "
              f"ports and {len(restored)} of {len(wanted)} connections restored"
              + (" (the others when their ports appear)" if self._pending_conns else ""),
              file=sys.stderr, flush=True)

    _closed = False
    _lost_seen: float | None = None
    _wanted: set = set()
    _next_try = 0.0

    def _restore(self, wanted) -> set:
        """Connect what can be connected of ``wanted``; returns those connected."""
        import jack
        c = self.client
        ours = {p.shortname: p for p in (self.midi, *self.outs)}
        done = set()
        for short, other in sorted(wanted):
            port = ours.get(short)
            if port is None:
                continue
            try:
                if port.is_input:
                    c.connect(other, port)
                else:
                    c.connect(port, other)
                done.add((short, other))
            except jack.JackError:
                pass
        self._pending_conns -= done
        return done

    def fault_stats(self) -> dict:
        return {"server_losses": self.losses, "reconnects": list(self.reconnects),
                "watchdog_stalls": self.watchdog_stalls}


# ---------------------------------------------------------------------- rtmidi (any API)
from ..midi.messages import RTMIDI_APIS  # noqa: E402  (names for --midi-api)


def rtmidi_api(name: str | None) -> int:
    import rtmidi
    if name is None:
        return rtmidi.API_UNSPECIFIED
    key = RTMIDI_APIS.get(name.lower())
    if key is None or not hasattr(rtmidi, key):
        raise DeviceError(f"unknown MIDI API {name!r}; choose one of: "
                          + ", ".join(k for k, v in RTMIDI_APIS.items() if hasattr(rtmidi, v)))
    api = getattr(rtmidi, key)
    if api not in rtmidi.get_compiled_api():
        raise DeviceError(f"MIDI API {name!r} is not available in this python-rtmidi build")
    return api


class RtMidiInputs:
    """Hardware MIDI inputs and a virtual input port through python-rtmidi."""

    def __init__(self, player: "Player", api: str | None = None,
                 ports: Sequence[str] | None = None, virtual: bool = True,
                 client_name: str = CLIENT_NAME):
        import rtmidi
        self.inputs = []
        self.names: list[str] = []
        api_id = rtmidi_api(api)
        cb = self._callback
        self.player = player
        try:
            probe = rtmidi.MidiIn(api_id, name=client_name)
        except (rtmidi.SystemError, rtmidi.RtMidiError) as e:
            raise DeviceError(f"cannot open MIDI ({api or 'default API'}): {e}") from e
        available = probe.get_ports()
        chosen = _match(available, ports) if ports else list(available)
        self._next_poll = 0.0
        self._opened = set(chosen)     # hardware ports opened (not the virtual one)
        self._probe = rtmidi.MidiIn(api_id, name=client_name + "-watch")
        for name in chosen:
            m = rtmidi.MidiIn(api_id, name=client_name)
            m.ignore_types(sysex=True, timing=True, active_sense=True)
            m.open_port(m.get_ports().index(name), name=f"in-{len(self.inputs)}")
            m.set_callback(cb)
            self.inputs.append(m)
            self.names.append(name)
        if virtual:
            try:
                probe.open_virtual_port(MIDI_PORT)
                probe.ignore_types(sysex=True, timing=True, active_sense=True)
                probe.set_callback(cb)
                self.inputs.append(probe)
                self.names.append(f"{client_name}:{MIDI_PORT} (virtual)")
            except (rtmidi.RtMidiError, NotImplementedError) as e:
                print(f"rtsynth: no virtual MIDI port on this API ({e}); use a loopback driver",
                      file=sys.stderr)

    def _callback(self, event, data=None) -> None:
        for m in split_messages(event[0]):     # a JACK event through rtmidi may hold several
            self.player.midi_now(m)

    def poll(self, now: float | None = None, every: float = 0.5) -> None:
        """Main thread: a hardware port that vanished (unplugged, its client gone) releases
        every held note and is said on stderr; checked every ``every`` s."""
        now = time.monotonic() if now is None else now
        if now < self._next_poll or not self._opened:
            return
        self._next_poll = now + every
        try:
            present = set(self._probe.get_ports())
        except Exception:
            return
        for name in list(self._opened):
            if name not in present:
                self._opened.discard(name)
                self.player.release_all()
                print(f"rtsynth: MIDI input {name!r} went away; its notes released",
                      file=sys.stderr, flush=True)

    def close(self) -> None:
        for m in self.inputs:
            try:
                m.close_port()
            except Exception:
                pass


# ---------------------------------------------------------------------- PortAudio
_PA_JACK_NAME = None


def set_portaudio_jack_name(name: str) -> None:
    """Name PortAudio's JACK client (it would be 'PortAudio'); re-initialises PortAudio."""
    import ctypes

    import sounddevice as sd
    try:
        lib = ctypes.CDLL(sd._libname)
        fn = lib.PaJack_SetClientName
    except (OSError, AttributeError):
        return
    # PortAudio keeps the pointer, not a copy: the buffer must outlive the stream.
    global _PA_JACK_NAME
    _PA_JACK_NAME = ctypes.create_string_buffer(name.encode())
    fn.argtypes = [ctypes.c_char_p]
    sd._terminate()
    fn(_PA_JACK_NAME)
    sd._initialize()


def find_output_device(spec: str | None):
    """An output device index from a name substring (case-insensitive) or an index."""
    import sounddevice as sd
    devices = sd.query_devices()
    outs = [(i, d) for i, d in enumerate(devices) if d["max_output_channels"] > 0]
    if not outs:
        raise NoAudioDevice(NO_DEVICE_HINT)
    if spec is None:
        try:
            idx = sd.default.device[1]
            if idx is None or idx < 0:
                raise ValueError
            sd.query_devices(idx, "output")
            return idx
        except Exception:
            return outs[0][0]
    if spec.strip().isdigit():
        idx = int(spec)
        if any(i == idx for i, _ in outs):
            return idx
        raise DeviceError(f"no audio output device with index {idx}; see `rtsynth devices`")
    hits = [i for i, d in outs if spec.lower() in d["name"].lower()]
    if not hits:
        raise DeviceError(f"no audio output device matches {spec!r}; available: "
                          + ", ".join(d["name"] for _, d in outs))
    return hits[0]


class PortAudioDriver:
    """sounddevice output stream; the callback copies from the player's ring."""

    def __init__(self, player: "Player", device: str | None = None, client_name: str = CLIENT_NAME):
        import sounddevice as sd
        set_portaudio_jack_name(client_name)
        self.player = player
        idx = find_output_device(device)
        self.device_name = sd.query_devices(idx)["name"]
        pull = player.pull

        begin = player.begin_cycle

        def callback(outdata, frames, time_info, status):
            if status.output_underflow:
                player.server_xrun()
            begin()
            pull(outdata[:, 0], outdata[:, 1], frames)

        try:
            self.stream = sd.OutputStream(samplerate=player.engine.sr, blocksize=player.block,
                                          device=idx, channels=2, dtype="float32",
                                          latency="low", callback=callback)
        except sd.PortAudioError as e:
            raise DeviceError(f"cannot open audio device {self.device_name!r}: {e}") from e

    @property
    def output_latency_frames(self) -> int:
        return int(round(self.stream.latency * self.player.engine.sr))

    def start(self) -> list[str]:
        self.stream.start()
        return []

    def describe(self) -> str:
        return f"audio device {self.device_name!r}"

    def close(self) -> None:
        self.stream.stop()
        self.stream.close()


def poll(driver, midi_inputs=None, now: float | None = None) -> None:
    """The main loop's check of the live back ends (faults, vanished MIDI inputs)."""
    now = time.monotonic() if now is None else now
    p = getattr(driver, "poll", None)
    if p is not None:
        p(now)
    if midi_inputs is not None:
        midi_inputs.poll(now)


def env_server_name() -> str | None:
    return os.environ.get("JACK_DEFAULT_SERVER")
