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


def recorded_peak(res, lo: int, hi: int) -> float | None:
    """Peak of the take's frames ``[lo, hi)`` that the recorder saw; None when it saw fewer
    than half of them."""
    rec = res.recorded[lo:hi]
    if rec.size == 0 or np.count_nonzero(rec) < 0.5 * (hi - lo):
        return None
    return float(np.max(np.abs(res.audio[:, lo:hi][:, rec])))


def wait_for_voices(t: Tmux, n: int, timeout: float) -> dict:
    """The screen's numbers once it shows ``n`` voices, or the last ones after ``timeout`` s
    (a loaded machine redraws late)."""
    deadline = time.monotonic() + timeout
    while True:
        nums = screen_numbers(t.capture())
        if nums["voices"] == n or time.monotonic() > deadline:
            return nums
        time.sleep(0.1)


#: takes of the chord at most: a take in which rtscreen did not get the note-ons or the
#: note-offs (the recording says so) is played again
CHORD_TAKES = 4


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
    off = int(2.0 * SR)
    chord = [(0, bytes([0x90, 60, 110])), (0, bytes([0x90, 64, 110])),
             (0, bytes([0x90, 67, 110])), (off, bytes([0x80, 60, 0])),
             (off, bytes([0x80, 64, 0])), (off, bytes([0x80, 67, 0]))]
    spoiled = []
    for take in range(CHORD_TAKES):
        out = {}
        run = threading.Thread(target=lambda: out.update(res=jack_rig.run(chord, int(2.6 * SR))))
        run.start()
        try:
            loud = t.wait_for(rf"voices\s+3/{PLAY_POLYPHONY}", timeout=10)
            time.sleep(0.4)
            loud = t.capture()
        except TimeoutError:
            loud = None
        finally:
            run.join()
        after = wait_for_voices(t, 0, timeout=5.0)
        # what rtscreen played says whether it got the chord: a cycle that the server skipped
        # for rtscreen but not for the sender loses that cycle's MIDI (any JACK client's lot on
        # a loaded machine), and then the screen is right to show no chord, or one still held
        res = out["res"]
        on = int(res.event_frames[0])
        held = recorded_peak(res, on + int(0.3 * SR), on + int(1.9 * SR)) if on >= 0 else None
        tail = recorded_peak(res, on + off + int(0.3 * SR), on + int(2.6 * SR)) \
            if on >= 0 else None
        got_ons = held is not None and held > 1e-2
        got_offs = got_ons and tail is not None and tail < 0.05 * held
        if got_ons and got_offs:
            break
        spoiled.append(dict(take=take, held=held, tail=tail, screen_chord=loud is not None,
                            voices_after=after["voices"], xruns=res.xruns,
                            unrecorded=int((~res.recorded).sum())))
        jack_rig.run([(0, bytes([0xB0, 123, 0])), (0, bytes([0xB0, 120, 0]))], SR // 2)
        wait_for_voices(t, 0, timeout=5.0)
    else:
        pytest.fail(f"no take in which rtscreen played the chord and released it: {spoiled}")
    # a take in which rtscreen played the chord and released it: the screen must say so
    assert loud is not None, (spoiled, t.capture())
    n = screen_numbers(loud)
    assert loud != quiet
    assert n["voices"] == 3
    assert all(-60 < p < 0 for p in n["peak"]) and all(r < p for r, p in zip(n["rms"], n["peak"]))
    assert re.search(r"\[=+", loud)                             # the bar moved
    assert "channels: 1:basic (3)" in loud
    assert "note-on G4 110" in loud and "note-on C4 110" in loud   # the monitor line
    assert after["voices"] == 0, (after, t.capture())


#: the keys take at most this often; every note must be judged in at least one of them
KEY_TAKES = 5
#: pitch windows: frames, and the step between their starts, over the note's steady part
PITCH_WINDOW = 4096
PITCH_STEP = 1024
#: clean windows a note needs in a take for that take's pitch of it to be judged
PITCH_MIN_WINDOWS = 3


def note_starts(res, min_apart: int) -> list[int]:
    """Frames where the take's envelope rises through 1e-3, at least ``min_apart`` apart. The
    frames the recorder missed (zeros in the buffer, no evidence of silence) hold the last
    recorded value, so that a missed cycle inside a note starts no note."""
    mono = res.audio.mean(axis=0)
    filled = np.abs(mono).astype(np.float64)
    rec = res.recorded
    if not rec.all():
        idx = np.where(rec, np.arange(len(rec)), 0)
        np.maximum.accumulate(idx, out=idx)
        filled = filled[idx]
    env = np.convolve(filled, np.ones(256) / 256, mode="same")
    loud = env > 1e-3
    starts = np.flatnonzero(loud[1:] & ~loud[:-1]) + 1
    kept = []
    for s in starts:                  # a release can dip under the threshold and rise again
        if not kept or s - kept[-1] > min_apart:
            kept.append(int(s))
    return kept


def clean_windows(res, lo: int, hi: int, length: int, step: int) -> list[int]:
    """Starts of windows ``[a, a + length)`` inside ``[lo, hi)`` that the recorder saw whole,
    that hold no run of exact zeros and whose level holds steady (every 128-frame block's peak
    at least a third of the loudest's): a block rtscreen did not render in time (an underrun
    on a loaded machine: silence, or a fade out and in) is a dip, not a change of pitch."""
    from rtsynth.testing.jackrig import find_gaps
    mono = np.abs(res.audio.mean(axis=0))
    out = []
    for a in range(lo, hi - length + 1, step):
        if a + length > len(res.recorded) or not res.recorded[a:a + length].all():
            continue
        if find_gaps(res.audio, a, a + length, min_len=16):
            continue
        peaks = mono[a:a + length - length % 128].reshape(-1, 128).max(axis=1)
        if peaks.min() < peaks.max() / 3:
            continue
        out.append(a)
    return out


def test_keys_play_notes_at_pitch_and_record(terminal, jack_rig):
    import mido
    import soundfile as sf
    t, folder = terminal
    jack_rig.disconnect_all()
    jack_rig.connect_audio(["rtscreen:out_1", "rtscreen:out_2"])
    plan = [(0.3, ["C-r"]), (0.5, ["z"]), (1.7, ["i"]), (2.9, ["]", "z"]),
            (4.1, ["[", "[", "m"]), (5.6, ["C-r"]), (6.0, ["]"])]
    expected = [60, 84, 72, 59]       # z = C4, i = C6, z an octave up, m two octaves down
    # per take: each note's pitch (cents, median of its clean windows) where it had enough
    # clean windows, and whether it was held and then released where the recorder saw that
    takes_seen = []
    pitched = {p: [] for p in expected}
    released = {p: [] for p in expected}
    for attempt in range(KEY_TAKES):
        jack_rig.start([], int(7 * SR))
        t0 = time.monotonic()
        for at, keys in plan:
            time.sleep(max(0.0, t0 + at - time.monotonic()))
            t.keys(*keys)
        res = jack_rig.finish()
        starts = note_starts(res, int(0.9 * SR))
        clean_take = res.complete and res.xruns == 0
        seen = dict(attempt=attempt, starts=starts, xruns=res.xruns,
                    unrecorded=int((~res.recorded).sum()))
        takes_seen.append(seen)
        if len(starts) != len(expected):
            # a clean take must show the four notes; a spoiled one may hide or split them
            assert not clean_take, seen
            continue
        mono = res.audio.mean(axis=0)
        for s, p in zip(starts, expected):
            f = 440 * 2 ** ((p - 69) / 12)
            # the steady part: 50 ms after the onset up to 0.55 s (the note lasts 0.6 s)
            wins = clean_windows(res, s + 2400, s + int(0.55 * SR), PITCH_WINDOW, PITCH_STEP)
            cents = [pitch_cents(mono[a:a + PITCH_WINDOW], SR, f)[1] for a in wins]
            seen[p] = (len(wins), float(np.median(cents)) if cents else None)
            if len(wins) >= PITCH_MIN_WINDOWS:
                pitched[p].append(float(np.median(cents)))
            # a note lasts 0.6 s after its key (terminals send no key-up) and then releases
            at_hold = recorded_peak(res, s + int(0.45 * SR), s + int(0.55 * SR))
            at_end = recorded_peak(res, s + int(0.95 * SR), s + int(1.05 * SR))
            if at_hold is not None and at_end is not None:
                released[p].append((at_hold, at_end))
        if all(pitched[p] and released[p] for p in expected):
            break
    for p in expected:
        # every take that judged it, not the best one: a wrong pitch cannot hide in a retake
        assert pitched[p], (p, "never enough clean windows", takes_seen)
        assert all(abs(c) < 5 for c in pitched[p]), (p, pitched[p], takes_seen)
        assert released[p], (p, "its hold and release never recorded", takes_seen)
        assert all(h > 1e-3 and e < h for h, e in released[p]), (p, released[p])
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
    # (the shell creates the file before stty has written it: wait for its text)
    while time.monotonic() < deadline and not (
            (folder / "stty.txt").exists() and "icanon" in (folder / "stty.txt").read_text()):
        time.sleep(0.1)
    assert (folder / "stty.txt").exists(), t.capture()
    stty = (folder / "stty.txt").read_text()
    assert re.search(r"(?<!-)\bicanon\b", stty) and re.search(r"(?<![-\w])echo\b", stty), stty
    assert "underruns" in t.capture()           # the exit line
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
