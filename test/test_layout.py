"""The package's layers stay as the README's Layout section says."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "espnet_fastadasp"


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
            n for n in _imports(path) if n.startswith(("transformers", "espnet_fastadasp.hf", "espnet_fastadasp.bin"))
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
