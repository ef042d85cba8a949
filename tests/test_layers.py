"""The package's layers (ARCHITECTURE.md), enforced: every module belongs to one layer, no
module imports one of a higher layer, and the imports have no cycle, counting the imports inside
functions (which is where cycles used to hide). Read from the source with ``ast``, so a lazy
import counts like a top-level one."""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "llmbrain_utils"

#: lowest first; a module may import modules of its own layer (without a cycle) or lower ones
LAYERS = {
    "foundation": ("errors", "_io", "_validation", "stats", "devices", "progress", "parallel", "store"),
    "science": ("fetch", "stimuli", "models", "layerwise", "extract", "dictionary", "encoding",
                "fmri", "surface", "fbn", "compare", "netsignal", "explorer", "plotting"),
    "parameters": ("config",),
    "stages": ("stages", "sweep", "headlines"),
    "chapters": ("chapters",),
    "application": ("runfolder", "prefetch", "pipeline", "notebooks", "cli", "__main__", "__init__"),
}
LEVEL = {m: i for i, mods in enumerate(LAYERS.values()) for m in mods}


def _module_name(path: Path) -> str:
    """Dotted name inside the package: ``encoding.cv`` for ``encoding/cv.py``, ``encoding`` for
    ``encoding/__init__.py``, ``stats`` for ``stats.py``."""
    parts = list(path.relative_to(PKG).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def top(name: str) -> str:
    """The top-level module (or subpackage) a dotted module belongs to: its layer's unit."""
    return name.split(".")[0]


def import_graph() -> dict[str, dict[str, int]]:
    """module -> {imported package module: line of the first such import}, over every module of
    the package and of its subpackages (dotted names, ``encoding.cv``)."""
    paths = sorted(PKG.rglob("*.py"))
    mods = {_module_name(p) for p in paths}
    graph: dict[str, dict[str, int]] = {m: {} for m in mods}
    for path in paths:
        me = _module_name(path)
        # the package a relative import of level 1 starts from
        here = me if path.name == "__init__.py" else ".".join(me.split(".")[:-1])
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.ImportFrom):
                if node.level >= 1:
                    base = here.split(".") if here else []
                    base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
                    stem = ".".join(base + ([node.module] if node.module else []))
                    targets = [f"{stem}.{a.name}" if stem else a.name for a in node.names]
                elif (node.module or "").startswith("llmbrain_utils"):
                    stem = ".".join(node.module.split(".")[1:])
                    targets = [f"{stem}.{a.name}" if stem else a.name for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [".".join(a.name.split(".")[1:]) for a in node.names
                           if a.name.startswith("llmbrain_utils.")]
            for t in targets:
                # the most specific package module the import names (a name imported from a
                # module is not a module; then the module itself is the target)
                while t and t not in mods:
                    t = ".".join(t.split(".")[:-1])
                if t and t != me and not (path.name == "__init__.py" and t == me):
                    graph[me].setdefault(t, node.lineno)
    return graph


def find_cycle(graph) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state:
                found = visit(t)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_every_module_has_a_layer():
    unplaced = sorted({top(m) for m in import_graph()} - set(LEVEL))
    assert not unplaced, f"modules without a layer (add them to LAYERS and ARCHITECTURE.md): {unplaced}"


def test_no_module_imports_a_higher_layer():
    layer_of = {m: name for name, mods in LAYERS.items() for m in mods}
    bad = [f"{m} ({layer_of[top(m)]}) imports {t} ({layer_of[top(t)]}) at line {line}"
           for m, deps in import_graph().items() for t, line in deps.items()
           if top(m) in LEVEL and top(t) in LEVEL and LEVEL[top(t)] > LEVEL[top(m)]]
    assert not bad, "\n".join(bad)


def test_the_imports_have_no_cycle():
    graph = import_graph()
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(f"{a} (line {graph[a][b]})" for a, b in zip(cycle, cycle[1:]))


def test_the_checks_see_lazy_imports_and_cycles():
    """The reader counts an import inside a function, and the cycle finder finds a cycle."""
    graph = import_graph()
    assert any(top(t) == "fbn" for t in graph["config"])  # config checks atlas names with a lazy import of fbn
    assert find_cycle({"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": 1}, "b": {}}) is None


def test_architecture_page_lists_the_layers():
    text = (PKG.parent / "ARCHITECTURE.md").read_text()
    for name, mods in LAYERS.items():
        assert name in text, name
        for m in mods:
            if m not in ("__main__", "__init__"):
                assert f"`{m}`" in text, f"ARCHITECTURE.md does not name module {m}"
