"""``rtsynth bench``: what a musician feels, measured side by side with FluidSynth.

Runnable before it is wired in as ``python -m rtsynth.bench.cli [--quick]``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

DESCRIPTION = """\
Measure rtsynth live through JACK and offline, next to FluidSynth (FluidR3 GM) in the same run:
MIDI-to-audio latency (median, p99, max, jitter; blocks 64/128/256), dropouts while holding
voices with pitch bend and CC traffic, polyphony capacity, offline render speed, start-up to
first sound. Starts its own dummy JACK server when none runs. Writes a table, JSON and a PNG."""


def _ints(s: str) -> list[int]:
    return [int(x) for x in s.replace(",", " ").split()]


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("bench", help="performance tests, side by side with FluidSynth",
                              description=DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_options(p)
    from ..options import BENCH_LIMITS, bound
    bound(p, BENCH_LIMITS)          # every number's range (exit 2 outside it)
    p.set_defaults(func=run)
    return p


def _add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true",
                   help="under two minutes: block 128 only, fewer notes, shorter holds")
    p.add_argument("-i", "--instrument", action="append", default=None,
                   help="rtsynth instrument(s) to measure (repeatable; default: every shipped "
                        "instrument and basic; --quick: the default instrument)")
    p.add_argument("--no-peer", action="store_true", help="skip FluidSynth")
    p.add_argument("--blocks", type=_ints, default=None,
                   help="block sizes for latency (default '64 128 256'; quick '128')")
    p.add_argument("--notes", type=int, default=None, help="latency notes per block (200)")
    p.add_argument("--seconds", type=float, default=None,
                   help="dropout run length in seconds (default 60, quick 5)")
    p.add_argument("--voices", type=int, default=32, help="voices held in the dropout run")
    p.add_argument("--capacity-steps", type=_ints, default=None,
                   help="voice counts tried for capacity, in order (stops at the first failure)")
    p.add_argument("--capacity-seconds", type=float, default=None,
                   help="hold per capacity step (default 5, quick 2)")
    p.add_argument("--rows", default="startup,felt,latency,load,capacity,render",
                   help="comma-separated subset of startup,felt,latency,load,capacity,render "
                        "(felt: note-on to 2%% of the note's peak, keys 60-83, FluidSynth on "
                        "GM program 73)")
    p.add_argument("--felt-repeats", type=int, default=None,
                   help="felt latency: each key this many times (default 2, quick 1)")
    p.add_argument("--render-multipart", type=float, default=None, metavar="SECONDS",
                   help="the render row's multi-part file (4 parts on 4 channels with program "
                        "changes) of about SECONDS; 0: none (default 336, --quick: none)")
    p.add_argument("--render-runs", type=int, default=None,
                   help="runs of each render per synth, taking turns; the median is reported "
                        "(default 3, quick 1)")
    p.add_argument("--private-server", action="store_true",
                   help="start a private dummy JACK server even if one is running")
    p.add_argument("--play-arg", "--rtsynth-arg", dest="play_arg", action="append", default=[],
                   metavar="ARG",
                   help="extra argument for every 'rtsynth play' the bench starts (repeatable; "
                        "one that starts with '-' is written --play-arg=--ahead=2)")
    p.add_argument("--sync", action="store_true",
                   help="shorthand for --play-arg=--sync (render in the JACK callback)")
    p.add_argument("--buffered", action="store_true",
                   help="shorthand for --play-arg=--buffered (render ahead into a ring)")
    p.add_argument("--variant", action="append", default=None, metavar="ARGS",
                   help="measure every instrument once per variant, side by side in the same "
                        "run; ARGS: play options in one string, '' for none (repeatable: "
                        "--variant='' --variant=--sync)")
    p.add_argument("-o", "--output-dir", default="bench-results",
                   help="where bench.json and bench.png go (default ./bench-results)")
    p.add_argument("--json", default=None, help="JSON path (default OUTPUT_DIR/bench.json)")
    p.add_argument("--png", default=None, help="PNG path (default OUTPUT_DIR/bench.png)")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")


def default_instruments(quick: bool) -> list[str]:
    try:
        from rtsynth.instruments import default_instrument, shipped_instruments
    except ImportError:
        return ["basic"]
    return [default_instrument()] if quick else shipped_instruments()


def play_args(args) -> list[str]:
    """The options every `rtsynth play` of this bench gets (--play-arg, --sync, --buffered)."""
    out = list(args.play_arg)
    for flag in ("sync", "buffered"):
        if getattr(args, flag, False) and f"--{flag}" not in out:
            out.append(f"--{flag}")
    return out


def run(args) -> int:
    import shutil

    from rich.console import Console

    from . import report
    from .runner import BenchConfig, run_bench

    # a log file or a pipe gets a wide table rather than rich's 80 columns
    console = Console(stderr=False, width=None if sys.stdout.isatty() else 160)
    err = Console(stderr=True)
    if shutil.which("jackd") is None:
        from rtsynth.jackserver import server_running
        if not server_running():
            err.print("rtsynth bench: no JACK server and no jackd to start one; install jackd2 "
                      "(apt-get install jackd2)")
            return 2
    rows = tuple(r.strip() for r in args.rows.split(",") if r.strip())
    bad = set(rows) - {"startup", "felt", "latency", "load", "capacity", "render"}
    if bad:
        err.print(f"rtsynth bench: unknown rows {', '.join(sorted(bad))}")
        return 2
    cfg = BenchConfig(quick=args.quick, instruments=args.instrument or
                      default_instruments(args.quick),
                      peer=not args.no_peer, blocks=args.blocks, notes=args.notes,
                      load_seconds=args.seconds, load_voices=args.voices,
                      capacity_steps=args.capacity_steps,
                      capacity_seconds=args.capacity_seconds, rows=rows,
                      felt_repeats=args.felt_repeats,
                      render="render" in rows, render_runs=args.render_runs,
                      render_multipart=args.render_multipart,
                      private_server=args.private_server,
                      rtsynth_args=play_args(args),
                      variants=[shlex.split(v) for v in args.variant] if args.variant else None,
                      log=None if args.quiet else (lambda s: err.print(f"[dim]bench:[/] {s}")))
    res = run_bench(cfg)
    out = Path(args.output_dir)
    jpath = report.write_json(res, args.json or out / "bench.json")
    report.print_table(res, console)
    console.print(f"JSON: {jpath}")
    if not args.no_plot:
        try:
            ppath = report.write_png(res, args.png or out / "bench.png")
            console.print(f"plot: {ppath}")
        except ImportError:
            err.print("rtsynth bench: matplotlib missing, no plot (pip install matplotlib)")
    failed = [s for s, r in res["synths"].items() if r["errors"]]
    return 1 if failed else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="rtsynth bench", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_options(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
