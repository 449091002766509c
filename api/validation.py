"""Checks on a submitted spec that need the server's settings: every path it reads must
resolve inside an allowed data directory, so an API key cannot make a worker read (or
generate files into) arbitrary places on the GPU machines."""

from __future__ import annotations

from pathlib import Path

from fastapi.exceptions import RequestValidationError

from jobs.settings import Settings
from leap_core.config import JobSpec


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def check_paths(spec: JobSpec, settings: Settings) -> None:
    """Raise a 422 naming each field whose path escapes the allowed data roots."""
    roots = settings.resolved_data_roots()
    fields = {"dataset.root": spec.dataset.root, "eval.lfw_root": spec.eval.lfw_root,
              "eval.pairs_file": spec.eval.pairs_file}
    errors = []
    for name, value in fields.items():
        if value is None:
            continue
        resolved = Path(value).expanduser()
        resolved = resolved.resolve() if resolved.is_absolute() else (roots[0] / resolved).resolve()
        if not _inside(resolved, roots):
            errors.append({
                "type": "value_error", "loc": ("body", *name.split(".")),
                "msg": f"must be inside the allowed data directories "
                       f"({', '.join(map(str, roots))}); {value!r} resolves to {resolved}",
                "input": value,
            })
    if errors:
        raise RequestValidationError(errors)


def resolved_spec(spec: JobSpec, settings: Settings) -> dict:
    """The spec as workers will read it: relative data paths made absolute under the first
    allowed root (workers and API may run in different folders)."""
    data = spec.model_dump(mode="json")
    root = settings.resolved_data_roots()[0]
    for section, key in (("dataset", "root"), ("eval", "lfw_root"), ("eval", "pairs_file")):
        value = data[section].get(key)
        if value is not None and not Path(value).expanduser().is_absolute():
            data[section][key] = str((root / value).resolve())
    return data
