"""The package's architecture, checked (issue 14): the import graph has no circle, between modules
or between packages; every import goes to the importer's own package or a lower layer; the package
root holds only the entry point, the exception tree and packages; no file is over 450 lines unless
its top says why (``Over 450 lines because ...``).

The graph is every ``import`` and ``from ... import`` in livetok, at module level and inside
functions, ``if TYPE_CHECKING:`` ones included: an import that runs only later, or only for the
type checker, still ties the two modules together. ``python tests/test_architecture.py`` prints the
layers, the package graph, and what breaks the rules.
"""

from __future__ import annotations

import ast
import collections
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "livetok"
MAX_LINES = 450
REASON = "Over 450 lines because"

# Bottom first. A module may import its own package, or a package of a LOWER layer; never one of its
# own layer or above. The package root (``livetok``: the version) sits with the exception tree.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"livetok", "livetok.errors"}),
    frozenset({"livetok.wire", "livetok.media", "livetok.outputs", "livetok.runtime"}),  # foundations
    frozenset({"livetok.config"}),  # one model per YAML section; imports only errors
    frozenset({"livetok.vocab", "livetok.sync", "livetok.streams", "livetok.tokenizers"}),
    frozenset({"livetok.bus"}),  # what the MQTT sink and the client share
    frozenset({"livetok.client", "livetok.sinks"}),
    frozenset({"livetok.pipeline"}),  # the data path
    frozenset({"livetok.daemon"}),  # the process around it
    frozenset({"livetok.service", "livetok.monitor"}),
    frozenset({"livetok.commands"}),
    frozenset({"livetok.cli"}),  # the entry point only
)
ROOT_FILES = {"__init__.py", "cli.py", "errors.py", "py.typed"}
ROOT_DIRS_NOT_PACKAGES = {"codebooks", "__pycache__"}  # package data


def modules() -> dict[str, Path]:
    out = {}
    for p in ROOT.rglob("*.py"):
        name = ".".join(p.relative_to(ROOT.parent).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = p
    return out


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The livetok modules ``name`` imports (``from pkg import mod`` counts ``pkg.mod``)."""
    tree = ast.parse(path.read_text(), str(path))
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [module] + [f"{module}.{a.name}" for a in node.names]
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def package(module: str) -> str:
    """The package a module belongs to: ``livetok.X`` (subpackages included), or the root module."""
    return ".".join(module.split(".")[:2])


def layer(pkg: str) -> int:
    for i, members in enumerate(LAYERS):
        if pkg in members:
            return i
    raise KeyError(pkg)


def circles(nodes: list[str], edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def package_graph(g: dict[str, set[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = collections.defaultdict(set)
    for a, targets in g.items():
        for b in targets:
            if package(a) != package(b):
                out[package(a)].add(package(b))
    return out


def upward(g: dict[str, set[str]]) -> list[str]:
    """Every import that goes to another package of the same layer or of a higher one."""
    bad = []
    for a, targets in sorted(g.items()):
        for b in sorted(targets):
            pa, pb = package(a), package(b)
            if pa != pb and layer(pb) >= layer(pa):
                bad.append(f"{a} -> {b} (layer {layer(pa)} -> {layer(pb)})")
    return bad


def head(path: Path) -> str:
    """A file's top: everything before its first statement other than the module docstring."""
    text = path.read_text()
    tree = ast.parse(text)
    body = tree.body[1:] if tree.body and isinstance(tree.body[0], ast.Expr) \
        and isinstance(tree.body[0].value, ast.Constant) else tree.body
    end = body[0].lineno - 1 if body else len(text.splitlines())
    return "\n".join(text.splitlines()[:end])


def long_files() -> list[str]:
    out = []
    for path in sorted(modules().values()):
        n = len(path.read_text().splitlines())
        if n > MAX_LINES and REASON not in head(path):
            out.append(f"{path.relative_to(ROOT.parent)}: {n} lines, no '{REASON} ...' at its top")
    return out


def test_every_package_has_a_layer() -> None:
    missing = sorted({package(m) for m in modules()} - set().union(*LAYERS))
    assert not missing, f"not in the layer table: {missing}"


def test_no_module_imports_in_a_circle() -> None:
    g = graph()
    assert circles(sorted(g), g) == []


def test_no_package_imports_in_a_circle() -> None:
    pg = package_graph(graph())
    assert circles(sorted(pg), pg) == []


def test_every_import_goes_down_a_layer() -> None:
    assert upward(graph()) == []


def test_the_check_sees_a_circle_and_an_upward_import() -> None:
    """The checks above can fail: a circle and an import up a layer are found when they are there."""
    g = {"livetok.sinks.a": {"livetok.sinks.b"}, "livetok.sinks.b": {"livetok.sinks.a", "livetok.daemon.x"},
         "livetok.daemon.x": set()}
    assert circles(sorted(g), g) == [["livetok.sinks.a", "livetok.sinks.b"]]
    assert upward(g) == ["livetok.sinks.b -> livetok.daemon.x (layer 5 -> 7)"]
    real = graph()
    assert "livetok.config.root" in real["livetok.config.load"]  # the graph is read, not empty
    assert "livetok.sinks.mqtt" in real["livetok.sinks.registry"]  # an import inside a function counts too


def test_the_renderings_read_only_the_snapshot() -> None:
    """The stats document, the STATUS line and the Prometheus exposition are renderings of the run
    snapshot: of the pipeline they import only the snapshot (and the metrics' key and bucket types)."""
    g = graph()
    allowed = {"livetok.pipeline.snapshot", "livetok.pipeline.metrics"}
    for renderer in ("livetok.daemon.statsdoc", "livetok.daemon.supervise", "livetok.daemon.prometheus"):
        reads = {m for m in g[renderer] if package(m) == "livetok.pipeline"}
        assert reads <= allowed, (renderer, reads - allowed)
    assert "livetok.pipeline.snapshot" in g["livetok.daemon.statsdoc"]


def test_no_file_over_450_lines_without_a_reason() -> None:
    assert long_files() == []


def test_the_root_shows_the_architecture() -> None:
    """The package root: the entry point, the exception tree, the version, and packages."""
    loose = sorted(p.name for p in ROOT.iterdir() if p.is_file() and p.name not in ROOT_FILES)
    assert loose == [], f"loose modules at the package root: {loose}"
    dirs = {p.name for p in ROOT.iterdir() if p.is_dir()} - ROOT_DIRS_NOT_PACKAGES
    assert all((ROOT / d / "__init__.py").is_file() for d in dirs), "a folder without __init__.py"


def main() -> int:
    g = graph()
    pg = package_graph(g)
    print("layers (bottom first):")
    for i, members in enumerate(LAYERS):
        print(f"  {i}: {', '.join(sorted(members))}")
    print("package imports:")
    for p in sorted(pg, key=lambda p: (layer(p), p)):
        print(f"  {p} -> {', '.join(sorted(pg[p]))}")
    mc, pc, up, lf = circles(sorted(g), g), circles(sorted(pg), pg), upward(g), long_files()
    print(f"modules: {len(g)}, imports: {sum(len(v) for v in g.values())}")
    print(f"module circles: {mc or 'none'}")
    print(f"package circles: {pc or 'none'}")
    print(f"imports up a layer: {up or 'none'}")
    print(f"files over {MAX_LINES} lines without a reason: {lf or 'none'}")
    return 1 if mc or pc or up or lf else 0


if __name__ == "__main__":
    sys.exit(main())
