"""A long 4-part MIDI file for render benchmarks: a 4-part chorale (the bench's BWV 66.6, or
its generated stand-in) with each part on its own channel, looped to about ``--seconds``, each
repetition giving the parts other GM programs (program changes) from the shipped models'
(flute 73, violin 40, clarinet 71, cello 42, trumpet 56).

    python tools/make_multipart.py -o work/multipart.mid --seconds 300
    python tools/make_multipart.py -o work/chorale.mid --seconds 336 --single
      (--single: the parts as the source has them, no program changes: one instrument)
"""

from __future__ import annotations

import argparse
import math

import mido

from rtsynth.bench.measure import chorale_midi

PROGRAMS = [73, 40, 71, 42, 56]


def build(seconds: float, single: bool) -> mido.MidiFile:
    src = mido.MidiFile(str(chorale_midi()))
    parts = [t for t in src.tracks if any(m.type == "note_on" for m in t)]
    meta = [m for t in src.tracks for m in t if m.is_meta and m.type in ("set_tempo",
                                                                        "time_signature")]
    reps = max(1, math.ceil(seconds / src.length))
    # absolute-tick events of one repetition per part, and the repetition's length in ticks
    per_part = []
    rep_len = 0
    for tr in parts:
        t, evs = 0, []
        for m in tr:
            t += m.time
            if not m.is_meta and m.type in ("note_on", "note_off", "control_change",
                                            "pitchwheel"):
                evs.append((t, m))
        rep_len = max(rep_len, t)
        per_part.append(evs)
    beat = src.ticks_per_beat
    rep_len = int(math.ceil(rep_len / beat)) * beat
    out = mido.MidiFile(type=1, ticks_per_beat=beat)
    head = mido.MidiTrack()
    t_prev = 0
    for m in meta:                    # tempo map of the first repetition, kept as is
        head.append(m.copy(time=0))
    head.append(mido.MetaMessage("end_of_track", time=0))
    out.tracks.append(head)
    for i, evs in enumerate(per_part):
        ch = 0 if single else i
        tr = mido.MidiTrack()
        t_prev = 0
        for r in range(reps):
            base = r * rep_len
            if not single:
                prog = PROGRAMS[(i + r) % len(PROGRAMS)]
                tr.append(mido.Message("program_change", channel=ch, program=prog,
                                       time=base - t_prev))
                t_prev = base
            for t, m in evs:
                tr.append(m.copy(channel=ch, time=base + t - t_prev))
                t_prev = base + t
        tr.append(mido.MetaMessage("end_of_track", time=0))
        out.tracks.append(tr)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--seconds", type=float, default=300.0)
    ap.add_argument("--single", action="store_true",
                    help="no program changes, all parts on channel 1")
    a = ap.parse_args()
    mid = build(a.seconds, a.single)
    mid.save(a.output)
    print(f"{a.output}: {mid.length:.1f} s, {len(mid.tracks) - 1} parts")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
