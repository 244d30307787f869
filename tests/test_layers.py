"""The parts of ``src/distcron`` import in one direction, as the README's Layout says:
a part may import only the parts below it (and itself)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "distcron"

# Top to bottom. The last layer is the package's own modules that every part may use.
LAYERS: list[set[str]] = [
    {"__main__"},
    {"cli"},
    {"replica"},
    {"api"},
    {"worker"},
    {"notify"},
    {"scheduler"},
    {"jobs"},
    {"executors"},
    {"metrics"},
    {"store"},
    {"cron"},
    {"errors", "clock", "durations", "logs", "timefmt", "bulk", "__init__"},
]


def _part(module: str) -> str:
    """``distcron.replica.leader`` -> ``replica``; ``distcron.errors`` -> ``errors``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _level(part: str) -> int:
    for level, parts in enumerate(LAYERS):
        if part in parts:
            return level
    raise AssertionError(f"part {part!r} is in no layer: add it to LAYERS and the README")


def _imports(path: Path) -> set[str]:
    """Every distcron module the file imports, at any depth of the file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("distcron")}
        elif (isinstance(node, ast.ImportFrom) and node.module and node.level == 0
              and node.module.startswith("distcron")):
            found.add(node.module)
    return found


def _modules() -> list[tuple[str, Path]]:
    return [(".".join(("distcron", *path.relative_to(PACKAGE).with_suffix("").parts)), path)
            for path in sorted(PACKAGE.rglob("*.py"))]


@pytest.mark.parametrize(("module", "path"), _modules(), ids=[m for m, _ in _modules()])
def test_a_part_imports_only_the_parts_below_it(module: str, path: Path) -> None:
    own = _part(module)
    upward = sorted(imported for imported in _imports(path)
                    if _part(imported) != own and _level(_part(imported)) <= _level(own))
    assert not upward, f"{module} imports {upward}, which are not below {own!r}"


def test_every_part_is_a_package_with_an_init() -> None:
    folders = [p for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"]
    missing = [p.name for p in folders if not (p / "__init__.py").is_file()]
    assert not missing


def test_the_layer_test_sees_an_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("def f():\n    from distcron.replica.leader import LeaderTerm\n")
    assert _imports(module) == {"distcron.replica.leader"}
    assert _level(_part("distcron.replica.leader")) < _level(_part("distcron.scheduler.core"))
