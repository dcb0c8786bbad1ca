"""Build the ahead-of-time compiled kernels: ``python -m rtsynth.aot`` (see :mod:`rtsynth.jit`).

1. imports every kernel module with the JIT (``RTSYNTH_JIT=1``) and runs a workload through
   everything that calls a kernel: the live engine and the offline one, with the DSP instrument
   and a model of each backbone (CNN, GRU, attention, and a CNN with a timbre code), notes,
   chords, steals, bend, CCs, sustain, kills, with and without the master chain;
2. takes the argument types each kernel was called with (``dispatcher.nopython_signatures``):
   those are the types the engine passes, so the build follows the code as it changes;
3. compiles them all, with each kernel's own Numba options (``nogil``, ``fastmath``,
   ``error_model``, ``boundscheck``) and for this machine's CPU, with Numba's AOT compiler
   (``numba.pycc``; needs a C compiler for its small C runtime) into one extension module
   ``rtsynth/_kernels*.so``, and writes ``rtsynth/_kernels.json`` (the sources' hash and each
   kernel's argument types, for the run-time checks).

``--if-needed``: build only when the module is missing or stale; a failed build then prints why
and exits 0 (the kernels run on the JIT: slower to start, the same results). ``setup.sh`` runs
it that way.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

#: a model of each backbone, and one with a ``life`` table (rtsynth.nn.life: its per-voice
#: pitch movement kernel)
WORKLOAD_MODELS = ("flute", "flute-gru", "flute-attention", "morph", "violin-life")


def _workload(log) -> None:
    """Call every kernel the way the program does (see the module docstring)."""
    import numpy as np

    from rtsynth import render
    from rtsynth.engine import Engine
    from rtsynth.instruments import InstrumentError, load_instrument

    names = ["basic"]
    for m in WORKLOAD_MODELS:
        try:
            load_instrument(m)
            names.append(m)
        except InstrumentError as e:
            log(f"aot: workload without {m}: {e}")

    def play(eng, blocks=6):
        t = eng.time
        for i in range(eng.n_slots + 3):                  # a chord that steals
            eng.push(t + (i * 5) % eng.block, (0x90 | (i % 3), 40 + i % 40, 100))
        eng.push(t + 3, (0xE0, 0, 80))
        eng.push(t + 4, (0xB0, 1, 90))
        eng.push(t + 5, (0xB0, 7, 90))
        eng.push(t + 6, (0xD0, 60))
        eng.push(t + 7, (0xA0, 41, 70))                   # per-note expression
        eng.push(t + 8, (0xB0, 2, 50))
        eng.push(t + 9, (0xB0, 74, 100))
        for j, m in enumerate(((0xB0, 101, 0), (0xB0, 100, 6), (0xB0, 6, 3), (0xE1, 0, 90),
                               (0x91, 70, 90), (0xD1, 80), (0xB0, 101, 0), (0xB0, 100, 0),
                               (0xB1, 6, 24), (0xE0, 0, 30), (0xB0, 64, 127))):
            eng.push(t + 10 + j, m)                       # an MPE zone and a member's note
        for _ in range(blocks):
            eng.render()
        eng.push(eng.time, (0xB0, 64, 127))
        eng.push(eng.time + 1, (0xB0, 123, 0))
        eng.push(eng.time + 2, (0xB0, 64, 0))
        eng.push(eng.time + 3, (0xB0, 120, 0))
        for _ in range(blocks):
            eng.render()
        assert eng.active_voices >= 0

    for name in names:
        for master in (True, False):
            inst = load_instrument(name)
            eng = Engine(inst, sample_rate=inst.sample_rate, block=128, n_slots=8,
                         master=master, timbre_cc=1 if name == "morph" else None)
            eng.warmup()
            play(eng)
        from rtsynth.engine.parallel import ParallelEngine
        for threads in (1, 2):                    # the live engine on two cores
            inst = load_instrument(name)
            par = ParallelEngine(inst, sample_rate=inst.sample_rate, block=128, n_slots=24,
                                 threads=threads)       # enough voices to split in parts
            par.warmup()
            play(par)
            par.close()
        for threads in (1, 2):
            inst = load_instrument(name)
            off = render.offline_engine(inst, sample_rate=inst.sample_rate, n_slots=8,
                                        threads=threads, block=1024)
            off.warmup()
            play(off, blocks=3)
            off.close()
    # the pieces called on their own (outside an engine block)
    from rtsynth.dsp.effects import pcm24, safety_clip
    safety_clip(np.zeros((4, 2), np.float32), 0.5, np.zeros(2, np.int64))
    pcm24(np.zeros((4, 2), np.float32), np.zeros(24, np.uint8))
    from rtsynth.nn.fast import _aot_workload      # the CNN's NumPy step (its fallback)
    _aot_workload(load_instrument("flute-lite"))
    # architectures no shipped model has: a GRU of two layers steps strided state views
    try:
        from rtsynth.nn.fast import fast_decoder
        from rtsynth.nn.model import Decoder
    except ImportError as e:                     # torch missing: the JIT covers those
        log(f"aot: workload without the multi-layer GRU ({e})")
        return
    for kind, kw in (("gru", {"hidden": 32, "layers": 2}),):
        dec = fast_decoder(Decoder(kind, kw, z_dim=0).eval(), 4, max_rows=16)
        for slots in ([0], [0, 1, 2], [0, 1, 0, 1, 0]):
            s = np.array(slots, np.int64)
            f = np.zeros((len(s), dec.w_pre.shape[0]), np.float32)
            dec.step(f, None, s, np.zeros((len(s), dec.k), np.float32),
                     np.zeros((len(s), len(dec.b_head) - 1 - dec.k), np.float32))


def _plain(sigs) -> list:
    """The dispatcher's signatures without literal types, each once. A JIT that compiled a call
    with a literal argument (``Literal[int](0)``: Numba retries a call with literal values when
    its first typing fails) holds a version specialised to that value; the run-time check sees
    only "an int", so that version would run for every value (a fresh build's cnn_ring took
    ``rows_per_slot`` as 0 for every call, and the CNN's NumPy step wrote every slot's cache
    into slot 0's rows)."""
    from numba.core import types
    from numba.core.typing import signature
    out, seen = [], set()
    for s in sigs:
        args = tuple(types.unliteral(a) for a in s.args)
        if args not in seen:
            seen.add(args)
            out.append(signature(s.return_type, *args))
    return out


def _signatures(log) -> dict:
    from rtsynth import jit
    out = {}
    missing = []
    for k in jit.registry():
        if not k.exported:
            continue
        d = k.dispatcher
        sigs = _plain(d.nopython_signatures) if d is not None else []
        if not sigs:
            missing.append(k.key)
            continue
        out[k.key] = (k, sigs)
    if missing:
        raise RuntimeError("the build workload does not call these kernels: "
                           + ", ".join(missing) + " (add them to rtsynth.aot._workload)")
    return out


def build(out_dir: Path | None = None, log=print) -> Path:
    """Build the module into the package (or ``out_dir``); returns its path."""
    os.environ["RTSYNTH_JIT"] = "1"
    from rtsynth import jit
    if jit.status()["mode"] != "jit":
        raise RuntimeError("rtsynth.jit was loaded in compiled mode before the build started")
    for mod in ("engine", "engine.parallel", "instruments.basic", "render", "dsp.synth",
                "dsp.effects", "nn.fast", "nn.fast_kernels", "nn.life"):
        __import__(f"rtsynth.{mod}")
    t0 = time.perf_counter()
    _workload(log)
    kernels = _signatures(log)
    log(f"aot: {len(kernels)} kernels, signatures from the workload in "
        f"{time.perf_counter() - t0:.1f} s; compiling")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import numba
        import numba.pycc.compiler as pcc
        from numba.core.cpu import FastMathOptions
        from numba.pycc import CC

    options = {}
    for key, (k, _) in kernels.items():
        options[k.py_func] = k.options
    stats = jit.source_stats()           # before the hash: a file changed since differs
    h = jit.source_hash()
    hint = jit.hash_int(h)

    def build_hash():
        return hint
    options[build_hash] = {}

    real_compile = pcc.compile_extra

    def compile_extra(typingctx, targetctx, func, args, return_type, flags, locals, **kw):
        # pycc compiles with default flags: give each kernel its own Numba options
        o = options.get(func, {})
        flags.release_gil = bool(o.get("nogil", False))
        flags.fastmath = FastMathOptions(o.get("fastmath", False))
        flags.error_model = o.get("error_model", "python")
        flags.boundscheck = bool(o.get("boundscheck", False))
        return real_compile(typingctx, targetctx, func, args, return_type, flags, locals, **kw)

    pkg = Path(jit.__file__).resolve().parent
    dest = Path(out_dir) if out_dir else pkg
    tmp = Path(tempfile.mkdtemp(prefix="rtsynth-aot-"))
    spec = {"hash": h, "stat": stats, "numba": numba.__version__, "kernels": {}}
    try:
        pcc.compile_extra = compile_extra
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cc = CC(jit.EXTENSION, source_module="rtsynth.jit")
            cc.output_dir = str(tmp)
            cc.target_cpu = "host"
            cc.export("build_hash", "i8()")(build_hash)
            for key, (k, sigs) in kernels.items():
                spec["kernels"][key] = [[list(jit._arg_spec(t)) for t in s.args] for s in sigs]
                for i, s in enumerate(sigs):
                    cc.export(f"{key}__{i}", s)(k.py_func)
            # the kernels' argument checks compiled (as the spec's JSON gives their sigs)
            spec["checks"] = jit.check_codes(json.loads(json.dumps(spec["kernels"])))
            t1 = time.perf_counter()
            cc.compile()
        built = tmp / cc.output_file
        dest.mkdir(parents=True, exist_ok=True)
        final = dest / cc.output_file
        spec_tmp = dest / (jit.SPEC_FILE.name + ".tmp")
        # the module first, then the spec that makes it current (a reader never sees a spec
        # that names a module that is not there yet)
        so_tmp = dest / (cc.output_file + ".tmp")
        shutil.copyfile(built, so_tmp)
        os.replace(so_tmp, final)
        spec_tmp.write_text(json.dumps(spec, indent=1) + "\n")
        os.replace(spec_tmp, dest / jit.SPEC_FILE.name)
    finally:
        pcc.compile_extra = real_compile
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"aot: compiled {sum(len(s) for _, s in kernels.values())} kernel signatures into "
        f"{final} in {time.perf_counter() - t1:.1f} s")
    return final


def is_current() -> tuple[bool, str]:
    """Whether the built module matches the sources (without loading any kernel)."""
    from rtsynth import jit
    try:
        spec = json.loads(jit.SPEC_FILE.read_text())
    except (OSError, ValueError):
        return False, "not built"
    if not jit._sources_unchanged(spec) and spec.get("hash") != jit.source_hash():
        return False, "stale"
    pkg = jit.SPEC_FILE.parent
    if not any(pkg.glob(f"{jit.EXTENSION}.*.so")) and not any(pkg.glob(f"{jit.EXTENSION}.*.pyd")):
        return False, "module file missing"
    return True, "current"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m rtsynth.aot", description=__doc__.split("\n")[0])
    p.add_argument("--if-needed", action="store_true",
                   help="build only when missing or stale; on failure say why and exit 0")
    p.add_argument("--check", action="store_true",
                   help="exit 0 when the built module is current, 1 otherwise; build nothing")
    args = p.parse_args(argv)
    ok, why = is_current()
    if args.check:
        print(f"rtsynth kernels: {why}")
        return 0 if ok else 1
    if args.if_needed and ok:
        return 0
    try:
        build()
    except Exception as e:  # noqa: BLE001 - any failure: the JIT still works
        if not args.if_needed:
            raise
        print(f"aot: could not build the compiled kernels ({type(e).__name__}: {e}); "
              "rtsynth will use the Numba JIT (slower start-up, same results)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
