#!/usr/bin/env python
"""Micro-benchmarks of rtsynth's hot kernels, apart from the test suite.

    python tools/bench_kernels.py [--quick] [-k SUBSTRING] [--json PATH]
    python tools/bench_kernels.py -k "synthesis kernel" --synth-baseline OLD_SYNTH.py
    python tools/bench_kernels.py --synth-replay /tmp/lead/multi.mid --synth-baseline OLD_SYNTH.py
    pytest tools/bench_kernels.py --benchmark-only          # the same kernels, pytest-benchmark

Kernels: one model step per backbone (GRU, CNN, attention; default sizes and every shipped model)
and batch size, the basic instrument's step, the Numba oscillator bank (harmonics only), the
filtered noise (noise only), both together, the synthesis kernel per voice-sample (V voices of
low notes, all 64 harmonics sounding, 2048-frame blocks: ``ns/voice-sample``; with
``--synth-baseline PATH`` another ``render_voices`` (an older ``rtsynth/dsp/synth.py``) is timed
on the same arguments, the two calls alternating, and the ratio printed; ``--synth-replay MIDI``: instead, calls captured from a whole
``rtsynth render MIDI -i flute-life`` replayed, old against new, in thread CPU time), the master chain (reverb, DC blocker, limiter), and
one whole engine block with V held voices. Each is warmed up (JIT, first-call allocations), then
timed call by call: median, p99, min, and the share of a 128-frame block at 48 kHz (2.667 ms).
A kernel whose code has not landed yet is listed as skipped, with the reason.

One thread for torch, Numba and BLAS (OpenBLAS), like the live engine. Numbers depend on the machine and on what
else runs on it: compare runs from the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

# One BLAS thread, like the live engine should run: on this 2-core VM OpenBLAS's own threads made
# a NumPy GRU step for 32 voices take 16 ms instead of 0.6 ms. Override from the environment
# (OPENBLAS_NUM_THREADS=2 python tools/bench_kernels.py) to see the difference.
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BLOCK = 128
SR = 48000
BUDGET_MS = 1000.0 * BLOCK / SR


class SkipKernel(Exception):
    """The kernel's code (or a dependency) is not available."""


# -- the harness ---------------------------------------------------------------------------------

def measure(fn, *, warmup_s: float = 0.2, min_warmup: int = 20, min_time: float = 1.0,
            max_reps: int = 20000, min_reps: int = 30) -> dict:
    """Warm up, then time single calls: ``{median_ms, p99_ms, min_ms, mean_ms, reps}``."""
    t_end = time.perf_counter() + warmup_s
    n = 0
    while n < min_warmup or time.perf_counter() < t_end:
        fn()
        n += 1
    times = []
    t_end = time.perf_counter() + min_time
    pc = time.perf_counter_ns
    while (len(times) < min_reps or time.perf_counter() < t_end) and len(times) < max_reps:
        t0 = pc()
        fn()
        times.append(pc() - t0)
    a = np.asarray(times, dtype=np.float64) / 1e6
    return {"median_ms": float(np.median(a)), "p99_ms": float(np.percentile(a, 99)),
            "min_ms": float(a.min()), "mean_ms": float(a.mean()), "reps": int(a.size)}


# -- kernels -------------------------------------------------------------------------------------
# Each factory returns a zero-argument callable that runs the kernel once, or raises SkipKernel.

def _one_thread():
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:
        pass
    try:
        import numba
        numba.set_num_threads(1)
    except (ImportError, ValueError):
        pass


def _features(n: int, seed: int = 0) -> np.ndarray:
    from rtsynth import spec
    rng = np.random.default_rng(seed)
    f = rng.random((n, spec.N_FEATURES)).astype(np.float32)
    f[:, 0] = rng.uniform(-0.5, 0.5, n)
    f[:, 2] = 1.0
    return f


def instrument_step(inst, batch: int):
    from rtsynth import spec
    inst.allocate(max(batch, 64))
    f = _features(batch)
    slots = np.arange(batch, dtype=np.int64)[::-1].copy()
    h = np.zeros((batch, spec.N_HARMONICS), np.float32)
    g = np.zeros((batch, spec.N_NOISE_BANDS), np.float32)
    return lambda: inst.step(f, slots, h, g)


def neural_default(kind: str):
    try:
        from rtsynth import spec
        from rtsynth.nn.neural import NeuralInstrument
        from rtsynth.nn.io import decoder_config
        from rtsynth.nn.model import Decoder
    except ImportError as e:
        raise SkipKernel(f"rtsynth.nn not available ({e})")
    d = Decoder(kind)
    cfg = {"architecture": decoder_config(d), "hop": spec.HOP, "sample_rate": spec.SAMPLE_RATE}
    return NeuralInstrument(d, cfg, kind)


def fast_gru_step(batch: int):
    """The nn engineer's NumPy real-time path for one-layer GRU decoders (rtsynth.nn.fast)."""
    try:
        from rtsynth import spec
        from rtsynth.nn.fast import FastGRUDecoder
        from rtsynth.nn.model import Decoder
    except ImportError as e:
        raise SkipKernel(f"rtsynth.nn.fast not available ({e})")
    d = Decoder("gru")
    fast = FastGRUDecoder(d, max(batch, 64))
    f = _features(batch)
    z = np.zeros((batch, getattr(fast, "z_dim", 0) or 0), np.float32) if getattr(
        fast, "z_dim", 0) else None
    slots = np.arange(batch, dtype=np.int64)[::-1].copy()
    h = np.zeros((batch, spec.N_HARMONICS), np.float32)
    g = np.zeros((batch, spec.N_NOISE_BANDS), np.float32)
    return lambda: fast.step(f, z, slots, h, g)


def shipped_models() -> list[str]:
    try:
        from rtsynth.instruments import available_instruments
        return [m for m in available_instruments() if m != "basic"]
    except Exception:  # noqa: BLE001
        return []


def load(name: str):
    try:
        from rtsynth.instruments import load_instrument
    except ImportError as e:
        raise SkipKernel(f"rtsynth.instruments not available ({e})")
    return load_instrument(name)


def held_engine(voices: int, instrument="basic", reverb: float = 0.12, settle_blocks: int = 40):
    """An engine with ``voices`` held notes, past their attack."""
    try:
        from rtsynth.engine import Engine
    except ImportError as e:
        raise SkipKernel(f"rtsynth.engine not available ({e})")
    inst = load(instrument) if isinstance(instrument, str) else instrument
    eng = Engine(inst, sample_rate=SR, block=BLOCK, n_slots=voices, reverb=reverb)
    if hasattr(eng, "warmup"):
        eng.warmup()
    for i in range(voices):
        ch = (i // 64) % 16
        eng.push(eng.time + i, bytes([0x90 | ch, 36 + (i * 5) % 64, 100]))
    for _ in range(settle_blocks):
        eng.render()
    av = eng.active_voices
    av = av() if callable(av) else av
    if av < voices:
        raise SkipKernel(f"only {av} of {voices} voices active")
    return eng


def _captured_render_voices(eng):
    """Render one block of ``eng`` and return the arguments it passed ``render_voices`` (the
    last call) and the kernel itself, so a benchmark calls it exactly as the engine does."""
    try:
        import rtsynth.engine as engine_mod
        real = engine_mod.render_voices
    except (ImportError, AttributeError) as e:
        raise SkipKernel(f"the engine does not call render_voices ({e})")
    captured = []

    def spy(*args):
        captured.append(args)
        return real(*args)
    engine_mod.render_voices = spy
    try:
        eng.render()
    finally:
        engine_mod.render_voices = real
    if not captured:
        raise SkipKernel("Engine.render did not call render_voices")
    return captured[-1], real


def synth_kernel(voices: int, part: str):
    """The synthesis kernel alone (``rtsynth.dsp.synth.render_voices``), called with exactly the
    arguments the engine passes it (captured from one ``Engine.render``, so this hook follows
    the kernel's signature as it changes), on a held engine's state: ``harm`` (oscillator bank:
    noise gains zeroed), ``noise`` (harmonic amplitudes zeroed) or ``both``."""
    eng = held_engine(voices, reverb=0.0)
    args, real = _captured_render_voices(eng)
    zero = {"harm": ("prev_g", "cur_g", "new_g"), "noise": ("prev_h", "cur_h", "new_h")}
    for name in zero.get(part, ()):
        a = getattr(eng, name, None)
        if a is None:
            raise SkipKernel(f"Engine.{name} not found: cannot isolate the {part} part")
        a[:] = 0
    if hasattr(eng, "n_new"):
        eng.n_new[:] = 0
    if hasattr(eng, "start_off"):
        eng.start_off[:] = 0
    out = next((a for a in args if isinstance(a, np.ndarray) and a.ndim == 2
                and a.shape[1] == 2 and a.dtype == np.float32), None)

    def run():
        if out is not None:
            out[:] = 0.0
        real(*args)
    run()
    return run


SYNTH_BLOCK = 2048


def synth_args(voices: int, block: int = SYNTH_BLOCK):
    """The arguments the engine passes ``render_voices`` for ``voices`` held low notes (all 64
    harmonics below the Nyquist cut), captured from one ``Engine.render`` of ``block`` frames;
    new frames and note starts cleared, so repeated calls hold the controls."""
    try:
        from rtsynth.engine import Engine
    except ImportError as e:
        raise SkipKernel(f"rtsynth.engine not available ({e})")
    eng = Engine(load("basic"), sample_rate=SR, block=block, n_slots=voices, reverb=0.0)
    for i in range(voices):
        # notes 28..51 (f0 <= 185 Hz): 64 harmonics stay below 0.98 Nyquist
        eng.push(eng.time + i, bytes([0x90 | (i % 16), 28 + (i * 5) % 24, 100]))
    for _ in range(3):
        eng.render()
    args, real = _captured_render_voices(eng)
    if int(np.sum(eng.active)) < voices:
        raise SkipKernel(f"only {int(np.sum(eng.active))} of {voices} voices active")
    eng.n_new[:] = 0
    eng.start_off[:] = 0
    return list(args), real


def synth_voice_sample(voices: int):
    """The synthesis kernel on ``voices`` held low notes; the row gets ``ns_per_voice_sample``."""
    args, kernel = synth_args(voices)
    out = args[-2]

    def run():
        out[:] = 0.0
        kernel(*args)
    run()
    run.voice_samples = voices * args[0]
    return run


def load_synth_module(path: str):
    """``render_voices`` of another copy of ``rtsynth/dsp/synth.py`` (compiled here, uncached)."""
    import types
    from rtsynth import jit
    src = Path(path).read_text().replace("cache=True", "cache=False")
    mod = types.ModuleType("synth_baseline")
    mod.__file__ = str(path)
    mod.__package__ = "rtsynth.dsp"           # its relative imports (rtsynth.jit)
    cache = jit._DEFAULT_OPTIONS["cache"]
    jit._DEFAULT_OPTIONS["cache"] = False     # a copy must not write the real module's cache
    try:
        exec(compile(src, str(path), "exec"), mod.__dict__)
    finally:
        jit._DEFAULT_OPTIONS["cache"] = cache
    return mod.render_voices


def compare_synth(baseline: str, voices=(8, 32, 64), reps: int = 41, log=print) -> list[dict]:
    """Time the current kernel and ``baseline``'s on the same state, calls alternating (each on
    its own copy of the arguments): median ns per voice-sample of both and their ratio."""
    _one_thread()
    old = load_synth_module(baseline)
    rows = []
    for v in voices:
        args, new = synth_args(v)
        a_new = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
        a_old = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
        ts = {"new": [], "old": []}
        for fn, a in ((new, a_new), (old, a_old)):
            for _ in range(3):
                fn(*a)
        pc = time.perf_counter_ns
        for _ in range(reps):
            for name, fn, a in (("new", new, a_new), ("old", old, a_old)):
                a[-2][:] = 0.0
                t0 = pc()
                fn(*a)
                ts[name].append(pc() - t0)
        n = v * args[0]
        row = {"voices": v, "block": args[0],
               "new_ns_per_voice_sample": float(np.median(ts["new"])) / n,
               "old_ns_per_voice_sample": float(np.median(ts["old"])) / n}
        row["speedup"] = row["old_ns_per_voice_sample"] / row["new_ns_per_voice_sample"]
        # same sound: one more call of each on identical state
        b_new = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
        b_old = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
        new(*b_new)
        old(*b_old)
        row["max_abs_diff"] = float(np.max(np.abs(b_new[-2] - b_old[-2])))
        rows.append(row)
        if log:
            log(f"synthesis kernel {v:3d} voices x {args[0]}: new {row['new_ns_per_voice_sample']:7.2f}"
                f" ns/voice-sample, baseline {row['old_ns_per_voice_sample']:7.2f}"
                f"  -> {row['speedup']:.2f}x  (max |diff| {row['max_abs_diff']:.1e})")
    return rows


def _deep_copy(a):
    """A copy of a kernel argument: arrays copied, tuples (the bundles) element by element."""
    if isinstance(a, np.ndarray):
        return a.copy()
    if isinstance(a, tuple):
        items = [_deep_copy(x) for x in a]
        return type(a)(*items) if hasattr(a, "_fields") else tuple(items)
    return a


def capture_render_calls(midi: str, instrument: str = "flute-life", every: int = 97,
                         sample_rate: int = SR) -> list[tuple]:
    """The arguments of every ``every``-th ``render_voices`` call (with a voice) of a whole
    offline render of ``midi`` (as ``rtsynth render MIDI -i INSTRUMENT``: 8192-frame blocks,
    both threads' slot ranges), copied before the call: real voices, controls, moving pitch."""
    import tempfile
    import threading
    try:
        import rtsynth.engine.block as blk
        from rtsynth import cli
    except ImportError as e:
        raise SkipKernel(f"rtsynth.engine not available ({e})")
    real = blk.render_voices
    snaps: list[tuple] = []
    count = [0]
    lock = threading.Lock()

    def spy(*args):
        lo, hi, vs = args[3], args[4], args[5]
        with lock:
            i = count[0]
            count[0] += 1
        if i % every == every // 2 and int(vs.active[lo:hi].sum()) > 0:
            snap = _deep_copy(tuple(args))
            with lock:
                snaps.append(snap)
        return real(*args)
    blk.render_voices = spy
    try:
        with tempfile.TemporaryDirectory() as d:
            rc = cli.main(["render", midi, "-o", str(Path(d) / "x.wav"), "-i", instrument,
                           "-r", str(sample_rate)])
    finally:
        blk.render_voices = real
    if rc != 0 or not snaps:
        raise SkipKernel(f"rtsynth render {midi} failed (rc {rc}) or rendered no voice")
    return snaps


def replay_synth(snaps: list[tuple], baselines=(), reps: int = 9, log=print) -> list[dict]:
    """The current ``render_voices`` and each baseline file's (``load_synth_module``) on the
    captured calls, interleaved call by call (the order rotating each round), each call on a
    fresh copy of its arguments, timed in thread CPU time (a busy machine's preemption left
    out): ns per voice-sample from the sum of each call's minimum and of its median over the
    rounds, the ratio to the current kernel, and the largest output difference."""
    from rtsynth.dsp.synth import render_voices
    _one_thread()
    names = ["current", *baselines]
    fns = [render_voices, *(load_synth_module(b) for b in baselines)]
    outs = []
    for fn in fns:
        o = []
        for s in snaps:
            a = _deep_copy(s)
            fn(*a)
            o.append(a[-1][:a[0]].copy())
        outs.append(o)
    vsamp = sum(s[0] * int(s[5].active[s[3]:s[4]].sum()) for s in snaps)
    T = np.full((len(fns), len(snaps), reps), np.inf)
    tt = time.thread_time_ns
    for r in range(reps):
        for si, s in enumerate(snaps):
            order = list(range(len(fns)))
            k = r % len(fns)
            for i in order[k:] + order[:k]:
                a = _deep_copy(s)
                t0 = tt()
                fns[i](*a)
                T[i, si, r] = tt() - t0
    best = T.min(axis=2).sum(axis=1) / vsamp
    med = np.median(T, axis=2).sum(axis=1) / vsamp
    rows = []
    for i, name in enumerate(names):
        diff = max(float(np.max(np.abs(x - y))) for x, y in zip(outs[0], outs[i]))
        row = {"kernel": f"synthesis replay {name}", "calls": len(snaps),
               "ns_per_voice_sample_min": float(best[i]), "ns_per_voice_sample_median": float(med[i]),
               "ratio_min": float(best[i] / best[0]), "ratio_median": float(med[i] / med[0]),
               "max_abs_diff": diff}
        rows.append(row)
        if log:
            log(f"synthesis replay {name:30s} {best[i]:7.2f} ns/voice-sample (sum of minima, "
                f"x{best[i] / best[0]:.3f}), {med[i]:7.2f} (medians, x{med[i] / med[0]:.3f}), "
                f"max |diff| {diff:.1e}")
    return rows


def master_kernel():
    try:
        from rtsynth.dsp.effects import MasterState
    except ImportError as e:
        raise SkipKernel(f"rtsynth.dsp.effects not available ({e})")
    m = MasterState(SR, reverb=0.12)
    rng = np.random.default_rng(0)
    buf0 = (0.1 * rng.standard_normal((BLOCK, 2))).astype(np.float32)
    buf = buf0.copy()

    def run():
        buf[:] = buf0
        m.process(buf, 0.5)
    return run


def engine_block(voices: int, instrument="basic"):
    eng = held_engine(voices, instrument)
    return eng.render


def kernels(quick: bool = False) -> list[tuple[str, object]]:
    """``[(name, factory)]`` in display order."""
    from rtsynth.nn.arch import BACKBONES

    batches = [1, 8, 32, 64] if not quick else [1, 32]
    voices = [32, 64] if not quick else [32]
    out = []
    for kind in BACKBONES:
        for b in batches:
            out.append((f"model step {kind} (default size) x{b}",
                        lambda kind=kind, b=b: instrument_step(neural_default(kind), b)))
    for b in batches:
        out.append((f"model step gru numpy fast path (default size) x{b}",
                    lambda b=b: fast_gru_step(b)))
    for m in shipped_models():
        for b in batches:
            out.append((f"model step {m} x{b}", lambda m=m, b=b: instrument_step(load(m), b)))
    for b in batches:
        out.append((f"basic instrument step x{b}", lambda b=b: instrument_step(load("basic"), b)))
    for v in voices:
        out.append((f"oscillator bank {v} voices x {BLOCK}", lambda v=v: synth_kernel(v, "harm")))
        out.append((f"noise filter {v} voices x {BLOCK}", lambda v=v: synth_kernel(v, "noise")))
        out.append((f"harmonic+noise {v} voices x {BLOCK}", lambda v=v: synth_kernel(v, "both")))
    for v in ([8, 32, 64] if not quick else [32]):
        out.append((f"synthesis kernel {v} voices x {SYNTH_BLOCK}, all harmonics",
                    lambda v=v: synth_voice_sample(v)))
    out.append((f"master chain (reverb, DC, limiter) {BLOCK}", master_kernel))
    for v in voices:
        out.append((f"engine block basic {v} voices", lambda v=v: engine_block(v, "basic")))
        for m in shipped_models()[: (1 if quick else None)]:
            out.append((f"engine block {m} {v} voices", lambda v=v, m=m: engine_block(v, m)))
    return out


def run_all(quick: bool = False, pattern: str | None = None, min_time: float | None = None,
            log=print) -> list[dict]:
    _one_thread()
    rows = []
    for name, factory in kernels(quick):
        if pattern and pattern.lower() not in name.lower():
            continue
        row = {"kernel": name}
        try:
            fn = factory()
            row.update(measure(fn, min_time=min_time or (0.3 if quick else 1.0)))
            row["block_share"] = row["median_ms"] / BUDGET_MS
            if getattr(fn, "voice_samples", None):
                row["ns_per_voice_sample"] = row["median_ms"] * 1e6 / fn.voice_samples
        except SkipKernel as e:
            row["skipped"] = str(e)
        except Exception as e:  # noqa: BLE001 - report and go on
            row["error"] = f"{type(e).__name__}: {e}"
        rows.append(row)
        if log:
            if "ns_per_voice_sample" in row:
                log(f"{name:48s} median {row['median_ms']:8.4f} ms  p99 {row['p99_ms']:8.4f} ms"
                    f"  ({row['ns_per_voice_sample']:6.2f} ns per voice-sample)")
            elif "median_ms" in row:
                log(f"{name:48s} median {row['median_ms']:8.4f} ms  p99 {row['p99_ms']:8.4f} ms"
                    f"  ({100 * row['block_share']:5.1f}% of a {BLOCK}-frame block)")
            else:
                log(f"{name:48s} {row.get('skipped') or row.get('error')}")
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer sizes, shorter timing")
    ap.add_argument("-k", default=None, help="only kernels whose name contains this")
    ap.add_argument("--min-time", type=float, default=None, help="seconds of timing per kernel")
    ap.add_argument("--json", default=None, help="write the rows to this JSON file")
    ap.add_argument("--synth-baseline", default=None, metavar="PATH",
                    help="also time this file's render_voices against the current one, "
                         "side by side (8/32/64 voices, 2048-frame blocks)")
    ap.add_argument("--synth-replay", default=None, metavar="MIDI",
                    help="only: capture render_voices calls of `rtsynth render MIDI -i "
                         "--replay-instrument` and replay them, the current kernel against "
                         "--synth-baseline's (thread CPU time, calls interleaved)")
    ap.add_argument("--replay-instrument", default="flute-life")
    ap.add_argument("--replay-every", type=int, default=97, help="capture every N-th call")
    ap.add_argument("--replay-rounds", type=int, default=9)
    a = ap.parse_args(argv)
    if a.synth_replay:
        snaps = capture_render_calls(a.synth_replay, a.replay_instrument, a.replay_every)
        rows = replay_synth(snaps, [a.synth_baseline] if a.synth_baseline else [],
                            a.replay_rounds)
    else:
        rows = run_all(a.quick, a.k, a.min_time)
    if a.synth_baseline and not a.synth_replay:
        rows += [{"kernel": "synthesis kernel vs baseline", **r}
                 for r in compare_synth(a.synth_baseline)]
    if a.json:
        meta = {"machine": platform.machine(), "cpus": os.cpu_count(),
                "python": platform.python_version(), "block": BLOCK, "sample_rate": SR,
                "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        Path(a.json).write_text(json.dumps({"meta": meta, "kernels": rows}, indent=1))
    return 1 if any("error" in r for r in rows) else 0


# -- pytest-benchmark entry (run apart: pytest tools/bench_kernels.py --benchmark-only) --------

def _pytest_params():
    try:
        return kernels(quick=os.environ.get("RTSYNTH_BENCH_QUICK") == "1")
    except Exception:  # noqa: BLE001
        return []


try:
    import pytest

    _PARAMS = _pytest_params()

    @pytest.mark.parametrize("kernel", _PARAMS, ids=[n for n, _ in _PARAMS])
    def test_kernel(benchmark, kernel):
        name, factory = kernel
        _one_thread()
        try:
            fn = factory()
        except SkipKernel as e:
            pytest.skip(str(e))
        benchmark.pedantic(fn, warmup_rounds=20, rounds=200, iterations=1)
except ImportError:  # pragma: no cover
    pass


if __name__ == "__main__":
    sys.exit(main())
