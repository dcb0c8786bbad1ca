"""``rtsynth batch``: render a folder of MIDI files, on every core.

Each file is rendered exactly as ``rtsynth render FILE -o OUT`` renders it (the same code, in
long-lived worker processes that import rtsynth once: no interpreter start and no imports per
file), so a batch gives the same samples, byte for byte, as the files rendered one by one.
Workers: ``-j`` (default: half the cores, since every render already runs on two threads,
``OfflineEngine``; at least one). Outputs mirror the inputs' relative paths under ``-o DIR``.
A file that fails is reported in one line and the others go on; the exit code is 1 if any
failed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time
from pathlib import Path

DESCRIPTION = __doc__.splitlines()[0]
MIDI_SUFFIXES = (".mid", ".midi", ".smf", ".kar")
FORMATS = ("wav", "flac", "ogg")
#: engine options forwarded to every render: dest -> option
FORWARD = {"instrument": "-i", "sample_rate": "-r", "block": "-z", "gain": "-g",
           "polyphony": "--polyphony", "reverb": "--reverb", "timbre_cc": "--timbre-cc",
           "tail": "--tail", "max_duration": "--max-duration"}


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("batch", help="render a folder of MIDI files on every core",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="MIDI files and/or folders (searched for "
                   + "/".join(MIDI_SUFFIXES) + " files)")
    p.add_argument("-o", "--output-dir", required=True, help="folder for the rendered files")
    p.add_argument("--format", choices=FORMATS, default="wav", help="output format (wav)")
    p.add_argument("-j", "--jobs", type=int, default=None,
                   help="worker processes (default: half the cores, at least 1)")
    p.add_argument("--recursive", action="store_true", help="search folders recursively")
    from .cli import _add_engine_options
    _add_engine_options(p)
    p.add_argument("--tail", default=None, help="max seconds after the last event (render's)")
    p.add_argument("--max-duration", default=None, metavar="SECONDS",
                   help="refuse a render longer than this (render's)")
    p.add_argument("-q", "--quiet", action="store_true", help="no line per file")
    from .options import BATCH_LIMITS, bound
    bound(p, BATCH_LIMITS)          # every number's range (exit 2 outside it)
    p.set_defaults(func=run)
    return p


def find_inputs(inputs, recursive: bool = False) -> list[tuple[Path, Path]]:
    """``[(file, path relative to its root)]`` for every MIDI file named or in a folder named,
    sorted, each once."""
    out, seen = [], set()
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            it = p.rglob("*") if recursive else p.glob("*")
            files = sorted(f for f in it if f.is_file() and f.suffix.lower() in MIDI_SUFFIXES)
            pairs = [(f, f.relative_to(p)) for f in files]
        else:
            pairs = [(p, Path(p.name))]
        for f, rel in pairs:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                out.append((f, rel))
    return out


def render_args(args) -> list[str]:
    """The options every ``rtsynth render`` of this batch gets (each one that has a value)."""
    out = []
    for dest, opt in FORWARD.items():
        v = getattr(args, dest, None)
        if v is not None:
            out += [opt, str(v)]
    return out


def _render_one(job: tuple[str, str, list[str]]) -> tuple[str, int, float, str]:
    """Worker: one ``rtsynth render``; returns (input, exit code, seconds, last error line)."""
    src, dst, opts = job
    from .cli import main
    err = io.StringIO()
    t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            code = int(main(["render", src, "-o", dst, "-q", *opts]) or 0)
        except SystemExit as e:            # argparse: a usage error
            code = int(e.code or 0) if isinstance(e.code, int) else 2
        except Exception as e:  # noqa: BLE001 - one file fails, the batch goes on
            print(f"rtsynth: error: {type(e).__name__}: {e}", file=err)
            code = 1
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    last = lines[-1] if lines and code else ""
    for prefix in ("rtsynth: error: ", "rtsynth: "):
        if last.startswith(prefix):
            last = last[len(prefix):]
            break
    return src, code, time.perf_counter() - t, last


def default_jobs() -> int:
    return max(1, (os.cpu_count() or 2) // 2)


def run(args) -> int:
    import multiprocessing as mp
    files = find_inputs(args.inputs, args.recursive)
    if not files:
        print("rtsynth: error: no MIDI files in " + ", ".join(args.inputs), file=sys.stderr)
        return 1
    out_dir = Path(args.output_dir)
    opts = render_args(args)
    jobs = []
    for f, rel in files:
        dst = out_dir / rel.with_suffix("." + args.format)
        dst.parent.mkdir(parents=True, exist_ok=True)
        jobs.append((str(f), str(dst), opts))
    n = max(1, min(args.jobs or default_jobs(), len(jobs)))
    t0 = time.perf_counter()
    failed = 0
    ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    with ctx.Pool(n) as pool:
        for src, code, secs, err in pool.imap(_render_one, jobs):
            if code:
                failed += 1
                print(f"rtsynth: {src}: {err or f'exit {code}'}", file=sys.stderr, flush=True)
            elif not args.quiet:
                print(f"rtsynth: rendered {src} ({secs:.2f} s)", flush=True)
    wall = time.perf_counter() - t0
    print(f"rtsynth: batch of {len(jobs)} files in {wall:.2f} s on {n} worker"
          f"{'s' if n > 1 else ''}" + (f"; {failed} failed" if failed else ""), flush=True)
    return 1 if failed else 0
