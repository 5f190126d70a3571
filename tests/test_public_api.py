"""The public surface: sorted, exact ``__all__``; layering rules enforced by scanning imports."""

from __future__ import annotations

import ast
import importlib
import pathlib
from types import ModuleType

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

PUBLIC_MODULES = [
    "supervisor",
    "supervisor.aio",
    "actors",
    "actors.exchanges",
    "actors.net",
    "supervisor.testing",
]


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


def test_config_package_exports_exactly_its_seam() -> None:
    # supervisor.config is a package (schema, load, _check, _toml); users import from
    # the package only. Its __all__ is sorted ruff's way (constants first), so only the
    # set is compared here.
    module = importlib.import_module("supervisor.config")
    assert (
        set(module.__all__)
        == _public_names(module)
        == {
            "DEFAULT_CONNECT_ATTEMPTS",
            "DEFAULT_CONNECT_INTERVAL",
            "DEFAULT_MAX_RESTARTS",
            "DEFAULT_SHUTDOWN_TIMEOUT",
            "DEFAULT_WITHIN",
            "Config",
            "ConnectionConfig",
            "RestSettings",
            "SupervisorSettings",
            "config_from_dict",
            "load_config",
            "loads_config",
        }
    )


TESTING_MODULES = [
    "supervisor.testing.fake",
    "supervisor.testing.fakes.binance",
    "supervisor.testing.fakes.bybit",
    "supervisor.testing.fakes.deribit",
    "supervisor.testing.fakes.okx",
]


def _defined_public_names(module: ModuleType) -> set[str]:
    """Public names a module defines at top level (classes, functions, assignments)."""
    assert module.__file__ is not None
    tree = ast.parse(pathlib.Path(module.__file__).read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {name for name in names if not name.startswith("_")}


@pytest.mark.parametrize("name", TESTING_MODULES)
def test_testing_modules_export_what_they_define(name: str) -> None:
    # The generic fake and the per-exchange fakes are public modules: tests and users
    # import their constants (e.g. fakes.binance.DEFAULT_EPOCH_MS). Their __all__ is
    # sorted ruff's way (constants first), so only the set is compared.
    module = importlib.import_module(name)
    assert set(module.__all__) == _defined_public_names(module)


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


SUPERVISOR_FILES = sorted((ROOT / "supervisor").rglob("*.py"))


def _private_actors_imports(text: str, where: str) -> list[str]:
    """``where:line: statement`` for each import of a private ``actors`` module or name."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
            names: list[str] = []
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module]
            names = [alias.name for alias in node.names]
        else:
            continue
        for module in modules:
            parts = module.split(".")
            private = any(part.startswith("_") for part in parts) or any(
                name.startswith("_") for name in names
            )
            if parts[0] == "actors" and private:
                found.append((node.lineno, f"{where}:{node.lineno}: {ast.unparse(node)}"))
    return [line for _, line in sorted(found)]


@pytest.mark.parametrize("path", SUPERVISOR_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_supervisor_imports_only_public_actors_names(path: pathlib.Path) -> None:
    # supervisor builds on actors' public surface (actors, actors.exchanges, actors.net,
    # actors.registry, actors.connection), so actors can rearrange its private modules
    # without breaking the supervisor (structure review P5).
    text = path.read_text(encoding="utf-8")
    assert _private_actors_imports(text, str(path.relative_to(ROOT))) == []


def test_private_import_scan_names_file_and_line() -> None:
    text = (
        "from actors import ConsumerQueue\n"
        "from actors._errors import ConfigError\n"
        "from actors.exchanges._pacing import Pacer\n"
        "import actors._errors\n"
        "from actors.net import _connect\n"
        "from actors.registry import Stats\n"
        "from supervisor._stream import MessageStream\n"
    )
    assert _private_actors_imports(text, "supervisor/x.py") == [
        "supervisor/x.py:2: from actors._errors import ConfigError",
        "supervisor/x.py:3: from actors.exchanges._pacing import Pacer",
        "supervisor/x.py:4: import actors._errors",
        "supervisor/x.py:5: from actors.net import _connect",
    ]


@pytest.mark.parametrize("path", SUPERVISOR_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_supervisor_imports_at_module_level_only(path: pathlib.Path) -> None:
    # An import inside a function is how import circles get hidden (cli <-> demo once
    # did this); shared code goes into a module both import instead.
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nested = [
        f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}"
        for function in ast.walk(tree)
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef)
        for node in ast.walk(function)
        if isinstance(node, ast.Import | ast.ImportFrom)
    ]
    assert nested == []


def test_rest_errors_are_one_class_everywhere() -> None:
    # RestError and RateLimited live in the one error tree (actors._errors) and are the
    # same classes whichever package a caller imports them from.
    import actors
    import actors.net.rest
    import supervisor

    for name in ("RestError", "RateLimited"):
        cls = getattr(actors._errors, name)
        assert getattr(actors, name) is cls
        assert getattr(supervisor, name) is cls
        assert getattr(actors.net.rest, name) is cls
        assert issubclass(cls, actors.SupervisorError)
        assert not issubclass(cls, actors.TransportError)
