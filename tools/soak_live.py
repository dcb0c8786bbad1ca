"""A live soak: `rtsynth play` for minutes on a private JACK server with its MIDI and audio ports
connected and disconnected over and over, notes played, own lateness at the start (a stalling
generator) and server-wide xruns throughout (another client overrunning its period); at the end
the latency must be where it began, and no note may hang.

    .venv/bin/python tools/soak_live.py --minutes 2 [-i flute-lite] [--buffered]

Prints one JSON line with the counters and exits 1 when the latency did not come back.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("-i", "--instrument", default="basic")
    ap.add_argument("--buffered", action="store_true",
                    help="the ring (the default is sync, JACK's default)")
    ap.add_argument("--lower-after", type=float, default=10.0)
    args = ap.parse_args(argv)

    import jack
    from rtsynth.jackserver import JackServer
    from rtsynth.testing.jackrig import JackRig, wait_for_ports
    from rtsynth.testing.play import counters, read_stats, start_play

    stats = Path(tempfile.mkdtemp(prefix="rtsynth-soak-")) / "stats.json"
    extra = ["--lower-after", str(args.lower_after)] + (["--buffered"] if args.buffered else [])
    with JackServer(period=128) as srv:
        # own lateness in the first 2000 blocks (5 s): 8 ms every 150 blocks
        with start_play(srv, stats, *extra, instrument=args.instrument,
                        env={"RTSYNTH_TEST_STALL": "150:8:2000"}) as proc:
            start_latency = counters(proc)["latency_frames"]
            hog = jack.Client("hog", no_start_server=True, servername=srv.name)
            n = {"c": 0}

            @hog.set_process_callback
            def _hog(frames):
                n["c"] += 1
                if n["c"] % 1500 == 0:          # a server-wide xrun every ~4 s
                    time.sleep(0.006)
            hog.activate()
            rig = JackRig(n_inputs=2, name="soak", servername=srv.name, max_seconds=10)
            wait_for_ports(rig.rx, r"rtsynth", midi=True, is_input=True)
            t_end = time.monotonic() + 60 * args.minutes
            rounds, peaks = 0, []
            hist = []
            while time.monotonic() < t_end:
                rig.connect_midi("rtsynth:midi_in")
                rig.connect_audio(["rtsynth:out_1", "rtsynth:out_2"])
                ev = [(0, bytes([0x90, 60 + rounds % 24, 90])), (4000, bytes([0x90, 67, 80]))]
                rig.start(ev, 48000)
                while rig.progress() < 24000:
                    time.sleep(0.01)
                rig.disconnect_all()             # mid-note: the notes must be released
                rig.finish()
                rig.connect_audio(["rtsynth:out_1", "rtsynth:out_2"])
                tail = rig.run([], 24000)        # 0.5 s later: silent
                peaks.append(float(np.abs(tail.audio[:, 12000:]).max()) if tail.audio.size
                             else 0.0)
                rig.disconnect_all()
                c = counters(proc)
                if c:
                    hist.append(c["latency_frames"])
                rounds += 1
            rig.close()
            hog.deactivate()
            hog.close()
            end_latency = counters(proc)["latency_frames"]
            proc.stop()
    st = read_stats(stats)
    out = {"minutes": args.minutes, "rounds": rounds, "start_latency": start_latency,
           "end_latency": end_latency, "max_latency": max(hist or [0]),
           "hanging_peak_max": max(peaks or [0.0]),
           **{k: st.get(k) for k in ("underruns", "own_underruns", "server_underruns", "xruns",
                                     "latency_raises", "latency_lowers", "sync_fallbacks",
                                     "sync_returns", "notes_released", "mode")}}
    print(json.dumps(out))
    ok = end_latency == start_latency and out["hanging_peak_max"] < 1e-4
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
