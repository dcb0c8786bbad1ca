#!/usr/bin/env python3
"""The long fuzz: what the fault suite (tests/test_faults*.py) checks, for as long as you like.

    python tools/fuzz.py files  --count 500     # random + malformed MIDI files through render
    python tools/fuzz.py models                 # hostile model folders through render
    python tools/fuzz.py options                # hostile option values
    python tools/fuzz.py live   --count 2000    # random JACK MIDI events into rtsynth play
    python tools/fuzz.py all    --seed 3

Every case must end in a valid render (finite, within full scale, no longer than its music
plus the tail) or one error line (exit 1, usage: 2), with an existing output left as it was and
within ``--case-timeout`` seconds; live, the recorded output must be finite and within full scale
and rtsynth must keep answering and exit 0. Prints the cases tried and handled per category and
every failure (its name rebuilds it: the same seed gives the same cases); exits 1 on any failure.
Needs no network; ``live`` needs ``jackd`` (it starts a private dummy server and ends it).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

OLD = b"an old render that must survive"


class Tally:
    def __init__(self):
        self.rows: dict[str, list[int]] = {}
        self.failures: list[str] = []

    def add(self, category: str, ok: bool, what: str = "") -> None:
        r = self.rows.setdefault(category, [0, 0])
        r[0] += 1
        r[1] += ok
        if not ok:
            self.failures.append(f"{category}: {what}")
            print(f"FAIL {category}: {what}", flush=True)

    def report(self) -> int:
        print("\ncategory        tried  handled")
        for k, (n, ok) in self.rows.items():
            print(f"{k:14s} {n:7d} {ok:8d}")
        return 1 if self.failures else 0


def _render(argv: list[str], out: Path, timeout: float) -> tuple[int, str, float]:
    from rtsynth.cli import main
    out.write_bytes(OLD)
    err = io.StringIO()
    t = time.perf_counter()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(argv)
        except SystemExit as e:
            rc = int(e.code or 0)
        except Exception as e:  # noqa: BLE001 - any escape is a failure to report
            rc = -1
            err.write(f"Traceback: {type(e).__name__}: {e}\n")
    return rc, err.getvalue(), time.perf_counter() - t


def _judge(tally, category, name, rc, err, out, took, timeout, usage=False,
           music: float | None = None, tail: float = 1.0) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if "Traceback" in err:
        return tally.add(category, False, f"{name}: traceback: {err[-300:]}")
    if took > timeout:
        return tally.add(category, False, f"{name}: took {took:.1f} s")
    if rc != 0:
        ok = rc == (2 if usage else 1) and lines and "error:" in lines[-1]
        ok = ok and (usage or len(lines) == 1) and out.read_bytes() == OLD
        return tally.add(category, bool(ok), f"{name}: rc {rc}, {err.strip()[-300:]}")
    import soundfile as sf
    try:
        x, sr = sf.read(out, dtype="float32")
    except Exception as e:  # noqa: BLE001
        return tally.add(category, False, f"{name}: unreadable output ({e})")
    bad = not np.isfinite(x).all() or np.abs(x).max() > 1.0
    if music is not None and len(x) > round((music + tail) * sr) + 1:
        bad = True
    tally.add(category, not bad, f"{name}: output NaN, over full scale or too long")


def fuzz_files(tally, count, seed, timeout, folder: Path) -> None:
    from rtsynth.midi.messages import MidiError
    from rtsynth.render import events_length, read_midi_timed
    from rtsynth.testing.hostile import midi_files, random_smf
    rng = np.random.default_rng(seed)
    cases = midi_files(seed=seed, n_random=0)
    for i in range(count):
        cases[f"random_{seed}_{i}"] = random_smf(rng, n_events=int(rng.integers(1, 2000)),
                                                 damage=bool(rng.random() < 0.5))
    for name, data in cases.items():
        mid = folder / "f.mid"
        mid.write_bytes(data)
        out = folder / "o.wav"
        try:
            music = events_length(read_midi_timed(mid))
        except MidiError:
            music = None
        rc, err, took = _render(["render", str(mid), "-o", str(out), "-i", "basic", "-q",
                                 "--tail", "1", "--max-duration", "120"], out, timeout)
        _judge(tally, "midi files", name, rc, err, out, took, timeout, music=music)


def fuzz_models(tally, timeout, folder: Path, source: str) -> None:
    from rtsynth.instruments import models_dir
    from rtsynth.testing.hostile import PICKLE_MARKER, model_folders
    for name, d in model_folders(models_dir() / source, folder / "models").items():
        out = folder / "o.wav"
        rc, err, took = _render(["render", "--demo", "-o", str(out), "-i", str(d), "-q",
                                 "--tail", "0.5"], out, timeout)
        if (d / PICKLE_MARKER).exists():
            tally.add("model folders", False, f"{name}: a pickle was unpickled")
            continue
        _judge(tally, "model folders", name, rc, err, out, took, timeout)


def fuzz_options(tally, timeout, folder: Path) -> None:
    from rtsynth.testing.hostile import bad_options
    for name, argv in bad_options().items():
        out = folder / "o.wav"
        rc, err, took = _render(["render", "--demo", "-o", str(out), "-i", "basic", "-q",
                                 *argv], out, timeout)
        ok = rc == 2 and "Traceback" not in err and out.read_bytes() == OLD
        tally.add("options", ok, f"{name}: rc {rc} {err.strip()[-200:]}")


def fuzz_live(tally, count, seed, instrument: str, folder: Path, per_round: int = 200) -> None:
    from rtsynth.jackserver import JackServer
    from rtsynth.testing.hostile import random_midi_event
    from rtsynth.testing.jackrig import JackRig, wait_for_ports
    from rtsynth.testing.play import counters, read_stats, start_play
    rng = np.random.default_rng(seed)
    srv = JackServer(period=128)
    srv.start()
    rig = None
    try:
        rig = JackRig(n_inputs=2, servername=srv.name, max_seconds=30)
        stats = folder / "stats.json"
        sent = 0
        with start_play(srv, stats, "--polyphony", "32", instrument=instrument) as proc:
            mp = wait_for_ports(rig.rx, r"rtsynth", midi=True, is_input=True, proc=proc.proc)
            ap = wait_for_ports(rig.rx, r"rtsynth", midi=False, is_input=False, count=2,
                                proc=proc.proc)
            rig.connect_midi(mp[0])
            rig.connect_audio(ap[:2])
            sr = rig.sample_rate
            while sent < count:
                k = min(per_round, count - sent)
                n = 3 * sr
                ev = [(int(f), random_midi_event(rng))
                      for f in np.sort(rng.integers(0, n - sr // 2, k))]
                ev.append((n - sr // 2, b"\xb0\x78\x00"))
                res = rig.run(ev, n, timeout=40)
                x = res.audio
                alive = proc.proc.poll() is None and counters(proc) is not None
                ok = alive and np.isfinite(x).all() and np.abs(x).max() <= 1.0
                tally.add("live events", bool(ok),
                          f"round at event {sent}: alive {alive}, peak "
                          f"{np.nanmax(np.abs(x)) if x.size else 0:.3f}")
                sent += k
                if not alive:
                    break
            rc = proc.stop()
        tally.add("live exit", rc == 0 and "Traceback" not in proc.output,
                  f"exit {rc}: {proc.output[-500:]}")
        if stats.exists():
            eng = read_stats(stats).get("engine", {})
            print(f"live: {sent} events -> {eng.get('events')} messages, "
                  f"{eng.get('bad_messages')} bad bytes counted")
    finally:
        if rig is not None:
            rig.close()
        srv.cleanup()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("what", choices=["files", "models", "options", "live", "all"])
    ap.add_argument("--count", type=int, default=300,
                    help="random MIDI files (files) or JACK events (live)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--case-timeout", type=float, default=120.0)
    ap.add_argument("--instrument", default="flute-lite",
                    help="live: the instrument to play; models: the model to damage")
    a = ap.parse_args(argv)
    tally = Tally()
    with tempfile.TemporaryDirectory(prefix="rtsynth-fuzz-") as d:
        folder = Path(d)
        if a.what in ("files", "all"):
            fuzz_files(tally, a.count, a.seed, a.case_timeout, folder)
        if a.what in ("models", "all"):
            fuzz_models(tally, a.case_timeout, folder, a.instrument)
        if a.what in ("options", "all"):
            fuzz_options(tally, a.case_timeout, folder)
        if a.what in ("live", "all"):
            fuzz_live(tally, a.count * (7 if a.what == "all" else 1), a.seed, a.instrument,
                      folder)
    return tally.report()


if __name__ == "__main__":
    sys.exit(main())
