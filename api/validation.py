"""Checks on a submitted spec that need the server's settings: every path it reads must
resolve inside an allowed data directory, so an API key cannot make a worker read (or
generate files into) arbitrary places on the GPU machines."""

from __future__ import annotations

from fastapi.exceptions import RequestValidationError

from jobs.paths import absolutized, escapes
from jobs.settings import Settings
from leap_core.config import JobSpec


def check_paths(spec: JobSpec, settings: Settings) -> None:
    """Raise a 422 naming each field whose path escapes the allowed data roots."""
    roots = settings.resolved_data_roots()
    errors = [{"type": "value_error", "loc": ("body", *escape.field.split(".")),
               "msg": escape.message(roots), "input": escape.value}
              for escape in escapes(spec.model_dump(mode="json"), roots)]
    if errors:
        raise RequestValidationError(errors)


def resolved_spec(spec: JobSpec, settings: Settings) -> dict:
    """The spec as workers will read it: relative data paths made absolute under the first
    allowed root."""
    return absolutized(spec.model_dump(mode="json"), settings.resolved_data_roots())
