"""The public surface: sorted, exact ``__all__``; layering rules enforced by scanning imports."""

from __future__ import annotations

import ast
import importlib
import pathlib
from types import ModuleType

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

PUBLIC_MODULES = ["supervisor", "actors", "actors.exchanges", "actors.net", "supervisor.testing"]


def _public_names(module: ModuleType) -> set[str]:
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, ModuleType)
        and getattr(value, "__module__", module.__name__) != "__future__"
        and name != "annotations"
    }


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_is_sorted_and_exact(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(exported)
    assert set(exported) == _public_names(module)


def _imports(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


ADAPTER_FILES = sorted((ROOT / "actors" / "exchanges").rglob("*.py"))
ACTOR_FILES = sorted((ROOT / "actors").rglob("*.py"))


@pytest.mark.parametrize("path", ADAPTER_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_adapters_are_sans_io(path: pathlib.Path) -> None:
    banned = {"trio", "trio_websocket", "httpx", "anyio", "socket", "ssl", "time", "asyncio"}
    assert _imports(path) & banned == set()


@pytest.mark.parametrize("path", ACTOR_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_actors_never_import_supervisor(path: pathlib.Path) -> None:
    assert "supervisor" not in _imports(path)
