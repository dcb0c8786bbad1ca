"""Fault suite: signals during a real ``rtsynth render`` (a subprocess). SIGINT, SIGTERM and
SIGHUP stop it within a block: the partial render is discarded, the old output is left as it
was (or no output is created), it says so on stderr and exits 128 + the signal. Even SIGKILL
(which nothing can catch) leaves the old output whole: the render writes a temporary file."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from rtsynth.testing.hostile import smf, track

OLD = b"RIFF an old render that must survive"


def _long_midi(path, seconds=900):
    """A chord held for ``seconds`` (120 bpm, 96 ticks a beat), renewed every 4 s."""
    ev = []
    for _ in range(seconds // 4):
        ev += [(0, b"\x90\x3c\x50"), (0, b"\x90\x43\x50"), (768, b"\x80\x3c\x00"),
               (0, b"\x80\x43\x00")]
    path.write_bytes(smf([track(ev)]))


def _start(tmp_path, out):
    mid = tmp_path / "long.mid"
    _long_midi(mid)
    return subprocess.Popen([sys.executable, "-c", "import sys; from rtsynth.cli import main; "
                             "sys.exit(main(sys.argv[1:]))", "render", str(mid), "-o",
                             str(out), "-i", "basic", "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_rendering(p, folder, timeout=60.0):
    """Until the temporary output exists and holds audio (the render loop is running)."""
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        parts = [q for q in folder.iterdir() if q.name.endswith(".part")]
        if parts and parts[0].stat().st_size > 100_000:
            return parts[0]
        assert p.poll() is None, p.communicate()
        time.sleep(0.01)
    p.kill()
    raise AssertionError("the render did not start")


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM", "SIGHUP"])
@pytest.mark.parametrize("old", [True, False])
def test_a_signal_keeps_the_old_file_and_says_so(tmp_path, sig, old):
    out = tmp_path / "o.wav"
    if old:
        out.write_bytes(OLD)
    p = _start(tmp_path, out)
    _wait_rendering(p, tmp_path)
    signum = getattr(signal, sig)
    p.send_signal(signum)
    try:
        _, err = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        raise
    assert p.returncode == 128 + signum, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and f"interrupted by {sig}" in lines[0], err
    assert ("left as it was" if old else "not created") in lines[0], err
    if old:
        assert out.read_bytes() == OLD
    else:
        assert not out.exists()
    assert [q.name for q in tmp_path.iterdir() if q.name.endswith(".part")] == []


def test_even_sigkill_leaves_the_old_file_whole(tmp_path):
    out = tmp_path / "o.wav"
    out.write_bytes(OLD)
    p = _start(tmp_path, out)
    part = _wait_rendering(p, tmp_path)
    p.kill()
    p.communicate(timeout=30)
    assert out.read_bytes() == OLD
    part.unlink()                      # what SIGKILL leaves: the hidden temporary file
