"""The package's layers stay as the README's Layout section says."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "espnet_fastadasp"
#: the packages that know transformers: the reduction, generation around it, access to models
COUPLING = ("reduction", "generation", "models", "hf")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_core_imports_neither_transformers_nor_the_coupling():
    for path in (PACKAGE / "core").glob("*.py"):
        bad = {
            n
            for n in _imports(path)
            if n.startswith(("transformers", "espnet_fastadasp.bin"))
            or n.split(".")[1:2]
            and n.split(".")[1] in COUPLING
        }
        assert not bad, f"{path.name} imports {sorted(bad)}"
    code = (
        "import sys, espnet_fastadasp.core.config, espnet_fastadasp.core.methods, espnet_fastadasp.core.flops, "
        "espnet_fastadasp.core.stats; print('transformers' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"], "config, methods, flops and stats load without torch or transformers"


def test_no_entry_point_imports_another():
    for path in (PACKAGE / "bin").glob("*.py"):
        others = {n for n in _imports(path) if n.startswith("espnet_fastadasp.bin")}
        assert not others, f"bin/{path.name} imports {sorted(others)}"


def test_no_state_on_transformers_objects():
    """Our state lives in our objects (handles, cache layers, AttentionSwap), never as private
    attributes set on the model or its modules."""
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        assert "._fastadasp" not in text and '"_fastadasp' not in text, f"{path.relative_to(PACKAGE)}"


def test_ops_knows_no_method_names():
    from espnet_fastadasp.core.methods import REGISTRY

    text = (PACKAGE / "core" / "ops.py").read_text()
    for name in REGISTRY:
        assert f'"{name}"' not in text, f"ops.py branches on {name!r}"


def _subpackage(name: str) -> str | None:
    """``espnet_fastadasp.reduction.patch`` -> ``reduction``; None outside the package."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "espnet_fastadasp" else None


def _module_level_imports(path: Path) -> set[str]:
    """The package modules ``path`` imports when it is imported (not inside functions or
    ``if TYPE_CHECKING``), as module names."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    modules = {_module_name(p) for p in PACKAGE.rglob("*.py")}
    return {n for n in names if n in modules and n != _module_name(path)}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def test_no_import_cycles():
    graph = {_module_name(p): _module_level_imports(p) for p in PACKAGE.rglob("*.py")}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(trail[trail.index(nxt) :] + [nxt]))
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_the_three_jobs_depend_one_way():
    """models knows nothing of the reduction; the reduction nothing of generation around it."""
    for package, forbidden in (("models", ("reduction", "generation")), ("reduction", ("generation",))):
        for path in (PACKAGE / package).glob("*.py"):
            bad = {n for n in _imports(path) if _subpackage(n) in forbidden}
            assert not bad, f"{package}/{path.name} imports {sorted(bad)}"


def test_old_import_paths_still_work_and_name_the_new_one():
    import importlib
    import warnings

    from espnet_fastadasp.hf import MOVED

    for old, package in MOVED.items():
        sys.modules.pop(f"espnet_fastadasp.hf.{old}", None)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            module = importlib.import_module(f"espnet_fastadasp.hf.{old}")
        assert module is importlib.import_module(f"espnet_fastadasp.{package}.{old}")
        assert any(f"espnet_fastadasp.{package}.{old}" in str(w.message) for w in caught), old
