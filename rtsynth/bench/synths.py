"""The synths a bench measures, as processes on a JACK server: rtsynth, FluidSynth, and the
delay client with known behaviour (for testing the bench itself).

A :class:`SynthSpec` says how to start one and how to find its JACK ports; :class:`LiveSynth`
runs it (ended by its PID), wires it to a :class:`~rtsynth.testing.jackrig.JackRig`, and reads
its ``--stats-json`` at exit.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from rtsynth.testing.jackrig import JackRig, find_client_ports, wait_for_ports
from rtsynth.testing.procs import ManagedProcess

SF2_CANDIDATES = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/soundfonts/FluidR3_GM.sf2")


def find_sf2() -> str | None:
    env = os.environ.get("RTSYNTH_SF2")
    for p in ([env] if env else []) + list(SF2_CANDIDATES):
        if p and Path(p).exists():
            return p
    return None


@dataclass
class SynthSpec:
    """How to run one synth live on JACK.

    ``cmd`` may contain ``{stats}`` (a stats-JSON path), ``{block}``, ``{port}`` (a free TCP
    port) and ``{uid}`` (unique per launch, for client names); ``voices_args`` may contain
    ``{voices}``.
    ``client_re``: regex (full match) of the JACK client that owns its MIDI input and audio
    outputs; ``xrun_client``: the client-name prefix the server blames in its log.
    """

    label: str                       # "rtsynth basic", "FluidSynth"
    kind: str                        # "rtsynth" | "fluidsynth" | "delay"
    cmd: list[str]
    client_re: str
    xrun_client: str
    ready: str | None = None         # regex of the ready line, None: ports are the ready signal
    stats: bool = False              # writes --stats-json
    n_audio: int = 2
    voices_args: list[str] = field(default_factory=list)  # e.g. ["--voices", "{voices}"]
    program: int | None = None       # GM program to select on channel 0 (FluidSynth)
    sustain_program: int | None = None  # program for held-note rows (load, capacity)
    env: dict = field(default_factory=dict)
    ready_timeout: float = 120.0

    def command(self, stats_path: str | None, block: int, voices: int | None = None,
                uid: str = "") -> list[str]:
        port = _free_port() if any("{port}" in c for c in self.cmd) else 0
        out = [c.format(stats=stats_path or "", block=block, uid=uid, port=port)
               for c in self.cmd]
        if voices is not None and self.voices_args:
            extra = [a.format(voices=voices) for a in self.voices_args]
            if self.kind == "fluidsynth":  # the SoundFont stays the last argument
                out = out[:-1] + extra + out[-1:]
            else:
                out += extra
        return out


def rtsynth_spec(instrument: str = "basic", extra: list[str] | None = None,
                 python: str | None = None, voices_args: list[str] | None = None,
                 label: str | None = None) -> SynthSpec:
    py = python or sys.executable
    cmd = [py, "-m", "rtsynth.cli", "play", "--driver", "jack", "-i", instrument, "-z", "{block}",
           "--stats-json", "{stats}", *(extra or [])]
    return SynthSpec(label=label or f"rtsynth {instrument}", kind="rtsynth", cmd=cmd,
                     client_re=r"rtsynth", xrun_client="rtsynth", ready=r"^rtsynth: playing",
                     stats=True, voices_args=list(voices_args or []))


def fluidsynth_spec(sf2: str | None = None, gain: float = 0.5, reverb: bool = False,
                    polyphony: int = 256, label: str = "FluidSynth") -> SynthSpec:
    """``fluidsynth -a jack -m jack -i -s -r 48000 -g 0.5 FluidR3_GM.sf2`` with a unique JACK
    client name. Reverb and chorus are off by default so that a note's onset is not hidden by
    the previous note's tail (the same is asked of rtsynth with CC120 between notes)."""
    sf2 = sf2 or find_sf2()
    if not sf2 or shutil.which("fluidsynth") is None:
        raise FileNotFoundError("fluidsynth or FluidR3_GM.sf2 missing "
                                "(apt-get install fluidsynth fluid-soundfont-gm)")
    cid = "fluid{uid}"  # a new JACK client name per launch
    # -s keeps it running without a shell on stdin; its TCP shell on a port of its own (with
    # the default 9800 taken by another FluidSynth it exits at once: "Failed to bind")
    cmd = ["fluidsynth", "-a", "jack", "-m", "jack", "-i", "-s", "-r", "48000", "-g", str(gain),
           "-o", f"audio.jack.id={cid}", "-o", f"midi.jack.id={cid}", "-o", "shell.port={port}"]
    if not reverb:
        cmd += ["-R", "0", "-C", "0"]
    cmd.append(sf2)
    # FluidSynth's own voice limit (stereo samples take 2 voices) must not be what limits it
    return SynthSpec(label=label, kind="fluidsynth", cmd=cmd, client_re=r"fluid{uid}.*",
                     xrun_client=cid, ready=None, stats=False, program=0, sustain_program=48,
                     voices_args=["-o", "synth.polyphony={voices}"])


def _free_port() -> int:
    """A TCP port nothing listens on now (the system's choice), for a FluidSynth shell."""
    import socket
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        return int(sk.getsockname()[1])


def delay_spec(delay: int = 0, name: str | None = None, extra: list[str] | None = None,
               wave: str = "sine", label: str | None = None) -> SynthSpec:
    name = name or "delay{uid}"
    cmd = [sys.executable, "-m", "rtsynth.testing.delayclient", "--name", name, "--delay",
           str(delay), "--wave", wave, "--stats-json", "{stats}", *(extra or [])]
    return SynthSpec(label=label or f"delay client ({delay} frames)", kind="delay", cmd=cmd,
                     client_re=name, xrun_client=name, ready=r"delayclient: playing",
                     stats=True, ready_timeout=30.0)


class LiveSynth:
    """One running synth process wired to a rig. Ends by its PID; ``stats`` after exit."""

    def __init__(self, spec: SynthSpec, server_env: dict, rig: JackRig, block: int,
                 voices: int | None = None, workdir: str | None = None):
        self.spec = spec
        self.rig = rig
        self.block = block
        self.workdir = workdir or tempfile.mkdtemp(prefix="rtsynth-bench-")
        self.stats_path = (str(Path(self.workdir) / f"stats-{uuid.uuid4().hex[:6]}.json")
                           if spec.stats else None)
        if spec.kind == "fluidsynth":
            voices = max(256, 4 * (voices or 0))
        self.uid = uuid.uuid4().hex[:6]
        self.cmd = spec.command(self.stats_path, block, voices, uid=self.uid)
        self.client_re = spec.client_re.format(uid=self.uid)
        self.xrun_client = spec.xrun_client.format(uid=self.uid)
        self.env = dict(server_env, **spec.env)
        self.proc: ManagedProcess | None = None
        self.t_launch = None
        self.t_ready = None
        self.t_ports = None
        self.midi_port = None
        self.audio_ports: list[str] = []
        self.stats: dict | None = None
        self.returncode = None

    def launch(self) -> "LiveSynth":
        self.t_launch = time.monotonic()
        self.proc = ManagedProcess(self.cmd, env=self.env)
        return self

    def wait_ports(self, timeout: float | None = None, poll: float = 0.005) -> None:
        timeout = timeout or self.spec.ready_timeout
        mp = wait_for_ports(self.rig, self.client_re, midi=True, is_input=True,
                            timeout=timeout, poll=poll, proc=self.proc.proc)
        ap = wait_for_ports(self.rig, self.client_re, midi=False, is_input=False,
                            count=self.spec.n_audio, timeout=timeout, poll=poll,
                            proc=self.proc.proc)
        self.t_ports = time.monotonic()
        self.midi_port = mp[0]
        self.audio_ports = ap[:self.spec.n_audio]

    def connect(self) -> None:
        self.rig.disconnect_all()
        self.rig.connect_midi(self.midi_port)
        self.rig.connect_audio(self.audio_ports)

    def wait_ready(self) -> None:
        if self.spec.ready:
            self.t_ready = self.proc.wait_ready(self.spec.ready, self.spec.ready_timeout)
        if self.midi_port is None:
            self.wait_ports()
        if self.t_ready is None:
            self.t_ready = self.t_ports

    def start(self) -> "LiveSynth":
        """Launch, wait until ready and ports exist, connect to the rig."""
        self.launch()
        try:
            self.wait_ready()
            self.connect()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> dict | None:
        if self.proc is None:
            return self.stats
        try:
            self.rig.disconnect_all()
        except Exception:
            pass
        self.returncode = self.proc.stop(signal.SIGTERM, timeout=15.0)
        # the server drops a dead client's ports a moment later; the next launch may reuse
        # the name (rtsynth's is fixed), so wait until they are gone
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            try:
                if not find_client_ports(self.rig, self.client_re, midi=True):
                    break
            except Exception:
                break
            time.sleep(0.02)
        if self.stats_path and Path(self.stats_path).exists():
            try:
                self.stats = json.loads(Path(self.stats_path).read_text())
            except (OSError, ValueError):
                self.stats = None
        return self.stats

    @property
    def output(self) -> str:
        return self.proc.output if self.proc else ""

    def __enter__(self) -> "LiveSynth":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
