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
from typing import Sequence

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


class JackDriver:
    """The native JACK back end (see module docstring)."""

    def __init__(self, player: Player, connect_outputs: bool = False,
                 midi_ports: Sequence[str] | None = None, hw_midi: bool = True,
                 client_name: str = CLIENT_NAME):
        jack = _quiet_jack()
        self.player = player
        try:
            self.client = jack.Client(client_name, no_start_server=True)
        except jack.JackOpenError as e:
            raise NoAudioDevice(NO_DEVICE_HINT) from e
        c = self.client
        sr = player.engine.sr
        if c.samplerate != sr:
            c.close()
            raise DeviceError(f"the JACK server runs at {c.samplerate} Hz but the instrument at "
                              f"{sr} Hz: restart jackd with -r {sr}")
        if c.blocksize != player.block:
            c.close()
            raise DeviceError(f"the JACK server's period is {c.blocksize} frames; play with "
                              f"-z {c.blocksize} or restart jackd with -p {player.block}")
        self.midi = c.midi_inports.register(MIDI_PORT)
        self.outs = [c.outports.register(n) for n in OUT_PORTS]
        self.connect_outputs = connect_outputs
        self.midi_ports = midi_ports
        self.hw_midi = hw_midi
        out_l, out_r = self.outs
        midi = self.midi
        pull = player.pull
        at_frame = player.midi_at_frame

        begin = player.begin_cycle
        render_now = player.render_now

        def process(frames):
            # MIDI first: pull() wakes the generator, which may start the next block at once
            begin(c.last_frame_time)
            for offset, data in midi.incoming_midi_events():
                at_frame(offset, data)
            pull(out_l.get_array(), out_r.get_array(), frames)

        def process_sync(frames):
            begin(None, c.frames_since_cycle_start)
            for offset, data in midi.incoming_midi_events():
                at_frame(offset, data)
            render_now(out_l.get_array(), out_r.get_array(), frames)

        def xrun(delay):
            player.server_xrun()

        c.set_process_callback(process_sync if player.sync else process)
        c.set_xrun_callback(xrun)

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
        return made

    def describe(self) -> str:
        return (f"JACK client {self.client.name!r}: MIDI in {self.midi.name}, audio "
                f"{', '.join(p.name for p in self.outs)}")

    def close(self) -> None:
        try:
            self.client.deactivate()
        finally:
            self.client.close()


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

    def __init__(self, player: Player, api: str | None = None,
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
        self.player.midi_now(event[0])

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

    def __init__(self, player: Player, device: str | None = None, client_name: str = CLIENT_NAME):
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


def env_server_name() -> str | None:
    return os.environ.get("JACK_DEFAULT_SERVER")
