"""The package's import graph: no circles (counting imports inside functions too, which is where
circles usually hide), and the layout's modules where the code says they are."""

import ast
from pathlib import Path

import rtsynth

PKG = Path(rtsynth.__file__).resolve().parent


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The rtsynth modules ``path`` imports anywhere in its body (``TYPE_CHECKING`` blocks
    excluded: they never run)."""
    name = _module_name(path)
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
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
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


def test_nn_has_no_import_circle():
    # the loader, the NumPy step and the instrument used to import each other
    # (io -> instrument -> fast -> io); all three read the architecture from nn.arch now
    assert _cycle(_graph("rtsynth.nn")) is None, " -> ".join(_cycle(_graph("rtsynth.nn")))


def test_instruments_layout():
    from rtsynth.instruments import BasicInstrument, load_instrument
    from rtsynth.instruments.base import StreamingInstrument
    from rtsynth.nn.neural import NeuralInstrument

    assert isinstance(load_instrument("basic"), BasicInstrument)
    assert issubclass(NeuralInstrument, StreamingInstrument)
    assert BasicInstrument.__module__ == "rtsynth.instruments.basic"
    for old in ("instrument.py", "instruments.py", "nn/instrument.py"):
        assert not (PKG / old).exists(), old
