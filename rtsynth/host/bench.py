"""What the rack costs: ``python -m rtsynth.host.bench``.

- per block (live engine, block 128): one neural instrument alone with 32 voices, against the
  rack with the same instrument and voices on channel 1, an LV2 synth (synthv1) with 8 notes on
  channel 2 and two LV2 effects on the master (x42 fil4 EQ and x42 dpl limiter), and what each
  piece adds (``parts_ms``: the rack with the neural part alone, with the synth, with the
  effects); medians of interleaved rounds;
- a 4-part GM file with program changes (violin, flute, trumpet, cello; 60 s, or ``--midi
  FILE``, e.g. ``tools/make_multipart.py``'s) rendered by ``rtsynth render`` (the rack), by
  ``rtsynth render -i INSTRUMENT`` (one engine for every part) and by FluidSynth (FluidR3 GM),
  interleaved in the same run, medians of 3 (``--runs``): wall and CPU time of the whole
  command, and the ratios to FluidSynth's (``fluidsynth_s / rtsynth_s``: above 1 is faster).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SYNTHV1 = "http://synthv1.sourceforge.net/lv2"
FX = [("http://gareus.org/oss/lv2/fil4#stereo", {}), ("http://gareus.org/oss/lv2/dpl#stereo",
                                                      {"threshold": -1})]


def _args(**kw):
    a = argparse.Namespace(sample_rate=None, gain=0.5, reverb=0.12, polyphony=32,
                           timbre_cc=None, instrument=None, gm=False)
    a.__dict__.update(kw)
    return a


def block_costs(instrument: str = "flute-life", block: int = 128, blocks: int = 400,
                rounds: int = 5) -> dict:
    from ..engine import Engine
    from ..instruments import load_instrument
    from .wiring import build_rack

    alone = Engine(load_instrument(instrument), block=block, n_slots=32)
    rack = build_rack(_args(), block, None, False, {0: instrument, 1: f"lv2:{SYNTHV1}"}, FX)
    # what each piece adds: the rack with the neural part alone, with the synth, with the fx
    more = {"rack_neural": build_rack(_args(), block, None, False, {0: instrument}, []),
            "rack_neural_lv2": build_rack(_args(), block, None, False,
                                          {0: instrument, 1: f"lv2:{SYNTHV1}"}, []),
            "rack_neural_fx": build_rack(_args(), block, None, False, {0: instrument}, FX)}
    engines = {"alone": alone, "rack": rack, **more}
    for e in engines.values():
        e.warmup()

    def hold(e, rack_mode):
        t = e.time
        for i in range(32):
            e.push(t, (0x90, 48 + i, 90))
        if rack_mode:
            for i in range(8):
                e.push(t, (0x91, 60 + 2 * i, 90))
        for _ in range(20):
            e.render()

    for name, e in engines.items():
        hold(e, name in ("rack", "rack_neural_lv2"))
    res = {name: [] for name in engines}
    for _ in range(rounds):
        for name, e in engines.items():
            ts = np.zeros(blocks)
            for k in range(blocks):
                t0 = time.perf_counter()
                e.render()
                ts[k] = time.perf_counter() - t0
            res[name].append(float(np.median(ts)) * 1e3)
    voices = {"alone": alone.active_voices, "rack": rack.active_voices}
    for name, e in engines.items():
        if name != "alone":
            e.close()
    return {"block": block, "instrument": instrument,
            "alone_ms": statistics.median(res["alone"]), "rack_ms": statistics.median(res["rack"]),
            "parts_ms": {k: statistics.median(res[k]) for k in more},
            "rounds_ms": res, "voices": voices, "budget_ms": block / 48000 * 1e3}


def gm_file(path: Path, seconds: float = 60.0) -> Path:
    import mido
    parts = [(0, 40, [76, 74, 72, 71, 72, 74, 76, 79]), (1, 73, [72, 71, 69, 67, 69, 71, 72, 74]),
             (2, 56, [64, 65, 64, 62, 64, 65, 67, 65]), (3, 42, [48, 43, 45, 40, 41, 43, 48, 43])]
    mf = mido.MidiFile(type=1, ticks_per_beat=480)
    t0 = mido.MidiTrack()
    mf.tracks.append(t0)
    t0.append(mido.MetaMessage("set_tempo", tempo=500000))
    reps = int(seconds / (8 * 0.5))
    for ch, prog, notes in parts:
        tr = mido.MidiTrack()
        mf.tracks.append(tr)
        tr.append(mido.Message("program_change", channel=ch, program=prog, time=0))
        for _ in range(reps):
            for n in notes:
                tr.append(mido.Message("note_on", channel=ch, note=n, velocity=90, time=0))
                tr.append(mido.Message("note_off", channel=ch, note=n, velocity=0, time=480))
    mf.save(path)
    return path


def _timed(cmd) -> tuple[float, float, str]:
    """Wall and CPU seconds (user + system) of a command, and its stdout."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime, p.stdout


def render_speed(seconds: float = 60.0, runs: int = 3, midi: str | None = None,
                 single: str | None = "flute-life") -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="rtsynth-bench-"))
    try:
        mid = Path(midi) if midi else gm_file(tmp / "gm4.mid", seconds)
        cmds = {"rtsynth": [sys.executable, "-m", "rtsynth.cli", "render", str(mid), "-o",
                            str(tmp / "ours.wav"), "-q"]}
        if single:
            cmds["single"] = cmds["rtsynth"][:-2] + [str(tmp / "single.wav"), "-q", "-i",
                                                     single]
        if shutil.which("fluidsynth"):
            cmds["fluidsynth"] = ["fluidsynth", "-ni", "-g", "0.5", "-r", "48000", "-F",
                                  str(tmp / "fluid.wav"), "/usr/share/sounds/sf2/FluidR3_GM.sf2",
                                  str(mid)]
        wall = {k: [] for k in cmds}
        cpu = {k: [] for k in cmds}
        inner = []
        for _ in range(runs):
            for k, cmd in cmds.items():          # interleaved: the same load for each
                w, c, stdout = _timed(cmd)
                wall[k].append(w)
                cpu[k].append(c)
                if k == "rtsynth":
                    # "... in X s: ..." the render itself, without the process start
                    line = next(ln for ln in stdout.splitlines()
                                if ln.startswith("rtsynth: wrote"))
                    inner.append(float(line.split(") in ")[1].split(" s")[0]))
        import soundfile as sf
        dur = sf.info(str(tmp / "ours.wav")).duration
        med = {k: statistics.median(v) for k, v in wall.items()}
        out = {"midi": str(midi) if midi else "generated 4-part GM file", "audio_s": dur,
               "runs": runs, "rtsynth_s": med["rtsynth"], "rtsynth_x": dur / med["rtsynth"],
               "rtsynth_cpu_s": statistics.median(cpu["rtsynth"]),
               "rtsynth_render_only_s": statistics.median(inner)}
        if single:
            out.update(single=single, single_s=med["single"], single_x=dur / med["single"],
                       single_cpu_s=statistics.median(cpu["single"]))
        if "fluidsynth" in cmds:
            fd = sf.info(str(tmp / "fluid.wav")).duration
            out.update(fluidsynth_s=med["fluidsynth"], fluidsynth_x=fd / med["fluidsynth"],
                       fluidsynth_cpu_s=statistics.median(cpu["fluidsynth"]),
                       rtsynth_vs_fluidsynth=med["fluidsynth"] / med["rtsynth"])
            if single:
                out["single_vs_fluidsynth"] = med["fluidsynth"] / med["single"]
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rtsynth.host.bench", description=__doc__)
    ap.add_argument("--instrument", default="flute-life")
    ap.add_argument("--blocks", type=int, default=400)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--skip-render", action="store_true")
    ap.add_argument("--skip-block", action="store_true")
    ap.add_argument("--midi", default=None, help="render this file (default: a generated "
                                                 "4-part GM file of --seconds)")
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args(argv)
    out = {}
    if not a.skip_block:
        out["block"] = block_costs(a.instrument, blocks=a.blocks)
        print(json.dumps(out["block"], indent=1), flush=True)
    if not a.skip_render:
        out["render"] = render_speed(a.seconds, a.runs, a.midi, a.instrument)
        print(json.dumps(out["render"], indent=1), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
