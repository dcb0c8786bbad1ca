"""How well ``rtsynth dataset recordings`` found the notes of FluidSynth phrases.

Usage::

    rtsynth dataset phrases -p 71 -n 40 --notes 10 --seed 11 -o out/rec_src/clarinet
    mkdir -p out/rec/clarinet && cp out/rec_src/clarinet/*.wav out/rec/clarinet/   # audio only
    rtsynth dataset recordings out/rec/clarinet -o data/clarinet-rec --name clarinet-rec
    python -m rtsynth.dataset.accuracy out/rec_src/clarinet data/clarinet-rec

Each played note (``phraseNN.json``, written with the phrase) is matched with the detected note of
the same file whose onset is nearest; within ``--window`` ms it counts as found. Prints found /
right pitch, and onset errors (detected - played, ms) for notes after silence and legato notes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def accuracy(phrase_dir: str, dataset_dir: str, window_ms: float = 150.0) -> dict:
    idx = json.loads((Path(dataset_dir) / "index.json").read_text())
    sr = idx["sample_rate"]
    det: dict[str, list] = {}
    for e in idx["examples"]:
        det.setdefault(e["source_file"], []).append(e)
    errs = {"after_silence": [], "legato": []}
    n = found = right = 0
    for j in sorted(Path(phrase_dir).glob("*.json")):
        g = json.loads(j.read_text())
        tick = g["tick_samples"]
        d = det.get(j.with_suffix(".wav").name, [])
        prev_off = -1
        for nt in g["notes"]:
            n += 1
            on = nt["onset_tick"] * tick
            legato = prev_off >= nt["onset_tick"]
            prev_off = nt["off_tick"]
            if not d:
                continue
            best = min(d, key=lambda e: abs(e["source_onset_sample"] - on))
            dt = (best["source_onset_sample"] - on) * 1000.0 / sr
            if abs(dt) <= window_ms:
                found += 1
                right += best["pitch"] == nt["pitch"]
                errs["legato" if legato else "after_silence"].append(dt)
    out = dict(played=n, detected=len(idx["examples"]), found=found, right_pitch=right)
    for k, e in errs.items():
        e = np.asarray(e)
        out[k] = dict(n=len(e), median_ms=float(np.median(e)) if len(e) else None,
                      abs_p95_ms=float(np.percentile(np.abs(e), 95)) if len(e) else None,
                      abs_max_ms=float(np.abs(e).max()) if len(e) else None)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("phrases", help="folder of phraseNN.json/.wav (tools/build_dataset.py phrases)")
    ap.add_argument("dataset", help="the dataset the recordings importer wrote")
    ap.add_argument("--window", type=float, default=150.0, help="ms")
    a = ap.parse_args(argv)
    print(json.dumps(accuracy(a.phrases, a.dataset, a.window), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
