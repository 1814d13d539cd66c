"""The package reads top-down: nothing below the CLI imports it, modules use public names."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "moensemble"
MODULES = sorted(PACKAGE.rglob("*.py"))


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[str, str | None]]:
    """``(module, name)`` for every import in ``path`` (``name`` None for ``import module``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = _name(path) if path.name == "__init__.py" else _name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: resolve against this module's package
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{module}" if module else base
            found += [(module, alias.name) for alias in node.names]
    return found


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_every_module_imports(path):
    if path.name == "__main__.py":
        return
    assert importlib.import_module(_name(path)).__name__ == _name(path)


def test_nothing_below_the_cli_imports_it():
    offenders = []
    for path in MODULES:
        if _name(path).startswith("moensemble.cli") or path.name == "__main__.py":
            continue
        for module, name in _imports(path):
            full = f"{module}.{name}" if name else module
            if full == "moensemble.cli" or full.startswith("moensemble.cli."):
                offenders.append(f"{_name(path)} imports {full}")
            elif module == "moensemble" and name == "cli":
                offenders.append(f"{_name(path)} imports moensemble.cli")
    assert offenders == []


def _subpackage(module: str) -> str:
    """``moensemble.search.trials`` -> ``moensemble.search``; top-level modules are their own."""
    parts = module.split(".")
    return ".".join(parts[:2])


# Shared privates with no public twin: the gated family builds on the ensembles' OOF base and
# names non-numeric columns the way they do.
ALLOWED = {"moensemble.gated._base imports moensemble.ensemble._base._BaseOOFEnsemble",
           "moensemble.gated._base imports moensemble.ensemble._base._text_columns"}


def test_no_private_names_across_subpackages():
    """A ``_private`` name is imported only inside its own subpackage (cli, search, ...)."""
    offenders = []
    for path in MODULES:
        here = _name(path)
        for module, name in _imports(path):
            if not module.startswith("moensemble") or name is None or not name.startswith("_"):
                continue
            if name.startswith("__"):
                continue
            if _subpackage(module) != _subpackage(here):
                offenders.append(f"{here} imports {module}.{name}")
    assert sorted(set(offenders) - ALLOWED) == []


def test_the_cli_defaults_agree_with_the_storage():
    from moensemble.cli import tune
    from moensemble.search import storage

    for name in ("HEARTBEAT_INTERVAL", "GRACE_PERIOD", "MAX_RETRY"):
        assert getattr(tune, name) == getattr(storage, name), name


def test_the_fold_engine_is_a_shared_core():
    """``moensemble.folds`` sits below the families and the search: it imports only _validation."""
    inside = {module for module, _ in _imports(PACKAGE / "folds.py")
              if module.startswith("moensemble")}
    assert inside <= {"moensemble._validation"}
