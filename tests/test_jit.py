"""The ahead-of-time compiled kernels (rtsynth.jit, rtsynth.aot): used when built, no Numba at
run time, the same samples as the JIT, and a call with unexpected argument types goes to the JIT
instead of reading memory wrongly."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from rtsynth import aot, jit

HAVE_CC = shutil.which("cc") is not None or shutil.which("gcc") is not None


def run_py(code: str, **env) -> subprocess.CompletedProcess:
    e = {**os.environ, **env}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=e, timeout=600)


RENDER = """
    import sys, numpy as np
    from rtsynth import jit
    from rtsynth.instruments import load_instrument
    from rtsynth.render import demo_events, offline_engine, render_events
    from rtsynth.engine import Engine
    out = []
    for name in ("basic", "flute", "flute-gru", "flute-attention", "violin-life"):
        inst = load_instrument(name)
        out.append(render_events(offline_engine(inst, sample_rate=inst.sample_rate),
                                 demo_events()[:30], tail=0.5))
        inst = load_instrument(name)
        out.append(render_events(Engine(inst, sample_rate=inst.sample_rate, block=128),
                                 demo_events()[:30], tail=0.5))
    np.save(sys.argv[-1] if len(sys.argv) > 1 else OUT, np.concatenate(out))
    print(jit.status()["mode"], "numba" in sys.modules)
"""


def test_built_module_is_current_where_a_compiler_is():
    """setup.sh builds the module; where it can (a C compiler), it must be there and current."""
    ok, why = aot.is_current()
    if not HAVE_CC and not ok:
        pytest.skip(f"no C compiler here: the kernels run on the JIT ({why})")
    assert ok, f"compiled kernels {why}: run python -m rtsynth.aot"
    spec = json.loads(jit.SPEC_FILE.read_text())
    import importlib
    for rel in jit.SOURCES:                 # every kernel module, so every kernel is registered
        importlib.import_module("rtsynth." + rel[:-3].replace("/", "."))
    names = {k.key for k in jit.registry() if k.exported}
    assert "nn_life___rows" in names
    assert names <= set(spec["kernels"]), names - set(spec["kernels"])


def test_compiled_kernels_run_without_numba_and_give_the_jit_samples(tmp_path):
    if not aot.is_current()[0]:
        pytest.skip("compiled kernels not built")
    a = run_py(RENDER.replace("OUT", repr(str(tmp_path / "aot.npy"))))
    assert a.returncode == 0, a.stderr
    assert a.stdout.split() == ["aot", "False"], a.stdout + a.stderr   # Numba never imported
    j = run_py(RENDER.replace("OUT", repr(str(tmp_path / "jit.npy"))), RTSYNTH_JIT="1")
    assert j.returncode == 0, j.stderr
    assert j.stdout.split() == ["jit", "True"]
    x, y = np.load(tmp_path / "aot.npy"), np.load(tmp_path / "jit.npy")
    assert x.shape == y.shape and np.abs(x).max() > 0.01
    assert np.array_equal(x, y)


def test_a_call_with_other_argument_types_switches_to_the_jit():
    if not aot.is_current()[0]:
        pytest.skip("compiled kernels not built")
    r = run_py("""
        import warnings, numpy as np
        from rtsynth import engine, jit
        assert jit.status()["mode"] == "aot"
        out = np.zeros((4, 2), np.float32)
        engine._add_into(out, np.ones((4, 2), np.float32), 3)      # as built
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            wide = np.zeros((4, 2))                                 # float64: not built for
            engine._add_into(wide, np.ones((4, 2)), 4)
            strided = np.zeros((8, 2), np.float32)[::2]             # not C-contiguous
            engine._add_into(strided, np.ones((4, 2), np.float32), 4)
        print(out[:, 0].tolist(), wide[:, 1].tolist(), strided[:, 0].tolist())
        print(jit.status()["mode"], len(w), str(w[0].message) if w else "")
    """)
    assert r.returncode == 0, r.stderr
    first, second = r.stdout.strip().splitlines()
    assert first == "[1.0, 1.0, 1.0, 0.0] [1.0, 1.0, 1.0, 1.0] [1.0, 1.0, 1.0, 1.0]"
    mode, n, msg = second.split(" ", 2)
    assert mode == "jit" and n == "1"                # one warning, then everything is JIT
    assert "engine_offline___add_into" in msg and "float64" in msg


def _spec():
    try:
        return json.loads(jit.SPEC_FILE.read_text())
    except (OSError, ValueError):
        return None


@pytest.mark.skipif(not aot.is_current()[0] or not (_spec() or {}).get("stat"),
                    reason="needs a current build that records its sources' stats")
def test_the_sources_stats_decide_before_their_hash():
    """A build records its sources' size and mtime: when they are all the same at load, the
    sources are not read and hashed (nor hashlib imported: 3-4 ms of play's start-up); when
    one differs, the hash decides (a file touched but unchanged is still the build's)."""
    r = run_py("""
        import sys
        from rtsynth import jit
        calls = []
        real = jit.source_hash
        jit.source_hash = lambda: calls.append(1) or real()
        from rtsynth import engine
        print(jit.status()["mode"], len(calls), "hashlib" in sys.modules)
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["aot", "0", "False"]
    r = run_py("""
        from rtsynth import jit
        calls = []
        real = jit.source_hash
        jit.source_hash = lambda: calls.append(1) or real()
        st = jit.source_stats()
        st[0][1] += 1                                # as if touched
        jit.source_stats = lambda: st
        from rtsynth import engine
        print(jit.status()["mode"], len(calls))
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["aot", "1"]


@pytest.mark.skipif(not aot.is_current()[0] or "checks" not in (_spec() or {}),
                    reason="needs a current build with its checks' code")
def test_the_builds_check_code_is_the_same_as_compiling_it_here():
    """The build stores each kernel's argument check compiled (the ~50 compiles were ~6 ms of
    every start-up): each is there, and equals what compiling its source here gives."""
    r = run_py("""
        import importlib, json
        from rtsynth import jit
        for rel in jit.SOURCES:                      # every kernel defined
            importlib.import_module("rtsynth." + rel[:-3].replace("/", "."))
        assert jit.status()["mode"] == "aot", jit.status()
        spec = json.loads(jit.SPEC_FILE.read_text())
        n = 0
        for k in jit.registry():
            sigs = spec["kernels"].get(k.key)
            if not k.exported or not sigs:
                continue
            src = jit._check_source(k.name, sigs)
            code = jit._check_code(src)
            assert code is not None, k.key
            assert code == compile(src, "<string>", "exec", dont_inherit=True), k.key
            n += 1
        print(n, len(spec["kernels"]))
    """)
    assert r.returncode == 0, r.stderr
    n, total = map(int, r.stdout.split())
    assert n == total > 40


def test_stale_or_missing_builds_fall_back_to_the_jit():
    r = run_py("""
        from rtsynth import jit
        jit.source_hash = lambda: "0" * 16          # as if a kernel source had changed
        jit.source_stats = lambda: [["jit.py", 1, 1]]
        from rtsynth import engine
        import sys
        print(jit.status()["mode"], "numba" in sys.modules, jit.status()["why"].split(":")[0])
    """)
    assert r.returncode == 0, r.stderr
    if jit.SPEC_FILE.exists():
        assert r.stdout.split() == ["jit", "True", "stale"]
    else:
        assert r.stdout.split()[:2] == ["jit", "True"]
    r = run_py("from rtsynth import engine, jit; print(jit.status()['mode'])", RTSYNTH_JIT="1")
    assert r.stdout.strip() == "jit"


def test_the_build_compiles_no_literal_specialisation():
    """A JIT signature with a literal argument (Numba's retry with literal values) is built as
    the plain type, once: the run-time check cannot tell ``Literal[int](0)`` from another int,
    so a version specialised to 0 ran for every value (a fresh build's cnn_ring took
    rows_per_slot = 0 always)."""
    from numba.core import types
    from numba.core.typing import signature
    from rtsynth.aot import _plain
    arr = types.Array(types.float32, 1, "C")
    sigs = [signature(types.none, arr, types.IntegerLiteral(0)),
            signature(types.none, arr, types.int64),
            signature(types.none, arr, types.float64)]
    got = _plain(sigs)
    assert [tuple(s.args) for s in got] == [(arr, types.int64), (arr, types.float64)]
    assert all(s.return_type == types.none for s in got)
