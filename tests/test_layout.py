"""The repository's layout rules: tools/ holds commands only (their logic lives in packages), and
the packages import each other without cycles."""
import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("attrworld", "backbone", "comparison", "datasets", "engine", "headroles", "sweeps", "trainers")


def modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The repository modules `path` imports (at any depth of its code)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                found.add(name if name in known else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name in known}


def cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle (as a path), or [] (depth-first search)."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return []


def test_tools_holds_commands_only():
    files = sorted(p.name for p in (REPO / "tools").iterdir() if p.name != "__pycache__")
    assert all(name.endswith(".py") for name in files), files
    for name in files:
        text = (REPO / "tools" / name).read_text()
        assert text.rstrip().endswith('if __name__ == "__main__":\n    run_cli(main)'), name
        assert "from tools" not in text and "import tools" not in text, name  # no command is another's library


def test_packages_import_each_other_without_cycles():
    known = modules()
    graph = {name: imports(path, known) - {name} for name, path in known.items()}
    assert graph["sweeps.command"] and graph["comparison.command"]  # the graph is read, not empty
    assert cycle(graph) == []


def test_cycle_finder_finds_a_cycle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
