"""The ahead-of-time compiled kernels (rtsynth.jit, rtsynth.aot): used when built, no Numba at
run time, the same samples as the JIT, and a call with unexpected argument types goes to the JIT
instead of reading memory wrongly."""

import ast
import importlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

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


def test_stale_or_missing_builds_fall_back_to_the_jit(tmp_path):
    cache = str(tmp_path / "numba")      # (the fake hash would name a cache folder of its own)
    r = run_py("""
        from rtsynth import jit
        jit.source_hash = lambda: "0" * 16          # as if a kernel source had changed
        jit.source_stats = lambda: [["jit.py", 1, 1]]
        from rtsynth import engine
        import sys
        print(jit.status()["mode"], "numba" in sys.modules, jit.status()["why"].split(":")[0])
    """, NUMBA_CACHE_DIR=cache)
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


# ------------------------------------------------------------------ the JIT's on-disk cache
#: one kernel that reads another module's globals at compile time: instruments/basic.py's
#: _basic_step calls spec.midi_to_hz_scalar (spec.A4_HZ) and reads spec.PITCH_SPAN
BASIC_STEP = """
    import json, sys, numpy as np
    from rtsynth import jit
    from rtsynth.instruments.basic import _basic_step
    f = np.zeros((5, 7), np.float32)
    f[:, 0] = np.linspace(-1.0, 1.5, 5)
    f[:, 1] = 0.8
    f[:, 2] = 1.0
    h = np.zeros((5, 64), np.float32)
    n = np.zeros((5, 20), np.float32)
    _basic_step(f, h, n, 48000.0, 0.95, 1200.0)
    st = _basic_step.stats
    print(json.dumps({"mode": jit.status()["mode"], "cache": jit.status().get("cache"),
                      "path": st.cache_path, "hits": sum(st.cache_hits.values()),
                      "misses": sum(st.cache_misses.values()), "harm": h.tolist()}))
"""


def _package_copy(tmp_path):
    """The package's sources in a folder of their own (no bytecode, no JIT cache, no build)."""
    root = tmp_path / "src"
    shutil.copytree(jit.PACKAGE_DIR, root / "rtsynth",
                    ignore=shutil.ignore_patterns("__pycache__", f"{jit.EXTENSION}*"))
    return root


def _run_copy(root, tmp_path, code=BASIC_STEP, **env):
    e = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    e.update(PYTHONPATH=str(root), RTSYNTH_JIT="1", XDG_CACHE_HOME=str(tmp_path / "xdg"),
             PYTHONDONTWRITEBYTECODE="1", **env)
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                       text=True, env=e, timeout=120, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["mode"] == "jit"
    assert Path(out["path"]).resolve().is_relative_to(tmp_path.resolve()), out["path"]
    return out


def _edit(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_the_jit_cache_follows_a_constant_of_another_module(tmp_path):
    """Numba keys a kernel's cache on its own file: a constant it reads from another module
    (compiled into it) changed, and the old machine code was loaded. rtsynth's cache folder is
    keyed on the hash of every kernel source (jit.SOURCES), as the compiled module is."""
    root = _package_copy(tmp_path)
    first = _run_copy(root, tmp_path)
    assert first["misses"] == 1 and first["hits"] == 0          # compiled, saved
    again = _run_copy(root, tmp_path)
    assert again["hits"] == 1 and again["misses"] == 0          # loaded, not compiled again
    assert again["harm"] == first["harm"]
    _edit(root / "rtsynth" / "spec.py", "A4_HZ = 440.0", "A4_HZ = 466.1637615180899")
    changed = _run_copy(root, tmp_path)
    # the reference: the same sources compiled in a cache of its own (nothing to load)
    fresh = _run_copy(root, tmp_path, NUMBA_CACHE_DIR=str(tmp_path / "fresh"))
    assert fresh["misses"] == 1 and fresh["hits"] == 0
    assert fresh["harm"] != first["harm"]                       # the constant matters
    assert changed["harm"] == fresh["harm"], "a stale kernel (the old A4_HZ) was loaded"
    assert changed["misses"] == 1
    assert _run_copy(root, tmp_path)["hits"] == 1               # the new state's cache


def test_the_jit_cache_keeps_a_few_states_and_moves_out_of_a_read_only_package(tmp_path):
    """Each source state's cache is a folder of its own: making one removes all but the
    CACHE_KEEP last used (and Numba's old files beside the sources); where the package's
    __pycache__ cannot hold it, it goes to the user's cache folder, and is used from there."""
    root = _package_copy(tmp_path)
    pkg = root / "rtsynth"
    spec_py = pkg / "spec.py"
    legacy = pkg / "instruments" / "__pycache__" / "basic._basic_step-46.py311.nbi"
    legacy.parent.mkdir()
    legacy.write_bytes(b"")                    # where Numba kept its files before
    dirs = []
    for i in range(jit.CACHE_KEEP + 2):
        if i:
            spec_py.write_text(spec_py.read_text() + f"# state {i}\n")
        out = _run_copy(root, tmp_path)
        assert out["misses"] == 1, out           # a state of its own: compiled
        d = Path(out["cache"])
        assert d.parent == pkg / "__pycache__" and d.name.startswith("numba-"), d
        assert Path(out["path"]).parent == d
        dirs.append(d)
        assert not legacy.exists()
        time.sleep(0.05)                         # distinct last-used times
    assert len(set(dirs)) == len(dirs)
    kept = sorted(p for p in (pkg / "__pycache__").iterdir() if p.name.startswith("numba-"))
    assert kept == sorted(dirs[-jit.CACHE_KEEP:])          # the newest, the rest removed
    # a kept state comes back: its kernels load, nothing removed
    spec_py.write_text(spec_py.read_text().replace(f"# state {len(dirs) - 1}\n", ""))
    out = _run_copy(root, tmp_path)
    assert Path(out["cache"]) == dirs[-2] and out["hits"] == 1 and out["misses"] == 0
    assert len([p for p in (pkg / "__pycache__").iterdir() if p.name.startswith("numba-")]) \
        == jit.CACHE_KEEP
    # the package's __pycache__ cannot be written (a file there: not even root can make it a
    # folder): the user's cache folder
    shutil.rmtree(pkg / "__pycache__")
    (pkg / "__pycache__").write_bytes(b"")
    out = _run_copy(root, tmp_path)
    d = Path(out["cache"])
    assert d.parent == tmp_path / "xdg" / "rtsynth" / "numba", d
    assert out["misses"] == 1
    out = _run_copy(root, tmp_path)
    assert Path(out["cache"]) == d and out["hits"] == 1 and out["misses"] == 0


def test_the_builds_jit_kernels_are_the_cache_of_its_sources():
    """setup.sh's build compiles the workload on the JIT first: into the cache folder of the
    very sources it is built from (the same hash), so a later JIT run loads those kernels
    instead of compiling them a second time."""
    spec = _spec()
    if not aot.is_current()[0] or spec is None or os.environ.get("NUMBA_CACHE_DIR"):
        pytest.skip("needs a current build, in the package's own cache")
    r = run_py("""
        import json, numpy as np
        from rtsynth import engine, jit
        out = np.zeros((4, 2), np.float32)
        engine._add_into(out, np.ones((4, 2), np.float32), 3)
        st = engine._add_into.stats
        print(json.dumps([jit.status()["cache"], sum(st.cache_hits.values()),
                          sum(st.cache_misses.values()), out[:, 0].tolist()]))
    """, RTSYNTH_JIT="1")
    assert r.returncode == 0, r.stderr
    cache, hits, misses, col = json.loads(r.stdout.strip().splitlines()[-1])
    assert cache == str(jit.PACKAGE_DIR / "__pycache__" / f"numba-{spec['hash']}")
    assert (hits, misses) == (1, 0)
    assert col == [1.0, 1.0, 1.0, 0.0]


def _code_names(code) -> set:
    out = set(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            out |= _code_names(c)
    return out


def _imported_from(mod) -> dict:
    """``{name: module}`` of the ``from X import name`` statements of module ``mod``."""
    out = {}
    for node in ast.walk(ast.parse(Path(mod.__file__).read_text())):
        if isinstance(node, ast.ImportFrom):
            base = (importlib.util.resolve_name("." * node.level + (node.module or ""),
                                                mod.__package__)
                    if node.level else node.module)
            for a in node.names:           # (``from . import m``: module m itself)
                sub = f"{base}.{a.name}"
                out[a.asname or a.name] = sub if sub in sys.modules else base
    return out


def test_every_module_a_kernel_reads_is_a_source():
    """What a kernel compiles in (another module's constants, subkernels, a module's
    attributes) must come from jit.SOURCES: their hash names the JIT cache's folder and the
    compiled module's build, so a file outside them could change under a stale kernel."""
    for rel in jit.SOURCES:
        importlib.import_module("rtsynth." + rel[:-3].replace("/", "."))
    pkg = jit.PACKAGE_DIR
    sources = {(pkg / rel).resolve() for rel in jit.SOURCES}
    outside, n = set(), 0
    for k in jit.registry():
        if not k.module.startswith("rtsynth."):
            continue
        n += 1
        g = k.py_func.__globals__
        origin = _imported_from(sys.modules[k.module])
        assert Path(k.py_func.__code__.co_filename).resolve() in sources, k.key
        for name in _code_names(k.py_func.__code__) & set(g):
            v = g[name]
            files = []
            if isinstance(v, types.ModuleType):
                files.append(getattr(v, "__file__", None))
            elif (origin.get(name) or "").startswith("rtsynth"):
                files.append(getattr(sys.modules.get(origin[name]), "__file__", None))
            fn = getattr(v, "py_func", None) or getattr(v, "__wrapped__", None) or v
            if isinstance(fn, types.FunctionType):
                files.append(fn.__code__.co_filename)
            for f in files:
                if f and Path(f).resolve().is_relative_to(pkg) and Path(f).resolve() not in sources:
                    outside.add(f"{k.key} reads {name} from {f}")
    assert n > 90
    assert not outside, sorted(outside)


def test_a_kernel_whose_cache_folder_went_away_still_runs(tmp_path):
    """A process of newer sources may prune this one's cache folder while it runs: the kernel
    it then cannot save is still compiled and called (Numba's save raised out of the call)."""
    root = _package_copy(tmp_path)
    imp = "from rtsynth.instruments.basic import _basic_step\n"
    gone = BASIC_STEP.replace(imp, imp + "    import shutil\n    d = jit.cache_dir()\n"
                              "    shutil.rmtree(d)\n    d.write_bytes(b'')\n")
    assert gone != BASIC_STEP
    out = _run_copy(root, tmp_path, code=gone)
    assert out["misses"] == 1 and np.abs(np.array(out["harm"])).max() > 0
