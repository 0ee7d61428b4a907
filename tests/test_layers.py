"""The library's layering (ARCHITECTURE.md, "Dependencies point downward"), read from the source with ast.

Every import counts, also those inside functions and under TYPE_CHECKING: a deferred import is still a
dependency, and one that runs only on some paths is the easiest to miss.
"""

from __future__ import annotations

import ast
from pathlib import Path

import raven

LIBRARY = Path(raven.__file__).parent
# The lower layers; every other package or top-level module of raven (training, evaluation, launch, cli, ...)
# is upper, so a new module counts as upper until it is placed here.
LOWER = ("config", "io", "world", "data", "diffusion", "models", "rewards", "tracking")


def imported_packages(path: Path) -> set[str]:
    """The `raven.<package>` names a module imports (absolute imports; the library uses no relative ones)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        elif isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        else:
            continue
        names |= {m.split(".")[1] for m in modules if m.startswith("raven.")}
    return names


def package_of(path: Path) -> str:
    relative = path.relative_to(LIBRARY)
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def test_imported_packages_reads_deferred_and_type_checking_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from raven.training.history import X\n"
                      "def f():\n    import raven.cli.train\n    from raven.diffusion import schedule\n")
    assert imported_packages(module) == {"training", "cli", "diffusion"}


def test_lower_layers_never_import_upper_ones():
    offences = [f"{path.relative_to(LIBRARY.parent)} imports raven.{name}"
                for path in sorted(LIBRARY.rglob("*.py")) if package_of(path) in LOWER
                for name in sorted(imported_packages(path) - set(LOWER))]
    assert offences == []


def test_config_does_not_import_torch():
    for path in (LIBRARY / "config").glob("*.py"):
        tree = ast.parse(path.read_text())
        modules = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        modules |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not any(m == "torch" or m.startswith("torch.") for m in modules), path
