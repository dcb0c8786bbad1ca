"""The package's import graph: no circles (counting imports inside functions too, which is where
circles usually hide), and the layout's modules where the code says they are."""

import ast
from pathlib import Path

import rtsynth

PKG = Path(rtsynth.__file__).resolve().parent


def _module_name(path: Path, root: Path = PKG.parent) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(path: Path, modules: set[str], root: Path = PKG.parent) -> set[str]:
    """The rtsynth modules ``path`` imports anywhere in its body (``TYPE_CHECKING`` blocks
    excluded: they never run)."""
    name = _module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for b in node.body for n in ast.walk(b)}
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # ``from pkg import sub`` imports the module pkg.sub; ``from pkg import name``
            # imports pkg itself
            subs = [f"{mod}.{a.name}" for a in node.names]
            targets = [t for t in subs if t in modules] or [mod]
            if len(targets) < len(subs):
                targets.append(mod)
        else:
            continue
        for t in targets:
            while t and t not in modules:
                t = t.rpartition(".")[0]
            if t and t != name and t.startswith("rtsynth"):
                out.add(t)
    return out


def _graph(subpackage: str) -> dict[str, set[str]]:
    files = [p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts]
    modules = {_module_name(p) for p in files}
    graph = {}
    for p in files:
        m = _module_name(p)
        if m.startswith(subpackage):
            graph[m] = {t for t in _imports(p, modules) if t.startswith(subpackage)}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if not state.get(t) and (c := visit(t)):
                return c
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if not state.get(m) and (c := visit(m)):
            return c
    return None


def _all_cycles(graph):
    graph = {m: set(t) for m, t in graph.items()}
    found = []
    while (c := _cycle(graph)) is not None:
        found.append(c)
        graph[c[0]].discard(c[1])
    return found


def test_nn_has_no_import_circle():
    # the loader, the NumPy step and the instrument: io -> neural -> fast -> arch, and none back
    assert _cycle(_graph("rtsynth.nn")) is None, " -> ".join(_cycle(_graph("rtsynth.nn")))


def test_package_has_no_import_circle():
    cycles = _all_cycles(_graph("rtsynth"))
    assert not cycles, [" -> ".join(c) for c in cycles]


def test_the_checker_sees_a_circle_inside_a_function(tmp_path):
    """The graph counts an import inside a function (where circles hide) and skips one under
    TYPE_CHECKING."""
    files = {"a.py": "def f():\n    from . import b\n",
             "b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import c\n"
                     "from .a import f\n",
             "c.py": "from . import a\n"}
    pkg = tmp_path / "rtsynth" / "zz"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    for n, t in files.items():
        (pkg / n).write_text(t)
    mods = {"rtsynth.zz", "rtsynth.zz.a", "rtsynth.zz.b", "rtsynth.zz.c"}
    graph = {f"rtsynth.zz.{n[0]}": _imports(pkg / n, mods, tmp_path) for n in files}
    a, b, c = graph["rtsynth.zz.a"], graph["rtsynth.zz.b"], graph["rtsynth.zz.c"]
    assert a == {"rtsynth.zz.b"} and b == {"rtsynth.zz.a"} and c == {"rtsynth.zz.a"}
    assert sorted(_cycle(graph)[:2]) == ["rtsynth.zz.a", "rtsynth.zz.b"]


def test_instruments_layout():
    from rtsynth.instruments import BasicInstrument, load_instrument
    from rtsynth.instruments.base import StreamingInstrument
    from rtsynth.nn.neural import NeuralInstrument

    assert isinstance(load_instrument("basic"), BasicInstrument)
    assert issubclass(NeuralInstrument, StreamingInstrument)
    assert BasicInstrument.__module__ == "rtsynth.instruments.basic"
    for old in ("instrument.py", "instruments.py", "nn/instrument.py"):
        assert not (PKG / old).exists(), old
