"""The package structure: no import cycle, the orchestrators never call back into the program, and
the dependency picture in docs/design.md ("Package dependencies") is the code's.

Imports are read from the source with ``ast``: at the top of a module, inside a function and under
``TYPE_CHECKING`` alike (each is a dependency a reader has to follow), and ``importlib.import_module``
/ ``__import__`` calls with a literal name too. A *unit* is a sub-package (``kb``, ``pipeline``, ...)
or a top-level module (``io``, ``cli``, ...) of ``kbioxlm``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "kbioxlm"
DESIGN = ROOT / "docs" / "design.md"
PROGRAM = "kbioxlm.cli"
ORCHESTRATORS = ("kbioxlm.pipeline", "kbioxlm.demo")


def _modules() -> dict[str, Path]:
    """``kbioxlm.x.y`` → its file, for every module of the package (``__init__`` as the package)."""
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _known(name: str) -> str | None:
    """The module ``name`` refers to (a name imported from a module is that module), if ours."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path) -> set[str]:
    """The ``kbioxlm`` modules ``module`` imports."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if called in ("import_module", "__import__"):
                names = [node.args[0].value]
        for name in names:
            target = _known(name) if name.startswith("kbioxlm") else None
            # a module's own package (``from . import x`` resolves to x; ``from .`` alone is the package)
            if target and target != module and not module.startswith(target + "."):
                found.add(target)
    return found


def module_graph() -> dict[str, set[str]]:
    return {m: _imports(m, p) for m, p in MODULES.items()}


def unit(module: str) -> str:
    return module.split(".")[1]


def unit_graph() -> dict[str, set[str]]:
    """Edges between units (the root package ``kbioxlm`` itself is no unit)."""
    graph: dict[str, set[str]] = {unit(m): set() for m in MODULES if m != "kbioxlm"}
    for m, targets in module_graph().items():
        if m == "kbioxlm":
            continue
        graph[unit(m)].update(unit(t) for t in targets if t != "kbioxlm" and unit(t) != unit(m))
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def design_picture() -> tuple[set[str], set[str], set[tuple[str, str]]]:
    """``(nodes, foundation nodes, edges)`` of the mermaid graph under "## Package dependencies"."""
    text = DESIGN.read_text(encoding="utf-8")
    section = text.split("\n## Package dependencies\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```mermaid\n(.*?)```", section, re.S)
    assert block, f"{DESIGN}: no mermaid block under '## Package dependencies'"
    nodes: set[str] = set()
    foundation: set[str] = set()
    edges: set[tuple[str, str]] = set()
    inside = False
    for raw in block.group(1).splitlines():
        line = raw.strip()
        if not line or line.startswith(("flowchart", "graph", "direction", "%%")):
            continue
        if line.startswith("subgraph"):
            assert line.split()[1] == "foundation", f"{DESIGN}: unexpected {line!r}"
            inside = True
            continue
        if line == "end":
            inside = False
            continue
        ends = [re.sub(r"\[.*\]$", "", part.strip()) for part in line.split("-->")]
        assert all(re.fullmatch(r"\w+", n) for n in ends) and len(ends) <= 2, f"{DESIGN}: cannot read {line!r}"
        nodes.update(ends)
        if inside:
            foundation.update(ends)
        if len(ends) == 2:
            edges.add((ends[0], ends[1]))
    return nodes, foundation, edges


# ------------------------------------------------------------------------------------ tests
def test_no_import_cycle_between_packages() -> None:
    assert cycles(unit_graph()) == []


def test_no_import_cycle_between_modules() -> None:
    assert cycles(module_graph()) == []


def test_orchestrators_do_not_import_the_program() -> None:
    """The pipeline and the demo call the stages' functions; ``kbioxlm.cli`` is above them."""
    offenders = [m for m, targets in module_graph().items() if m.startswith(ORCHESTRATORS) and PROGRAM in targets]
    assert offenders == []
    # only __main__ imports the program
    assert {m for m, targets in module_graph().items() if PROGRAM in targets} == {"kbioxlm.__main__"}


def test_the_reader_sees_what_the_code_does() -> None:
    """Self-check of the import reader on the edges this structure rests on."""
    graph = module_graph()
    assert {"kbioxlm.kb.cli", "kbioxlm.corpus.cli", "kbioxlm.pipeline.cli"} <= graph[PROGRAM]
    assert "kbioxlm.kb.cli" in graph["kbioxlm.pipeline.stages"]
    assert "kbioxlm.chat.client" in graph["kbioxlm.translate.dataset"]
    assert "kbioxlm.tasks.matrix" in graph["kbioxlm.tasks.report"]


def test_design_picture_matches_the_code() -> None:
    nodes, foundation, drawn = design_picture()
    code = unit_graph()
    assert nodes == set(code), (
        f"docs/design.md, Package dependencies: add {sorted(set(code) - nodes)}, remove {sorted(nodes - set(code))}"
    )
    code_edges = {(a, b) for a, targets in code.items() for b in targets}
    upward = sorted((a, b) for a, b in code_edges if a in foundation and b not in foundation)
    assert upward == [], f"foundation modules import only each other: {upward}"
    # every edge is drawn except "package above --> foundation module", which any package may have
    expected = {(a, b) for a, b in code_edges if a in foundation or b not in foundation}
    assert drawn == expected, (
        f"docs/design.md, Package dependencies: draw {sorted(expected - drawn)}, remove {sorted(drawn - expected)}"
    )
