"""Repository-level checks: the layout the README promises and the library boundary."""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN_IN_CORE = {
    "fastapi",
    "celery",
    "sqlalchemy",
    "alembic",
    "psycopg",
    "redis",
    "uvicorn",
    "kombu",
}


def test_leap_core_imports_no_service_framework():
    offenders = []
    for path in sorted((ROOT / "leap_core").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            offenders += [
                f"{path.relative_to(ROOT)}: {name}"
                for name in names
                if name.split(".")[0] in FORBIDDEN_IN_CORE
            ]
    assert offenders == []


def test_top_level_layout_exists():
    for name in [
        "api",
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
