"""The package's architecture: its import graph has no cycle and no import runs back up its layers (imports
inside functions count), and no line of the code is longer than 120 characters. That no module names an algorithm
but its own file is tests/test_boundary.py's."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """lfmsl module -> the lfmsl modules it imports, anywhere in its file."""
    files = {module_name(p): p for p in (SRC / "lfmsl").rglob("*.py")}
    graph = {name: set() for name in files}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package, `level - 1` folders up
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base for alias in node.names]
            else:
                continue
            graph[name] |= {t for t in targets if t in files and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path that starts and ends at the same module, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle_through_imports_inside_functions(tmp_path):
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 40 and graph["lfmsl.experiments.simulation"]  # the whole package was read
    assert find_cycle(graph) is None


# Each layer imports only from the layers below it (or from within itself). A layer names whole modules and
# folders of the package ("" is lfmsl/__init__.py): no file of a folder sits on another floor than its folder.
LAYERS = [
    ("errors", "datasets", "profiles", "stopping"),
    ("models",),
    ("core",),
    ("privacy",),
    ("config", "privacy_options"),
    ("algorithms",),
    ("costs", "io"),
    ("experiments",),
    ("reporting",),
    ("cli", "__main__", "", "launch"),
]


def layer_of(module: str) -> int:
    """The layer of the package's module or folder that holds `module`."""
    place = module.split(".")[1] if "." in module else ""
    layers = [i for i, names in enumerate(LAYERS) if place in names]
    assert layers, f"{module} is in no layer: add {place!r} to LAYERS"
    return layers[0]


def upward_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Every (importer, imported) pair of `graph` whose import runs from a lower layer to a higher one."""
    return sorted((m, t) for m, targets in graph.items() for t in targets if layer_of(t) > layer_of(m))


def test_the_layer_check_finds_an_import_that_runs_back_up():
    graph = {"lfmsl.io.outputs": {"lfmsl.reporting.plots", "lfmsl.io.atomic", "lfmsl.config"},
             "lfmsl.reporting.plots": {"lfmsl.io.atomic"}}
    assert upward_imports(graph) == [("lfmsl.io.outputs", "lfmsl.reporting.plots")]
    within_or_down = {"lfmsl": {"lfmsl.experiments.runner"}, "lfmsl.privacy.attacks": {"lfmsl.privacy.threats"}}
    assert upward_imports(within_or_down) == []


def test_every_place_of_the_package_is_in_one_layer():
    names = [name for layer in LAYERS for name in layer]
    assert len(names) == len(set(names))
    for module in import_graph():
        layer_of(module)


def test_each_layer_imports_only_from_the_layers_below_it():
    assert upward_imports(import_graph()) == []


def test_the_files_run_first_exist():
    """conftest.LONGEST_FIRST orders the suite by file; a name that matches no file would order nothing."""
    from conftest import LONGEST_FIRST

    tests = Path(__file__).parent
    assert [name for name in LONGEST_FIRST if not (tests / f"{name}.py").is_file()] == []


MAX_LINE = 120


def long_lines(root: Path, folders: tuple[str, ...] = ("src", "scripts")) -> list[str]:
    """'path:line (length)' of every line of a .py file under `folders` of `root` longer than MAX_LINE characters."""
    return [f"{path.relative_to(root)}:{number} ({len(line)})"
            for folder in folders for path in sorted((root / folder).rglob("*.py"))
            for number, line in enumerate(path.read_text().splitlines(), 1) if len(line) > MAX_LINE]


def test_the_line_check_names_the_file_and_line_of_a_long_line(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "short.py").write_text("x = 1\n" + "y = 1" + " " * (MAX_LINE - 5) + "\n")
    (tmp_path / "src" / "long.py").write_text("x = 1\n" + "y = " + "1" * (MAX_LINE - 3) + "\n")
    assert long_lines(tmp_path) == [f"src/long.py:2 ({MAX_LINE + 1})"]


def test_no_line_of_the_code_is_longer_than_120_characters():
    assert long_lines(SRC.parent) == []
