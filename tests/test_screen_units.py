"""The live screen's text from the player's counters, without a terminal or an audio server
(the real terminal under JACK: test_screen_live.py)."""

import argparse
import io

import numpy as np

from rtsynth.live.monitor import LiveFront
from rtsynth.live.screen import Screen, meter_bar


class Counters:
    """The player's counters the screen reads (a real Player needs a running stream)."""

    def __init__(self):
        self.blocks = 0
        self.gen_ms = np.zeros(4096, np.float32)
        self.underruns = 2
        self.xruns = 1
        self.latency_frames = 128


def basic_front():
    from rtsynth.engine import Engine
    from rtsynth.instruments import BasicInstrument
    e = Engine(BasicInstrument(48000), block=128, reverb=0.0)
    e.warmup()
    return LiveFront(e)


def test_meter_bar():
    assert meter_bar(-120, -120, -120) == "[" + " " * 40 + "]"
    bar = meter_bar(-6, -18, -3)
    assert bar.count("=") == 28 and bar.count("-") == 8 and bar[38] == "|"


def test_screen_shows_levels_voices_load_channels_midi_and_the_file(tmp_path):
    from rich.console import Console
    from rtsynth.live.session import LiveSession
    from test_player_live import write_song
    song = tmp_path / "song.mid"
    write_song(song, [(0.0, 0.5, 60), (0.1, 0.5, 67)])
    args = argparse.Namespace(record=None, midi_file=str(song), loop=True, no_ui=True,
                              no_keys=True, verbose=False)
    sess = LiveSession(args)
    f = sess.front(basic_front().engine)
    p = Counters()
    sess.player = p
    f.play_file(sess.file_events, sess._file_len, True, start=0)
    con = Console(file=io.StringIO(), width=100, force_terminal=False)
    s = Screen(p, f, "48000 Hz  block 128", session=sess, console=con)
    quiet = s.render_text().plain
    assert "voices   0/32" in quiet and "peak -120.0" in quiet
    for _ in range(60):                       # 160 ms: both notes sounding
        f.render()
        p.gen_ms[p.blocks] = 0.5
        p.blocks += 1
    text = s.render_text().plain
    assert "voices   2/32" in text
    peaks = [float(x.split()[0]) for x in text.split("peak")[1:]]
    assert all(-60 < v < 0 for v in peaks), text
    assert "cpu  18.8% (gen 0.50 ms" in text                 # 0.5 ms of a 2.67 ms period
    assert "latency 2.67 ms (128 frames)" in text and "underruns 2" in text and "xruns 1" in text
    assert "channels: 1:basic (2)" in text
    assert "note-on G4 100" in text and "note-on C4 100" in text
    assert "file: song.mid    0.16 /" in text and "loop 1" in text
