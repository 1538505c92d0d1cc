"""
The package's import graph: no module imports itself back through others,
and reading the configuration imports no collector.

The graph is read from the source (every C{import}, at module level and
inside functions), so a circle that only closes when some function runs
is found too.
"""

import ast
import pathlib
import subprocess
import sys

import monitor

ROOT = pathlib.Path(monitor.__file__).parent

#: The configuration and everything it reads: no circle may touch these,
#: counting imports inside functions as well.
CONFIG_CLUSTER = ("monitor.config", "monitor.fields", "monitor.collect", "monitor.alerts")


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _graph(module_level_only: bool) -> dict[str, set[str]]:
    """
    Each module's imports of other monitor modules.
    """
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        nodes = tree.body if module_level_only else ast.walk(tree)
        targets = set()
        for node in nodes:
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for target in names:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    targets.add(target)
        graph[name] = targets
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """
    The strongly connected components of more than one module (Tarjan).
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _in_cluster(name: str) -> bool:
    return any(name == c or name.startswith(c + ".") for c in CONFIG_CLUSTER)


def test_graph_is_read():
    # The walk sees what it should: the schema reads the source kinds.
    graph = _graph(module_level_only=True)
    assert "monitor.collect.kinds" in graph["monitor.config"]
    assert "monitor.fields" in graph["monitor.alerts.config"]
    # ... and it finds a circle when there is one.
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_circle_at_module_level():
    assert _circles(_graph(module_level_only=True)) == []


def test_no_circle_counting_imports_inside_functions():
    # An import inside a function is for laziness (a heavy module, the
    # reactor), never to dodge a circle: a circle that closes only when
    # some function runs fails too.  Break one by moving the shared piece
    # to the module that owns it.
    assert _circles(_graph(module_level_only=False)) == []


def test_no_circle_through_the_configuration():
    circles = [c for c in _circles(_graph(module_level_only=False)) if any(_in_cluster(m) for m in c)]
    assert circles == []


def test_configuration_imports_no_collector(tmp_path):
    # A fresh interpreter: what loading a configuration imports.
    path = tmp_path / "monitor.toml"
    path.write_text('[[sources]]\nkind = "rss"\nname = "news"\nurl = "https://example.com/feed"\n')
    script = (
        "import sys\n"
        "from monitor.config import load_config\n"
        f"config = load_config({str(path)!r})\n"
        "assert config.sources[0]['poll_interval'] == 300.0\n"
        "print(sorted(m for m in sys.modules if m.startswith('monitor.collect')))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT.parent)
    assert out.stdout.strip() == "['monitor.collect', 'monitor.collect.kinds']"


def test_the_schema_rests_on_fields_alone():
    # What the schema, the source kinds and the alerts' keys share imports
    # nothing of the monitor, and the kinds table nothing but it: so none
    # of them can close a circle through a collector.
    graph = _graph(module_level_only=False)
    assert graph["monitor.fields"] == set()
    assert graph["monitor.collect.kinds"] == {"monitor.fields"}
    assert not any(m.startswith("monitor.collect.") and m != "monitor.collect.kinds" for m in graph["monitor.config"])
