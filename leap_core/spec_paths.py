"""A spec as dotted paths: overrides (``--set train.epochs=5``, a sweep's axes) written into
a spec's mapping, a spec file read with its overrides, and a spec flattened to the dotted
parameters MLflow records."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from leap_core.config import JobSpec, SpecError, parse_spec
from leap_core.yaml_files import read_yaml


def set_dotted(data: dict[str, Any], dotted: str, value: Any, where: str) -> None:
    """Set ``a.b.c`` in a nested mapping, creating missing sections; errors start with
    ``where`` (``--set``, a sweep axis) so the user sees which override is wrong."""
    keys = dotted.split(".")
    if not all(keys):
        raise SpecError(f"{where}: field name must be a dotted path, got {dotted!r}")
    node = data
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise SpecError(f"{where}: {dotted}: {key} is not a section (got {child!r})")
        node = child
    node[keys[-1]] = value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``path.to.field=value`` overrides (values parsed as YAML scalars/lists)."""
    result = copy.deepcopy(data)
    for override in overrides:
        path, sep, raw = override.partition("=")
        if not sep or not path.strip():
            raise SpecError(f"--set: expected path.to.field=value, got {override!r}")
        set_dotted(result, path.strip(), yaml.safe_load(raw), "--set")
    return result


def load_spec(path: str | Path, overrides: list[str] | None = None) -> JobSpec:
    """Read a YAML (or JSON) spec file, apply overrides, validate."""
    path = Path(path)
    data = read_yaml(path, f"spec file {path}", SpecError) or {}
    return parse_spec(apply_overrides(data, overrides or []))


def flatten(spec: JobSpec) -> dict[str, str]:
    """Dotted-path → value strings, for MLflow params."""
    flat: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else key, item)
        else:
            flat[prefix] = str(value)

    walk("", spec.model_dump(mode="json"))
    return flat
