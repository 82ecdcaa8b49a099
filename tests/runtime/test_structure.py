"""Structure of the runtime package: small modules, one job each, no import cycle inside."""

from __future__ import annotations

import ast
from pathlib import Path

RUNTIME = Path(__file__).resolve().parents[2] / "pdtui" / "runtime"
MAX_LINES = 450


def _imports(path: Path) -> set[str]:
    """pdtui.runtime modules imported by path (at any depth: lazy imports count too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pdtui.runtime."):
            found.add(node.module.split(".")[2])
        elif isinstance(node, ast.ImportFrom) and node.module == "pdtui.runtime":
            found.update(alias.name for alias in node.names if (RUNTIME / f"{alias.name}.py").exists())
    return found


def test_every_runtime_module_is_under_the_size_limit():
    sizes = {p.name: len(p.read_text().splitlines()) for p in RUNTIME.glob("*.py")}
    assert max(sizes.values()) < MAX_LINES, {n: s for n, s in sizes.items() if s >= MAX_LINES}


def test_no_import_cycle_inside_the_runtime():
    graph = {p.stem: _imports(p) - {p.stem} for p in RUNTIME.glob("*.py") if p.stem != "__init__"}
    # Mixins of the Supervisor use it only through `self`: an edge back to supervisor.py would be a cycle.
    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    cycles = [m for m in graph if m in reach(m)]
    assert not cycles, {m: sorted(graph[m]) for m in cycles}
    assert "statefile" not in reach("rundir") and "runs" not in reach("rundir")


def test_the_unknown_exit_code_has_one_source():
    offenders = [p.name for p in (RUNTIME.parent).rglob("*.py") if "-999" in p.read_text() and p.name != "constants.py"]
    assert not offenders
