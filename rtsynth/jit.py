"""rtsynth's Numba kernels, compiled ahead of time where they can be.

Every kernel is written once, in Numba's subset of Python, and decorated with :func:`kernel`
(called from Python) or :func:`subkernel` (called only from other kernels). At run time each
kernel is one of:

- **ahead-of-time compiled** (the default once built): the function of the same name in the
  extension module ``rtsynth/_kernels*.so``, which ``python -m rtsynth.aot`` builds from these
  very sources with Numba's AOT compiler (``setup.sh`` runs it; it needs a C compiler). Numba
  is then not imported at all;
- **a Numba JIT dispatcher** (``cache=True``): when that module is missing, was built from other
  kernel sources (its hash differs), or ``RTSYNTH_JIT=1`` is set. Its on-disk cache is a folder
  named after the same hash (:func:`cache_dir`): Numba's own check sees the kernel's file only,
  not the other modules' constants compiled into it.

Why: at start-up, importing Numba takes 0.16 s and its first dispatch of a cached kernel 0.35 s
(it sets up its type system), plus ~5 ms per kernel: more than FluidSynth needs to render the
bench's whole 25 s file. The compiled module imports in a few milliseconds; the kernels are the
same machine code (built for this CPU, with each kernel's Numba options), release the GIL the
same way, and give the same samples.

Safety: a compiled kernel takes exactly the argument types it was built for, and Numba's AOT
wrappers do not check array dtypes (a wrong one is read as raw memory). So every call checks its
arguments first (dtype, ndim, C-contiguity; ~0.15 us per array argument, about what the JIT's
own dispatch costs); a call that does not match switches *every* kernel to the JIT, with one
warning: slower from then on, never wrong. :func:`status` says which mode is running and why.
"""

from __future__ import annotations

import json
import operator
import os
import sys
import threading
import types
import warnings
from pathlib import Path
from typing import Any, Callable

PACKAGE_DIR = Path(__file__).resolve().parent
#: the files whose kernels (and the module constants those read) the compiled module is built
#: from, relative to the package; any change to one of them makes the build stale
SOURCES = ("jit.py", "spec.py", "engine/bank.py", "engine/block.py", "engine/channels.py",
           "engine/frames.py", "engine/offline.py", "engine/parallel.py", "engine/_sync.py",
           "instruments/basic.py", "dsp/synth.py",
           "dsp/effects.py", "nn/fast.py", "nn/fast_kernels.py", "nn/_blas.py", "nn/life.py")
EXTENSION = "_kernels"
SPEC_FILE = PACKAGE_DIR / "_kernels.json"

_DEFAULT_OPTIONS = {"cache": True, "nogil": True}


def source_hash() -> str:
    """Hash of :data:`SOURCES` (16 hex digits): what a build is checked against."""
    import hashlib                  # (OpenSSL's: 3-4 ms to import; only when the stats differ)
    h = hashlib.sha256()
    for rel in SOURCES:
        h.update(rel.encode())
        h.update((PACKAGE_DIR / rel).read_bytes())
    return h.hexdigest()[:16]


def source_stats() -> list[list]:
    """``[relative path, mtime in ns, size]`` of each of :data:`SOURCES`, as a build records
    them beside the hash: when they are all the same at load, the sources are the build's and
    are not read and hashed again (how Python checks its own bytecode against a source; an edit,
    a checkout or a copy changes them, and then the hash decides)."""
    out = []
    for rel in SOURCES:
        st = os.stat(PACKAGE_DIR / rel)
        out.append([rel, st.st_mtime_ns, st.st_size])
    return out


def _sources_unchanged(spec: dict) -> bool:
    try:
        return bool(spec.get("stat")) and spec["stat"] == source_stats()
    except OSError:
        return False


def hash_int(hex_hash: str) -> int:
    """The hash as the int64 the compiled module returns from ``build_hash()``."""
    return int(hex_hash[:15], 16)


class _Kernel:
    """One decorated function: its Python source, Numba options, and what callers get."""

    def __init__(self, fn: Callable, options: dict, exported: bool):
        self.py_func = fn
        self.options = {**_DEFAULT_OPTIONS, **options}
        self.exported = exported
        self.module = fn.__module__
        self.name = fn.__name__
        self.key = symbol_key(self.module, self.name)
        self.dispatcher = None        # the Numba JIT dispatcher, once made
        self.public: Any = None       # what the decorator returned (bound in the module)

    def jit(self):
        if self.dispatcher is None:
            import numba
            opts = dict(self.options)
            cache = opts.pop("cache", False)
            d = numba.njit(**opts)(self.py_func)
            if cache:
                _enable_cache(d)
            self.dispatcher = d
        return self.dispatcher


# ------------------------------------------------------------------ the JIT's on-disk cache
#: a cache root keeps the folders of this many source states (this one's and the last used
#: others: switching between branches does not recompile); older ones are removed
CACHE_KEEP = 3
_cache_state: dict[str, Any] = {}
_CACHE_LOCK = threading.Lock()


def _cache_roots() -> list[tuple[Path, str]]:
    """``(folder, prefix)`` of the places the JIT cache may go, in order: under Numba's own
    ``NUMBA_CACHE_DIR`` when it is set (then nowhere else), else the package's ``__pycache__``,
    else the user's cache folder (``$XDG_CACHE_HOME/rtsynth/numba`` or ``~/.cache/...``: a
    read-only install). A state's folder is ``prefix + source_hash()``."""
    import hashlib
    from numba.core import config
    tag = hashlib.sha1(str(PACKAGE_DIR).encode()).hexdigest()[:8]      # this checkout
    if config.CACHE_DIR:
        return [(Path(config.CACHE_DIR), f"rtsynth-{tag}-")]
    user = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return [(PACKAGE_DIR / "__pycache__", "numba-"), (Path(user) / "rtsynth" / "numba", f"{tag}-")]


def cache_dir() -> Path | None:
    """The folder of the JIT's on-disk cache for the kernel sources as they are now (made on
    first use), or None where none can be written (the kernels are compiled every run).

    Numba keys a kernel's cache on its own file alone; but a kernel compiles in the globals it
    reads, other modules' constants and subkernels included (spec.A4_HZ in instruments.basic's
    step): one of those changed, and Numba loaded the old machine code. So the cache lives in a
    folder named after :func:`source_hash` (every file of :data:`SOURCES`, what the compiled
    module is checked against too): any change to any of them starts an empty one. Making a
    new one removes the root's older folders but the :data:`CACHE_KEEP` last used (and the
    files Numba kept beside the sources before)."""
    with _CACHE_LOCK:
        if "dir" in _cache_state:
            return _cache_state["dir"]
        import tempfile
        found = None
        try:
            h = source_hash()
            roots = _cache_roots()
        except (OSError, ImportError):
            h, roots = "", []
        for root, prefix in roots:
            d = root / f"{prefix}{h}"
            try:
                new = not d.is_dir()
                d.mkdir(parents=True, exist_ok=True)
                tempfile.TemporaryFile(dir=d).close()          # writable (Numba's own test)
            except OSError:
                continue
            try:
                os.utime(d)                                    # last used: now
            except OSError:
                pass
            if new:
                _prune_cache(root, prefix, d)
            found = d
            break
        _cache_state["dir"] = found
        return found


def _prune_cache(root: Path, prefix: str, current: Path) -> None:
    import re
    import shutil
    pat = re.compile(re.escape(prefix) + "[0-9a-f]{16}")
    try:
        others = [p for p in root.iterdir() if p != current and pat.fullmatch(p.name)]
        others.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return
    for p in others[CACHE_KEEP - 1:]:
        shutil.rmtree(p, ignore_errors=True)
    if root == PACKAGE_DIR / "__pycache__":
        # Numba's own cache files beside the sources (before this folder existed): never read
        for pyc in PACKAGE_DIR.rglob("__pycache__"):
            for f in list(pyc.glob("*.nbi")) + list(pyc.glob("*.nbc")):
                try:
                    f.unlink()
                except OSError:
                    pass


def _enable_cache(d) -> None:
    """``cache=True`` for dispatcher ``d``: in :func:`cache_dir` for the package's kernels
    (Numba's own locations for a kernel defined elsewhere), none where it cannot be written."""
    try:
        Path(d.py_func.__code__.co_filename).resolve().parent.relative_to(PACKAGE_DIR)
    except ValueError:
        d.enable_caching()
        return
    if cache_dir() is None:
        return
    try:
        d._cache = _cache_class()(d.py_func)
    except (OSError, RuntimeError):       # no locator: the folder went away, a placeholder file
        pass


def _cache_class():
    """Numba's ``FunctionCache`` with one locator: :func:`cache_dir`, a subfolder per source
    folder (the index still holds each kernel's own file's hash, Numba's check)."""
    cls = _cache_state.get("class")
    if cls is not None:
        return cls
    from numba.core import caching

    class Locator(caching._SourceFileBackedLocatorMixin, caching._CacheLocator):
        def __init__(self, py_func, py_file):
            self._py_file = py_file
            self._lineno = py_func.__code__.co_firstlineno
            rel = Path(py_file).resolve().parent.relative_to(PACKAGE_DIR)
            self._cache_path = str(cache_dir() / ("_".join(rel.parts) or "_root"))

        def get_cache_path(self):
            return self._cache_path

    class Impl(caching.CompileResultCacheImpl):
        _locator_classes = [Locator]

    class Cache(caching.FunctionCache):
        _impl_class = Impl

        # a cache that cannot be read or written (its folder pruned by a process of newer
        # sources meanwhile, replaced, a full disk): the kernel is compiled, the call goes on
        def load_overload(self, sig, target_context):
            try:
                return super().load_overload(sig, target_context)
            except OSError:
                return None

        def save_overload(self, sig, data):
            try:
                super().save_overload(sig, data)
            except OSError:
                pass

    _cache_state["class"] = Cache
    return Cache


def symbol_key(module: str, name: str) -> str:
    """``rtsynth.dsp.synth`` + ``render_voices`` -> ``dsp_synth__render_voices``."""
    mod = module[len("rtsynth."):] if module.startswith("rtsynth.") else module
    return f"{mod.replace('.', '_')}__{name}"


_REGISTRY: list[_Kernel] = []
_LOCK = threading.Lock()
_state: dict[str, Any] = {"mode": None, "why": "", "module": None, "spec": None}


def _load() -> None:
    """Decide the mode once, at the first kernel definition."""
    if _state["mode"] is not None:
        return
    mod, spec, why = None, None, ""
    if os.environ.get("RTSYNTH_JIT", "") not in ("", "0"):
        why = "RTSYNTH_JIT is set"
    else:
        try:
            spec = json.loads(SPEC_FILE.read_text())
            if not _sources_unchanged(spec) and spec.get("hash") != source_hash():
                why = "stale: built from other kernel sources (rebuild: python -m rtsynth.aot)"
            else:
                import importlib
                mod = importlib.import_module(f"{__package__}.{EXTENSION}")
                if mod.build_hash() != hash_int(spec["hash"]):
                    mod, why = None, "the module does not match its spec file (rebuild it)"
        except FileNotFoundError:
            why = "not built (python -m rtsynth.aot)"
        except (OSError, ValueError, KeyError, ImportError, AttributeError) as e:
            mod, why = None, f"cannot load it ({type(e).__name__}: {e})"
    if mod is None:
        _state.update(mode="jit", why=why, module=None, spec=None)
    else:
        _state.update(mode="aot", why="built from these sources", module=mod, spec=spec)


def status() -> dict[str, str]:
    """``{"mode": "aot" | "jit", "why": ..., "cache": ...}``: which kernels this process runs;
    on the JIT, the folder of its on-disk cache (:func:`cache_dir`; "" when there is none)."""
    _load()
    out = {"mode": _state["mode"], "why": _state["why"], "cache": ""}
    if _state["mode"] == "jit":
        d = cache_dir()
        out["cache"] = str(d) if d is not None else ""
    return out


def kernel(fn: Callable | None = None, **options):
    """Decorator for a kernel called from Python: ``numba.njit(cache=True, nogil=True,
    **options)``, or its ahead-of-time compiled version (see the module docstring)."""
    def deco(f):
        return _define(f, options, exported=True)
    return deco(fn) if fn is not None else deco


def subkernel(fn: Callable | None = None, **options):
    """Decorator for a function called only from other kernels (compiled into them)."""
    def deco(f):
        return _define(f, options, exported=False)
    return deco(fn) if fn is not None else deco


def _define(fn: Callable, options: dict, exported: bool):
    _load()
    k = _Kernel(fn, options, exported)
    with _LOCK:
        _REGISTRY.append(k)
        aot = _state["mode"] == "aot" and k.module.startswith(f"{__package__}.")
        if not aot:
            k.public = k.jit()
        elif not exported:
            k.public = fn          # never called from Python while the compiled kernels run
        else:
            sigs = _state["spec"]["kernels"].get(k.key)
            if not sigs:
                # a kernel the build did not see: everything goes to the JIT (to stay
                # consistent: kernels call each other)
                k.public = fn
                _switch_to_jit(f"{k.key} is not in the compiled module")
                return k.jit()
            k.public = _checked(k, sigs)
    return k.public


# ------------------------------------------------------------------ argument checks
def _arg_spec(t) -> tuple:
    """A build-time Numba type -> the JSON-able spec the run-time check uses."""
    from numba.core import types
    if isinstance(t, types.Array):
        return ("array", str(t.dtype), int(t.ndim), t.layout)
    if isinstance(t, types.BaseTuple):
        # a bundle of arrays (the voice bank, channel rows, work arrays): each element's check
        return ("tuple", [list(_arg_spec(e)) for e in t.types])
    if isinstance(t, types.Boolean):
        return ("bool",)
    if isinstance(t, types.Integer):
        return ("int",)
    if isinstance(t, types.Float):
        return ("float",)
    raise TypeError(f"no compiled-kernel argument check for Numba type {t}")


def _exact_ok(spec: list, args: tuple) -> bool:
    """The careful check (dtype equality, not identity)."""
    import numpy as np
    if len(spec) != len(args):
        return False
    for s, a in zip(spec, args):
        if s[0] == "tuple":
            if not isinstance(a, tuple) or not _exact_ok(s[1], a):
                return False
        elif s[0] == "array":
            if not isinstance(a, np.ndarray) or a.dtype != np.dtype(s[1]) or a.ndim != s[2]:
                return False
            if s[3] == "C" and not a.flags.c_contiguous:
                return False
        elif s[0] in ("int", "bool"):
            try:
                operator.index(a)
            except TypeError:
                return False
        elif s[0] == "float":
            if not isinstance(a, (int, float)) and not hasattr(a, "__float__"):
                return False
    return True


def _check_source(name: str, sigs: list, env: dict | None = None) -> str:
    """The source of kernel ``name``'s argument check for its signatures ``sigs`` (as the spec
    file holds them); with ``env``, the names it reads put there (but the kernels ``F<i>``).
    The source depends on ``name`` and ``sigs`` alone: the build compiles it once
    (:func:`check_codes`)."""
    import numpy as np
    arity = len(sigs[0])
    params = ", ".join(f"a{i}" for i in range(arity))
    lines = [f"def {name}({params}):", "    try:"]
    for si, spec in enumerate(sigs):
        conds = []
        for i, s in enumerate(spec):
            if s[0] == "tuple":
                # a bundle is immutable and its arrays' dtypes are: once one has passed the
                # careful check, the same object passes by identity (the engine passes the
                # same bundles every block; a rack's several engines each their own: the
                # bundles seen are kept by id, a few dozen at most)
                if env is not None:
                    env[f"T{si}_{i}"] = seen = {}
                    env[f"C{si}_{i}"] = _tuple_check(s[1], seen)
                conds.append(f"(T{si}_{i}.get(id(a{i})) is a{i} or C{si}_{i}(a{i}))")
                continue
            if s[0] != "array":
                continue
            if env is not None:
                env[f"D{si}_{i}"] = np.dtype(s[1])
            c = f"a{i}.dtype is D{si}_{i} and a{i}.ndim == {s[2]}"
            if s[3] == "C":
                c += f" and a{i}.flags.c_contiguous"
            conds.append(c)
        cond = " and ".join(conds) or "True"
        lines.append(f"        if {cond}:")
        lines.append(f"            return F{si}({params})")
    lines += ["    except AttributeError:", "        pass", f"    return slow({params})"]
    return "\n".join(lines)


def check_codes(kernels: dict) -> dict:
    """What the build stores in the spec file (``"checks"``): the compiled code of each
    kernel's check (``kernels``: the spec's ``{key: sigs}``, names from :data:`_REGISTRY`), as
    base64 of a marshalled ``{source: code}``, for this Python's bytecode (``magic``)."""
    import base64
    import marshal
    from importlib.util import MAGIC_NUMBER
    names = {k.key: k.name for k in _REGISTRY}
    codes = {}
    for key, sigs in kernels.items():
        if sigs and key in names:
            src = _check_source(names[key], sigs)
            codes[src] = compile(src, "<string>", "exec", dont_inherit=True)
    return {"magic": MAGIC_NUMBER.hex(),
            "code": base64.b64encode(marshal.dumps(codes)).decode("ascii")}


def _check_code(src: str):
    """The build's compiled code for a check's source, or None (not built, another Python)."""
    codes = _state.get("checks")
    if codes is None:
        codes = {}
        try:
            import binascii
            import marshal
            from importlib.util import MAGIC_NUMBER
            c = _state["spec"]["checks"]
            if c["magic"] == MAGIC_NUMBER.hex():
                got = marshal.loads(binascii.a2b_base64(c["code"]))
                if isinstance(got, dict):
                    codes = got
        except (KeyError, TypeError, ValueError, EOFError, ImportError):
            pass
        _state["checks"] = codes
    code = codes.get(src)
    return code if isinstance(code, types.CodeType) else None


def _checked(k: _Kernel, sigs: list) -> Callable:
    """The compiled kernel behind a generated check of its arguments (one function, straight-
    line code: the fast path is identity checks of dtypes). A call that does not pass goes to
    the careful check, then to the JIT. The check's code is the build's (compiling the ~50
    checks took ~6 ms of each start-up), or compiled here."""
    mod = _state["module"]
    env: dict[str, Any] = {"slow": None, "AttributeError": AttributeError}
    src = _check_source(k.name, sigs, env)
    for si in range(len(sigs)):
        env[f"F{si}"] = getattr(mod, f"{k.key}__{si}")
    code = _check_code(src)
    exec(code if code is not None else compile(src, "<string>", "exec", dont_inherit=True), env)
    public = env[k.name]
    fns = [getattr(mod, f"{k.key}__{si}") for si in range(len(sigs))]

    def slow(*args):
        for spec, fn in zip(sigs, fns):
            if _exact_ok(spec, args):
                return fn(*args)
        _switch_to_jit(f"{k.key} was called with argument types it was not built for: "
                       + ", ".join(_describe(a) for a in args))
        return k.jit()(*args)

    env["slow"] = slow
    public.__doc__ = k.py_func.__doc__
    public.__wrapped__ = k.py_func
    public.compiled = True
    return public


def _tuple_check(spec: list, seen: dict) -> Callable:
    def check(a) -> bool:
        if isinstance(a, tuple) and _exact_ok(spec, a):
            if len(seen) >= 64:
                seen.clear()
            seen[id(a)] = a           # kept alive here, so its id cannot be reused
            return True
        return False
    return check


def _describe(a) -> str:
    dt = getattr(a, "dtype", None)
    if isinstance(a, tuple):
        return f"{type(a).__name__}({', '.join(_describe(x) for x in a)})"
    if dt is not None and hasattr(a, "ndim"):
        return f"{dt}[{a.ndim}d{'' if a.flags.c_contiguous else ', strided'}]"
    return type(a).__name__


def _switch_to_jit(why: str) -> None:
    """From now on every kernel runs as a Numba JIT dispatcher: rebinds every module global of
    the package that holds a kernel (kernels resolve each other through those)."""
    if _state["mode"] == "jit":
        return
    warnings.warn(f"rtsynth: using the Numba JIT kernels: {why}", RuntimeWarning, stacklevel=3)
    _state.update(mode="jit", why=why)
    by_id = {}
    for k in _REGISTRY:
        by_id[id(k.public)] = k
        by_id[id(k.py_func)] = k
    for name, m in list(sys.modules.items()):
        if m is None or not (name == __package__ or name.startswith(f"{__package__}.")):
            continue
        d = vars(m)
        for attr, val in list(d.items()):
            k = by_id.get(id(val))
            if k is not None and (val is k.public or val is k.py_func):
                d[attr] = k.jit()
    for f in ON_JIT:
        f()


#: called after a switch to the JIT: modules whose kernels use Numba-only helpers (intrinsics,
#: not imported while the compiled kernels run) load them here
ON_JIT: list[Callable[[], None]] = []


def registry() -> list[_Kernel]:
    """Every kernel defined so far (for the builder and the tests)."""
    return list(_REGISTRY)
