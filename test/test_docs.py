"""The README and docs/ say only what exists: every command they show names real scripts,
entry points and options, every Python example names the real API, every link resolves.

Why: the manual is read by people who paste its commands. A renamed option or a moved script
would otherwise only be found by a user. The cheap commands (each entry point's ``--help``) run;
the long ones (set-up, recipes) are checked for the files and options they name.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import espnet_fastadasp as fa

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"```(\w*)\n(.*?)```", re.S)
README_MAX_LINES = 200


def blocks(lang: str) -> list[tuple[Path, str]]:
    return [(page, body) for page in PAGES for kind, body in FENCE.findall(page.read_text()) if kind == lang]


def commands() -> list[tuple[Path, Path, list[str]]]:
    """(page, working dir, argv) of every command in the bash blocks (``&&`` and ``|`` split,
    continuation lines joined, ``cd`` followed within a block, comments dropped)."""
    out = []
    for page, body in blocks("bash"):
        cwd = ROOT
        for line in body.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if not line or line.startswith("#"):
                continue
            for part in re.split(r"&&|\|\||\|", line):
                argv = shlex.split(part)
                if not argv:
                    continue
                if argv[0] == "cd":
                    cwd = (cwd / argv[1]).resolve()
                    continue
                while argv and "=" in argv[0] and not argv[0].startswith("-"):
                    argv = argv[1:]  # VAR=value prefixes
                if argv:
                    out.append((page, cwd, argv))
    return out


COMMANDS = commands()


def entry_points() -> dict[str, list[str]]:
    """``espnet_fastadasp.bin.X`` -> the options the docs pass it."""
    found: dict[str, list[str]] = {}
    for _, _, argv in COMMANDS:
        if "-m" in argv and argv[argv.index("-m") + 1].startswith("espnet_fastadasp."):
            i = argv.index("-m") + 1
            found.setdefault(argv[i], []).extend(a.split("=")[0] for a in argv[i + 1 :] if a.startswith("--"))
    return found


def test_readme_is_short_and_links_into_docs():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move details into docs/"
    for page in ("api", "recipes", "methods", "models", "performance", "reliability", "development"):
        assert f"docs/{page}.md" in "\n".join(lines), page


def test_every_link_resolves():
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"


def test_documented_scripts_exist():
    for page, cwd, argv in COMMANDS:
        prog = argv[1] if argv[0] in ("bash", "sh") else argv[0]
        if prog.startswith("tools/venv"):  # made by tools/setup.sh
            continue
        if prog.endswith(".sh") or prog.startswith(("./", "local/", "tools/", "utils/")):
            assert (cwd / prog).exists(), f"{page.name}: {prog} (run from {cwd.relative_to(ROOT)}) does not exist"


def test_recipe_options_exist():
    """Options given to a recipe's run.sh are ones run.sh or the shared speechlm.sh parses."""
    template = (ROOT / "egs2/TEMPLATE/speechlm1/speechlm.sh").read_text()
    for page, cwd, argv in COMMANDS:
        if argv[0] == "./run.sh":
            text = (cwd / "run.sh").read_text() + template
            for opt in (a for a in argv[1:] if a.startswith("--")):
                name = opt[2:].split("=")[0]
                assert re.search(rf"\b{name}=", text), f"{page.name}: ./run.sh {opt} is not an option of {cwd.name}"


# pytest options whose value is the next word (-n 2, --dist loadgroup), not a path
PYTEST_VALUE_OPTIONS = {"-n", "--numprocesses", "--dist", "-k", "-m", "-p", "--durations", "--basetemp"}


def test_pytest_paths_exist():
    for page, cwd, argv in COMMANDS:
        if "pytest" in argv:
            words = argv[argv.index("pytest") + 1 :]
            for i, path in enumerate(words):
                if not path.startswith("-") and (i == 0 or words[i - 1] not in PYTEST_VALUE_OPTIONS):
                    assert (cwd / path).exists(), f"{page.name}: pytest {path}"


@pytest.mark.parametrize("module", sorted(entry_points()))
def test_entry_point_runs_and_takes_the_documented_options(module):
    """Each documented entry point's ``--help`` runs, and lists every option the docs pass it."""
    out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, cwd=ROOT)
    text = out.stdout
    missing = re.search(r"No module named '(\w+)", out.stderr)
    if out.returncode != 0 and missing and not missing.group(1).startswith("espnet_fastadasp"):
        # an entry point of the ESPnet venv (its own tests run it there): check its source instead
        text = _module_file(module).read_text()
    else:
        assert out.returncode == 0, out.stderr[-2000:]
    for opt in entry_points()[module]:
        assert opt in text, f"{module} has no option {opt}"


def test_python_examples_name_the_real_api():
    """``fa.X`` in the examples exists; ``from espnet_fastadasp... import Y`` imports."""
    for page, body in blocks("python"):
        for name in re.findall(r"\bfa\.(\w+)", body):
            assert hasattr(fa, name), f"{page.name}: fa.{name}"
        for module, names in re.findall(r"from (espnet_fastadasp[\w.]*) import ([\w, ]+)", body):
            source = _module_file(module)  # read, not imported: some need ESPnet's venv
            assert source, f"{page.name}: no module {module}"
            for name in (n.strip() for n in names.split(",")):
                assert _module_file(f"{module}.{name}") or re.search(
                    rf"^(class|def) {name}\b|^{name}\b|import .*\b{name}\b", source.read_text(), re.M
                ), f"{page.name}: from {module} import {name}"


def _module_file(dotted: str) -> Path | None:
    path = ROOT / dotted.replace(".", "/")
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def test_inline_module_paths_exist():
    """Module paths quoted in the pages (`espnet_fastadasp.generation.static_decoding`, or a name in one)
    exist; read from the files, so modules needing ESPnet are checked in the core venv too."""
    for page in PAGES:
        for dotted in set(re.findall(r"`(espnet_fastadasp(?:\.\w+)+)`", page.read_text())):
            if _module_file(dotted):
                continue
            parent, name = dotted.rsplit(".", 1)
            source = _module_file(parent)
            assert source and re.search(rf"^(class|def) {name}\b|^{name}\b", source.read_text(), re.M), (
                f"{page.name}: {dotted}"
            )
