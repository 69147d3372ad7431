"""The library does not depend on organism training: only the lab (``workbench/lab/``) and its CLI group
(``workbench/cli/lab.py``) import ``workbench.lab``. Serving, sweeps, discovery, ScAle, jobs and the app use the shipped organism
through ``workbench.organism``, which is torch-free. Checked on the source with ``ast`` (every import statement,
at module level or inside a function), so nothing is imported to check it."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[2] / "workbench"
LAB = "workbench.lab"
ALLOWED = {"workbench/cli/lab.py"}  # the lab's own CLI group (its commands import the lab when they run)
TRAINING = ("torch", "transformers", LAB)  # what workbench.organism must not import


def imported_modules(source: str, module: str) -> set[str]:
    """Every module name ``source`` (the text of ``module``, dotted) imports: ``import a.b`` gives ``a.b``; ``from a
    import b`` gives ``a`` and ``a.b`` (``b`` may be a submodule); relative imports are resolved against ``module``."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.split(".")[: -node.level]
                base = ".".join(parent + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def _dotted(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    return ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)


def _sources(under: Path):
    return sorted(p for p in under.rglob("*.py") if "__pycache__" not in p.parts)


def _names(found: set[str], prefix: str) -> list[str]:
    return sorted(m for m in found if m == prefix or m.startswith(prefix + "."))


def test_the_checker_sees_every_import_form():
    src = ("import workbench.lab.train\nfrom workbench import lab\nfrom workbench.lab.card import recipe\n"
           "def f():\n    from . import deficit\n")
    found = imported_modules(src, "workbench.lab.stages")
    assert {"workbench.lab.train", "workbench.lab", "workbench.lab.card", "workbench.lab.deficit"} <= found
    assert _names(imported_modules("from workbench import labels\nimport workbench.labs", "workbench.x"), LAB) == []


def test_no_module_outside_the_lab_imports_it():
    offenders = {}
    for path in _sources(PACKAGE):
        rel = path.relative_to(PACKAGE.parent).as_posix()
        if rel.startswith("workbench/lab/") or rel in ALLOWED:
            continue
        names = _names(imported_modules(path.read_text(), _dotted(path)), LAB)
        if names:
            offenders[rel] = names
    assert offenders == {}, f"modules outside workbench/lab import organism training: {offenders}"


def test_the_old_training_modules_are_gone_from_the_organism_package():
    assert sorted(p.name for p in (PACKAGE / "organism").glob("*.py")) == ["__init__.py", "probesets.py"]


@pytest.mark.parametrize("path", _sources(PACKAGE / "organism"), ids=lambda p: p.name)
def test_the_library_view_of_the_organism_is_torch_free(path):
    found = imported_modules(path.read_text(), _dotted(path))
    assert [n for prefix in TRAINING for n in _names(found, prefix)] == []
