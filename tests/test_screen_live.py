"""The live screen and the computer keyboard of `rtsynth play`, in a real terminal (tmux) under a
real JACK dummy server: what the screen shows (capture-pane), and what the keys play (a JACK
recording of rtsynth's ports, pitch measured)."""

import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from rtsynth.testing.jackrig import pitch_cents, wait_for_ports

SR = 48000

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None,
                                reason="tmux not installed (setup.sh installs it)")


class Tmux:
    """A private tmux server (its own socket) running one command in a 200x40 pane."""

    def __init__(self, command: str, cwd: str):
        self.sock = f"rtsynth-test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._tmux("new-session", "-d", "-s", "main", "-x", "200", "-y", "40", "-c", cwd,
                   command)
        self._tmux("set-option", "-t", "main", "remain-on-exit", "on")

    def _tmux(self, *args, check=True) -> str:
        r = subprocess.run(["tmux", "-L", self.sock, *args], capture_output=True, text=True,
                           timeout=20)
        if check and r.returncode:
            raise RuntimeError(f"tmux {args[0]}: {r.stderr}")
        return r.stdout

    def capture(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "main")

    def keys(self, *keys) -> None:
        self._tmux("send-keys", "-t", "main", *keys)

    def pane_pid(self) -> int:
        return int(self._tmux("display-message", "-p", "-t", "main", "#{pane_pid}").strip())

    def wait_for(self, pattern: str, timeout: float = 120.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.capture()
            if re.search(pattern, text):
                return text
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {pattern!r} on the screen:\n{text}")
            time.sleep(0.1)

    def close(self) -> None:
        self._tmux("kill-server", check=False)


@pytest.fixture(scope="module")
def terminal(jack_server, tmp_path_factory):
    folder = tmp_path_factory.mktemp("screen")
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in
                   (("JACK_DEFAULT_SERVER", jack_server.name), ("JACK_NO_START_SERVER", "1"),
                    ("PYTHONPATH", str(Path(__file__).resolve().parents[1]))))
    play = (f"env {env} {shlex.quote(sys.executable)} -m rtsynth.cli play --driver jack "
            f"-i basic --reverb 0 --client-name rtscreen")
    # after rtsynth: the terminal's settings, to show they were restored
    t = Tmux(f"trap : INT; {play}; stty -a > stty.txt; sleep 60", cwd=str(folder))
    try:
        t.wait_for(r"out L \[", timeout=120)
        yield t, folder
    finally:
        t.close()


def screen_numbers(text: str) -> dict:
    peak = [float(x) for x in re.findall(r"peak\s+(-?[\d.]+)\s+rms", text)]
    rms = [float(x) for x in re.findall(r"rms\s+(-?[\d.]+) dBFS", text)]
    v = re.search(r"voices\s+(\d+)/(\d+)", text)
    return {"peak": peak, "rms": rms, "voices": int(v.group(1)), "slots": int(v.group(2))}


def rtsynth_pid(t: Tmux) -> int:
    shell = t.pane_pid()
    out = subprocess.run(["pgrep", "-P", str(shell)], capture_output=True, text=True).stdout
    return int(out.split()[0])


def test_screen_shows_meters_and_changes_while_notes_play(terminal, jack_rig):
    t, _ = terminal
    wait_for_ports(jack_rig.rx, r"^rtscreen$", midi=True, is_input=True)
    jack_rig.disconnect_all()
    jack_rig.connect_midi("rtscreen:midi_in")
    jack_rig.connect_audio(["rtscreen:out_1", "rtscreen:out_2"])
    time.sleep(0.5)
    quiet = t.capture()
    q = screen_numbers(quiet)
    from rtsynth.cli import PLAY_POLYPHONY
    assert q["voices"] == 0 and q["slots"] == PLAY_POLYPHONY     # play's default polyphony
    assert all(p <= -100 for p in q["peak"]), quiet            # silence: the floor
    assert "xruns" in quiet and "latency" in quiet and "cpu" in quiet
    chord = [(0, bytes([0x90, 60, 110])), (0, bytes([0x90, 64, 110])),
             (0, bytes([0x90, 67, 110])), (int(2.0 * SR), bytes([0x80, 60, 0])),
             (int(2.0 * SR), bytes([0x80, 64, 0])), (int(2.0 * SR), bytes([0x80, 67, 0]))]
    run = threading.Thread(target=jack_rig.run, args=(chord, int(2.5 * SR)))
    run.start()
    try:
        loud = t.wait_for(rf"voices\s+3/{PLAY_POLYPHONY}", timeout=10)
        time.sleep(0.4)
        loud = t.capture()
    finally:
        run.join()
    n = screen_numbers(loud)
    assert loud != quiet
    assert n["voices"] == 3
    assert all(-60 < p < 0 for p in n["peak"]) and all(r < p for r, p in zip(n["rms"], n["peak"]))
    assert re.search(r"\[=+", loud)                             # the bar moved
    assert "channels: 1:basic (3)" in loud
    assert "note-on G4 110" in loud and "note-on C4 110" in loud   # the monitor line
    time.sleep(1.0)
    after = screen_numbers(t.capture())
    assert after["voices"] == 0


def test_keys_play_notes_at_pitch_and_record(terminal, jack_rig):
    import mido
    import soundfile as sf
    t, folder = terminal
    jack_rig.disconnect_all()
    jack_rig.connect_audio(["rtscreen:out_1", "rtscreen:out_2"])
    plan = [(0.3, ["C-r"]), (0.5, ["z"]), (1.7, ["i"]), (2.9, ["]", "z"]),
            (4.1, ["[", "[", "m"]), (5.6, ["C-r"]), (6.0, ["]"])]
    for attempt in range(3):       # a loaded machine can drop cycles: then play it again
        jack_rig.start([], int(7 * SR))
        t0 = time.monotonic()
        for at, keys in plan:
            time.sleep(max(0.0, t0 + at - time.monotonic()))
            t.keys(*keys)
        res = jack_rig.finish()
        if res.complete and res.xruns == 0:
            break
    expected = [60, 84, 72, 59]       # z = C4, i = C6, z an octave up, m two octaves down
    mono = res.audio.mean(axis=0)
    env = np.convolve(np.abs(mono), np.ones(256) / 256, mode="same")
    loud = env > 1e-3
    starts = np.flatnonzero(loud[1:] & ~loud[:-1]) + 1
    kept = []
    for s in starts:                  # a release can dip under the threshold and rise again
        if not kept or s - kept[-1] > int(0.9 * SR):
            kept.append(int(s))
    starts = kept
    assert len(starts) == len(expected), starts
    for s, p in zip(starts, expected):
        f = 440 * 2 ** ((p - 69) / 12)
        # the median of three windows: a dropout (an underrun on this busy machine) in one of
        # them cannot move it
        cents = np.median([pitch_cents(mono[a:a + 6000], SR, f)[1]
                           for a in range(s + 2400, s + 2400 + 18000, 6000)])
        assert abs(cents) < 5, (p, cents)
    # a note lasts 0.6 s after its key (terminals send no key-up) and then releases
    for s in starts:
        assert env[s + int(0.5 * SR)] > 1e-3 and env[s + int(1.0 * SR)] < env[s + int(0.5 * SR)]
    text = t.capture()
    assert "keys: octave 4 (z = 60)" in text
    # Ctrl-R ... Ctrl-R: a take with those notes (one per attempt)
    takes = sorted(folder.glob("rtsynth-*.wav"), key=lambda p: p.stat().st_mtime)
    assert len(takes) == attempt + 1, list(folder.iterdir())
    x, sr = sf.read(takes[-1], dtype="float32")
    assert sr == SR and len(x) > 4 * SR and np.max(np.abs(x)) > 1e-2
    notes = [m.note for m in mido.MidiFile(takes[-1].with_suffix(".mid"))
             if m.type == "note_on" and m.velocity]
    assert notes == expected


def test_ctrl_c_stops_and_restores_the_terminal(terminal):
    t, folder = terminal
    pid = rtsynth_pid(t)
    t.keys("C-c")
    deadline = time.monotonic() + 20
    while not (folder / "stty.txt").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (folder / "stty.txt").exists(), t.capture()
    stty = (folder / "stty.txt").read_text()
    assert re.search(r"(?<!-)\bicanon\b", stty) and re.search(r"(?<![-\w])echo\b", stty), stty
    assert "underruns" in t.capture()           # the exit line
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
