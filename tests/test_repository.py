"""Repository-level checks: the layout the README promises and the boundaries between
the layers, found by import analysis."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROJECT_PACKAGES = {"leap_core", "leap_cli", "jobs", "api", "worker"}
SERVICE_FRAMEWORKS = {"fastapi", "starlette", "celery", "sqlalchemy", "alembic", "psycopg"}
SERVICE_FRAMEWORKS |= {"redis", "uvicorn", "kombu"}
HTTP = {"fastapi", "starlette", "uvicorn", "httpx", "requests", "urllib3", "aiohttp"}

#: What each layer must not import: the library knows no service, no command line and no
#: HTTP client; the job domain knows no HTTP and no worker; the API never imports the
#: worker (it only sends messages), nor does the worker import the API.
FORBIDDEN: dict[str, set[str]] = {
    "leap_core": {"api", "jobs", "worker", "leap_cli"} | SERVICE_FRAMEWORKS | HTTP,
    "jobs": {"api", "worker", "leap_cli"} | HTTP,
    "api": {"worker", "leap_cli"},
    "worker": {"api", "leap_cli"} | HTTP,
}
IMPORT_FUNCTIONS = {"import_module", "__import__"}


def _string_prefix(node: ast.expr) -> str | None:
    """A module name given as a string, or the literal start of an f-string
    (``f"leap_core.data.{name}"`` names at least ``leap_core.data``)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values:
        first = node.values[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            return first.value.rstrip(".") or None
    return None


def imported_modules(path: Path, module: str) -> list[str]:
    """Every module a file imports: ``import``/``from`` statements (relative ones resolved
    against the importing ``module``), and the string arguments of ``importlib.import_module`` and
    ``__import__``, wherever they appear (inside functions too)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = module.split(".")[: len(module.split(".")) - node.level]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.append(base)
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in IMPORT_FUNCTIONS and (name := _string_prefix(node.args[0])):
                names.append(name)
    return names


def boundary_violations(root: Path, forbidden: dict[str, set[str]]) -> list[str]:
    """``file: module`` for each import that crosses a forbidden boundary."""
    found = []
    for layer, banned in sorted(forbidden.items()):
        for path in sorted((root / layer).rglob("*.py")):
            module = ".".join(path.relative_to(root).with_suffix("").parts)
            found += [
                f"{path.relative_to(root)}: {name}"
                for name in imported_modules(path, module)
                if name.split(".")[0] in banned
            ]
    return found


def test_every_layer_keeps_to_its_boundaries():
    assert sorted(PROJECT_PACKAGES) == sorted(
        path.parent.name for path in ROOT.glob("*/__init__.py") if path.parent.name != "tests"
    )
    assert boundary_violations(ROOT, FORBIDDEN) == []


def test_a_deliberate_violation_is_found_in_every_form(tmp_path: Path):
    """The check is not vacuous: a library module that reaches the service by a plain
    import, a relative import, a lazy import inside a function, ``import_module`` with a
    string or an f-string, and ``__import__``, is named once for each."""
    (tmp_path / "leap_core" / "sub").mkdir(parents=True)
    (tmp_path / "leap_core" / "__init__.py").write_text("")
    (tmp_path / "leap_core" / "sub" / "__init__.py").write_text("")
    (tmp_path / "leap_core" / "sub" / "bad.py").write_text(
        "import importlib\n"
        "import jobs.admin\n"
        "from .. import sibling\n"
        "def later():\n"
        "    from api.main import app\n"
        "    importlib.import_module('worker.runner')\n"
        "    name = 'x'\n"
        "    importlib.import_module(f'leap_cli.{name}')\n"
        "    __import__('httpx')\n"
    )
    found = boundary_violations(tmp_path, {"leap_core": FORBIDDEN["leap_core"] | {"leap_core"}})
    assert found == [
        "leap_core/sub/bad.py: jobs.admin",
        "leap_core/sub/bad.py: leap_core",
        "leap_core/sub/bad.py: api.main",
        "leap_core/sub/bad.py: worker.runner",
        "leap_core/sub/bad.py: leap_cli",
        "leap_core/sub/bad.py: httpx",
    ]
    assert (
        boundary_violations(tmp_path, {"leap_core": FORBIDDEN["leap_core"]})
        == found[:1] + found[2:]
    )


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """Every node under an ``if TYPE_CHECKING:`` block (imports for annotations only)."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        test = getattr(node, "test", None)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in (
            getattr(test, "id", None),
            getattr(test, "attr", None),
        ):
            inside |= {id(child) for child in ast.walk(node)}
    return inside


def runtime_import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module → the modules of ``package`` it imports when it runs (at load or inside a
    function), leaving out imports under ``TYPE_CHECKING``. ``from pkg import name`` is an
    import of ``pkg.name`` when that is a module, else of ``pkg``."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {module: set() for module in modules}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        skipped = _type_checking_nodes(tree)
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = module.split(".")
                    keep = len(parts) - node.level + (1 if is_package else 0)
                    base = ".".join(parts[:keep] + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                named = [f"{base}.{alias.name}" for alias in node.names]
                targets = [name for name in named if name in modules] or [base]
            else:
                continue
            graph[module] |= {name for name in targets if name in modules and name != module}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that reach each other through imports (Tarjan's strongly
    connected components of more than one module)."""
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        order[module] = low[module] = len(order)
        stack.append(module)
        for target in sorted(graph[module]):
            if target not in order:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], order[target])
        if low[module] == order[module]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for module in sorted(graph):
        if module not in order:
            visit(module)
    return cycles


@pytest.mark.parametrize("package", ["leap_core", "worker"])
def test_no_two_modules_import_each_other(package: str):
    assert import_cycles(runtime_import_graph(ROOT, package)) == []


def test_an_import_cycle_is_found_and_annotations_are_not_one(tmp_path: Path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("from pkg import a\n")
    (tmp_path / "pkg" / "a.py").write_text("from pkg import b\n")
    (tmp_path / "pkg" / "b.py").write_text("def later():\n    import pkg.a\n")
    (tmp_path / "pkg" / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import d\n"
    )
    (tmp_path / "pkg" / "d.py").write_text("from . import c\n")
    assert import_cycles(runtime_import_graph(tmp_path, "pkg")) == [["pkg.a", "pkg.b"]]


def test_top_level_layout_exists():
    for name in [
        "api",
        "jobs",
        "leap_cli",
        "worker",
        "leap_core",
        "docker",
        "migrations",
        "tests",
        "benchmarks",
        "examples",
        "docs",
        "docker-compose.yml",
        "pyproject.toml",
        "README.md",
        "Makefile",
        ".ci/run",
    ]:
        assert (ROOT / name).exists(), name


def test_compose_file_is_valid_and_every_service_is_pinned_and_checked():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) >= {"postgres", "redis", "mlflow"}
    declared_volumes = set(compose.get("volumes", {}))
    for name, service in services.items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: unpinned {image}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared_volumes, f"{name}: undeclared volume {source}"
    assert "${LEAP_POSTGRES_PASSWORD:?" in services["postgres"]["environment"]["POSTGRES_PASSWORD"]


def test_the_command_line_starts_without_the_heavy_libraries():
    """``leap --help`` and the client commands load the CLI's own dependencies only; torch,
    MLflow, numpy and the database layer come with the commands that use them."""
    probe = (
        "import sys, leap_cli, leap_cli.client;"
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'torch', 'torchvision', 'mlflow', 'numpy', 'sqlalchemy', 'PIL', 'matplotlib'}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert result.stdout.strip() == "[]"
