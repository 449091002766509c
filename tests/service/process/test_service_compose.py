"""The production compose file, checked without Docker: it validates against the Compose
specification, and every command, module, Dockerfile and file it names exists here."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from jobs.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_compose_file_validates_against_the_compose_specification():
    checker = shutil.which("check-jsonschema") or str(
        Path(sys.executable).parent / "check-jsonschema"
    )
    result = subprocess.run(
        [checker, "--builtin-schema", "vendor.compose-spec", str(ROOT / "docker-compose.yml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_stack_has_every_part_and_the_order_of_start_up():
    assert set(SERVICES) == {
        "postgres",
        "redis",
        "mlflow",
        "migrate",
        "api",
        "maintenance",
        "worker",
    }
    for name in ("postgres", "redis", "mlflow", "api", "worker"):
        assert "healthcheck" in SERVICES[name], name
    assert SERVICES["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    for name in ("worker", "maintenance"):
        assert (
            SERVICES[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        )
    gpu = SERVICES["worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and gpu["capabilities"] == ["gpu"]
    assert "postgresql" in " ".join(SERVICES["mlflow"]["command"])
    assert "ports" not in SERVICES["worker"]  # so --scale worker=N has no port clash


def _module_exists(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return (
        path.with_suffix(".py").is_file()
        or (path / "__main__.py").is_file()
        or importlib.util.find_spec(name) is not None
    )


def test_every_service_command_exists_in_the_project():
    for name, service in SERVICES.items():
        if "build" not in service:
            continue
        dockerfile = ROOT / service["build"]["dockerfile"]
        assert dockerfile.is_file(), name
        for source in re.findall(r"^COPY (\S+)", dockerfile.read_text(), re.MULTILINE):
            assert (ROOT / source).exists(), f"{dockerfile.name}: COPY {source}"
        command = service.get("command") or re.search(
            r"^CMD (\[.*\])", dockerfile.read_text(), re.MULTILINE
        ).group(1)
        command = yaml.safe_load(command) if isinstance(command, str) else command
        if command[:2] == ["python", "-m"]:
            assert _module_exists(command[2]), f"{name}: python -m {command[2]}"
        elif command[0] == "uvicorn":
            module, attribute = command[1].split(":")
            assert hasattr(importlib.import_module(module), attribute), f"{name}: {command[1]}"
        elif command[0] == "mlflow":
            assert command[1] == "server" and importlib.util.find_spec("mlflow.server")
        else:
            raise AssertionError(f"{name}: unknown command {command}")
        for file in service.get("env_file", []):
            assert (ROOT / file).is_file(), f"{name}: env_file {file}"


def test_the_env_file_sets_only_real_settings():
    fields = {f"LEAP_{field.upper()}" for field in Settings.model_fields}
    keys = [
        line.split("=", 1)[0]
        for line in (ROOT / "docker/leap.env").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    unknown = [
        key for key in keys if key.startswith("LEAP_") and key not in fields and key != "LEAP_HOME"
    ]
    assert unknown == []


@pytest.mark.parametrize(
    "name, url",
    [
        ("LEAP_DATABASE_URL", "postgresql+psycopg://leap:changeme@db/leap"),
        ("LEAP_BROKER_URL", "redis://:changeme@redis:6379/0"),
        ("LEAP_MLFLOW_TRACKING_URI", "postgresql://mlflow:changeme@db/mlflow"),
    ],
)
def test_settings_refuse_a_placeholder_password(monkeypatch, name, url):
    monkeypatch.setenv(name, url)
    with pytest.raises(ValueError, match="placeholder password 'changeme'"):
        Settings()


def test_the_api_refuses_to_start_with_a_placeholder_secret(tmp_path):
    env = {
        **os.environ,
        "LEAP_HOME": str(tmp_path),
        "LEAP_DATABASE_URL": "postgresql+psycopg://leap:changeme@127.0.0.1:1/leap",
    }
    started = subprocess.run(
        [sys.executable, "-m", "uvicorn", "api.main:app", "--port", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode != 0
    assert "database_url" in started.stderr
    assert "contains the placeholder password 'changeme'; set a real one" in started.stderr
