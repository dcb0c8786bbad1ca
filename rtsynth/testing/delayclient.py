"""A JACK synth with a known, exact behaviour, for testing the rig and the bench.

``python -m rtsynth.testing.delayclient --delay N`` answers every MIDI note-on that it reads at
absolute frame ``f`` with sound starting at exactly frame ``f + N``: an impulse (``--wave
impulse``) or a sine at the note's pitch held until the note-off (also delayed by ``N``). So a
correct latency measurement through JACK gives exactly ``N``.

It mimics ``rtsynth play``'s contract: a client with ``midi_in``, ``out_1``, ``out_2``; a ready
line (``delayclient: playing``); ``--stats-json`` written at exit with ``underruns``;
``SIGINT``/``SIGTERM`` stop it with exit code 0. Faults on demand, to test that they are found:

``--zero-every K``   output silence in every K-th cycle while a note sounds (counted as underruns)
``--stall-every K --stall-ms M``  sleep M ms inside every K-th process callback after the first
                     note-on: the server reports ``client = NAME was not finished`` (an xrun)
``--quantize``       ignore event offsets: sound starts ``N`` frames after the start of the cycle
                     the event arrived in (latency ``N - offset``: jitter of one block)
``--max-voices K``   output silence in every cycle where more than K voices sound (a synth whose
                     capacity is exactly K)
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import threading
import time

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="delayclient", description=__doc__.splitlines()[0])
    ap.add_argument("--name", default="delay")
    ap.add_argument("--delay", type=int, default=0, help="frames from MIDI event to sound")
    ap.add_argument("--wave", choices=("sine", "impulse"), default="sine")
    ap.add_argument("--amp", type=float, default=0.2)
    ap.add_argument("--zero-every", type=int, default=0)
    ap.add_argument("--stall-every", type=int, default=0)
    ap.add_argument("--stall-ms", type=float, default=0.0)
    ap.add_argument("--quantize", action="store_true",
                    help="apply every event at the start of the cycle it arrives in (as "
                         "FluidSynth does), ignoring its offset")
    ap.add_argument("--max-voices", type=int, default=0,
                    help="output silence (an underrun) in every cycle with more voices sounding")
    ap.add_argument("--stats-json", default=None)
    ap.add_argument("--connect", nargs="*", default=[], help="SRC:DST pairs to connect")
    args = ap.parse_args(argv)

    import jack
    sys.setswitchinterval(0.0005)
    client = jack.Client(args.name, no_start_server=True)
    midi_in = client.midi_inports.register("midi_in")
    outs = [client.outports.register("out_1"), client.outports.register("out_2")]
    sr = client.samplerate
    bs = client.blocksize
    delay = int(args.delay)
    w = 2 * math.pi / sr

    st = {"underruns": 0, "blocks": 0, "stalls": 0, "events": 0, "sounding_blocks": 0,
          "started": False}
    pending: list = []   # (frame, kind, note, vel)
    voices: list = []    # [start, end, note, amp]
    impulses: list = []  # (frame, amp)
    idx = np.arange(bs, dtype=np.int64)
    out = np.zeros(bs, dtype=np.float64)
    inf = 1 << 62

    @client.set_process_callback
    def process(frames):
        t = client.last_frame_time
        st["blocks"] += 1
        for off, buf in midi_in.incoming_midi_events():
            data = bytes(buf)
            if len(data) < 2:
                continue
            s = data[0] & 0xF0
            f = t + (0 if args.quantize else off) + delay
            if s == 0x90 and len(data) >= 3 and data[2] > 0:
                pending.append((f, 1, data[1], data[2]))
                st["started"] = True
            elif s == 0x80 or (s == 0x90 and len(data) >= 3):
                pending.append((f, 0, data[1], 0))
            elif s == 0xB0 and data[1] in (120, 123):
                pending.append((f, 2, 0, 0))
            st["events"] += 1
        end = t + frames
        if pending:
            pending.sort(key=lambda e: e[0])
            k = 0
            while k < len(pending) and pending[k][0] < end:
                f, kind, note, vel = pending[k]
                if kind == 1:
                    if args.wave == "impulse":
                        impulses.append((f, args.amp * vel / 127))
                    else:
                        for v in voices:
                            if v[2] == note and v[1] == inf:
                                v[1] = f
                        voices.append([f, inf, note, args.amp * vel / 127])
                else:
                    for v in voices:
                        if (kind == 2 or v[2] == note) and v[1] == inf:
                            v[1] = f
                k += 1
            del pending[:k]
        out[:frames] = 0.0
        a = t + idx[:frames]
        for v in voices:
            s0, e0, note, amp = v
            hz = 440.0 * 2.0 ** ((note - 69) / 12.0)
            m = (a >= s0) & (a < e0)
            if m.any():
                out[:frames] += amp * np.sin(w * hz * (a - s0)) * m
        if impulses:
            keep = []
            for f, amp in impulses:
                if t <= f < end:
                    out[f - t] += amp
                elif f >= end:
                    keep.append((f, amp))
            impulses[:] = keep
        voices[:] = [v for v in voices if v[1] > end]
        sounding = bool(voices) or bool(np.any(out[:frames]))
        if sounding:
            st["sounding_blocks"] += 1
            n_on = sum(1 for v in voices if v[0] < end)
            if ((args.zero_every and st["sounding_blocks"] % args.zero_every == 0)
                    or (args.max_voices and n_on > args.max_voices)):
                out[:frames] = 0.0
                st["underruns"] += 1
        for p in outs:
            p.get_array()[:] = out[:frames]
        if args.stall_every and st["started"] and st["blocks"] % args.stall_every == 0:
            st["stalls"] += 1
            time.sleep(args.stall_ms / 1000.0)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    with client:
        for pair in args.connect:
            src, dst = pair.split("=") if "=" in pair else pair.rsplit(">", 1)
            client.connect(src, dst)
        print(f"delayclient: playing (client {client.name}, delay {delay} frames, "
              f"block {bs}, {sr} Hz)", flush=True)
        while not stop.is_set():
            stop.wait(0.1)
    print(f"delayclient: underruns {st['underruns']} stalls {st['stalls']}", flush=True)
    if args.stats_json:
        with open(args.stats_json, "w") as f:
            json.dump({"underruns": st["underruns"], "blocks": st["blocks"], "block": bs,
                       "sample_rate": sr, "gen_ms": [], "latency_frames": delay,
                       "stalls": st["stalls"], "events": st["events"]}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
