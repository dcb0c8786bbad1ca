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

from rtsynth.bench.measure import multipart_file

def build(seconds: float, single: bool):
    return multipart_file(seconds, single)


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
