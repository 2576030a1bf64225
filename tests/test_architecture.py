"""The house rules of the package, read from its imports (imports inside functions and under
TYPE_CHECKING included: they hide circles, they do not remove them).

- the emulator plays Google: it imports nothing of the provisioner (only the leaf `provision.redact`,
  which imports nothing itself and says what token material looks like, for its --record);
- the provisioner reaches the emulator only over HTTP: only the CLI and the demo start one;
- the hosted viewer (what runs on Cloud Run) imports nothing of provision at all;
- the folders read like the flow, each importing only folders below it (LAYERS);
- a resource kind never imports another kind;
- no import circle anywhere.
"""
from __future__ import annotations

import ast
import functools
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "provision"

# Bottom to top. A module may import its own layer's modules and those of the layers below.
LAYERS = [
    {"provision", "provision.errors", "provision.redact", "provision.words"},
    {"provision.blueprint"},
    {"provision.gcp"},
    {"provision.ohif"},
    {"provision.resources"},
    {"provision.checks"},
    {"provision.planning"},
    {"provision.running"},
    {"provision.demo"},
    {"provision.cli", "provision.cli_options", "provision.cli_support", "provision.__main__"},
]


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every provision module `path` imports, wherever the import statement is."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("provision")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if not base.startswith("provision"):
                continue
            for alias in node.names:   # `from provision.resources import bucket` imports a module
                sub = f"{base}.{alias.name}"
                out.add(sub if (PACKAGE.parent / Path(*sub.split("."))).with_suffix(".py").exists()
                        or (PACKAGE.parent / Path(*sub.split("."))).is_dir() else base)
    return out


@functools.cache
def _parsed_graph() -> tuple[tuple[str, frozenset[str]], ...]:
    """Every module's imports, parsed once per test process (~200 files; the seven tests below read
    the same unchanged files, and parsing them was seconds each on a loaded machine)."""
    return tuple((_module_name(p), frozenset(_imports(p))) for p in PACKAGE.rglob("*.py"))


def _graph() -> dict[str, set[str]]:
    """module -> the provision modules it imports (a fresh copy for each test)."""
    return {module: set(deps) for module, deps in _parsed_graph()}


def _layer(module: str) -> int | None:
    for i, layer in enumerate(LAYERS):
        if any(module == top or module.startswith(top + ".") for top in layer if top != "provision") \
                or module in layer:
            return i
    return None


def test_the_emulator_imports_nothing_of_the_provisioner():
    bad = {m: sorted(i for i in deps if not i.startswith("provision.emulator") and i != "provision.redact")
           for m, deps in _graph().items() if m.startswith("provision.emulator")}
    assert not {m: d for m, d in bad.items() if d}


def test_only_the_cli_and_the_demo_start_an_emulator():
    users = {m for m, deps in _graph().items() if not m.startswith("provision.emulator")
             and any(d.startswith("provision.emulator") for d in deps)}
    assert users <= {"provision.cli"} | {m for m in users if m.startswith("provision.demo")}, sorted(users)


def test_the_hosted_viewer_imports_nothing_of_provision():
    bad = {m: sorted(d for d in deps if not d.startswith("provision.hosted"))
           for m, deps in _graph().items() if m.startswith("provision.hosted")}
    assert not {m: d for m, d in bad.items() if d}


def test_each_folder_imports_only_folders_below_it():
    wrong = []
    for module, deps in _graph().items():
        if module.startswith(("provision.emulator", "provision.hosted")):
            continue
        mine = _layer(module)
        assert mine is not None, f"{module} is in no layer of LAYERS: place it"
        for dep in deps:
            theirs = _layer(dep)
            if theirs is not None and theirs > mine:
                wrong.append(f"{module} -> {dep}")
    assert not wrong, "imports that run back up the flow:\n" + "\n".join(sorted(wrong))


def _is_kind(module: str) -> bool:
    path = PACKAGE.parent / Path(*module.split(".")).with_suffix(".py")
    tree = ast.parse(path.read_text())
    names = {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    funcs = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    return "KIND" in names and "diff" in funcs


def test_a_resource_kind_never_imports_another_kind():
    graph = _graph()
    kinds = {m for m in graph if m.startswith("provision.resources.") and _is_kind(m)}
    assert len(kinds) >= 14
    wrong = {k: sorted(d for d in graph[k] if d in kinds and d != k) for k in kinds}
    assert not {k: d for k, d in wrong.items() if d}


def test_no_import_circle():
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    circles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:   # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    # A package's __init__ importing its own modules is its face, not a circle worth naming.
    circles = [c for c in circles if not all(m == c[0] or m.startswith(c[0] + ".") for m in c)]
    assert not circles, circles


def test_layers_cover_the_package():
    stray = defaultdict(list)
    for module in _graph():
        if not module.startswith(("provision.emulator", "provision.hosted")) and _layer(module) is None:
            stray[module.rpartition(".")[0]].append(module)
    assert not stray, dict(stray)


# Issue 20: a newcomer reads modules of about 500 lines and functions of about 60. Longer says why:
# a function on the line above it (or above its decorators), `# Long ...`; a module in a
# `# Long module (issue 20): ...` line.
MAX_FUNCTION_LINES, MAX_MODULE_LINES = 60, 500


def _unexplained_lengths(path: Path, root: Path = PACKAGE.parent) -> list[str]:
    text = path.read_text()
    lines = text.splitlines()
    rel = path.relative_to(root)
    found = []
    if len(lines) > MAX_MODULE_LINES and not any(line.startswith("# Long module") for line in lines):
        found.append(f"{rel}: {len(lines)} lines")
    for node in ast.walk(ast.parse(text, str(path))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            start = min([d.lineno for d in node.decorator_list] + [node.lineno])
            length = (node.end_lineno or start) - start + 1
            if length > MAX_FUNCTION_LINES and not (start > 1 and lines[start - 2].strip().startswith("# Long")):
                found.append(f"{rel}:{node.lineno} {node.name}: {length} lines")
    return found


def test_long_modules_and_functions_say_why():
    found = [f for p in sorted(PACKAGE.rglob("*.py")) for f in _unexplained_lengths(p)]
    assert not found, ("split these into named steps or modules, or say why they are clearer whole "
                       "(see the comment above this test):\n" + "\n".join(found))


def test_the_length_rule_sees_a_long_function_and_a_long_module(tmp_path):
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    path = tmp_path / "probe.py"
    path.write_text("def f():\n" + body + "\n" * MAX_MODULE_LINES)
    assert [f.split(": ")[0] for f in _unexplained_lengths(path, tmp_path)] == ["probe.py", "probe.py:1 f"]
    path.write_text("# Long module (issue 20): a probe.\n# Long on purpose: a probe.\ndef f():\n" + body
                    + "\n" * MAX_MODULE_LINES)
    assert _unexplained_lengths(path, tmp_path) == []
