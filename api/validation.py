"""Checks on a submitted body beyond its schema: every path a spec reads must resolve
inside an allowed data directory, so an API key cannot make a worker read (or generate
files into) arbitrary places on the GPU machines; and every value must be one the database
can store, nested no deeper than a spec needs, so a body that passes its schema is a 422
rather than a 500 at its INSERT or in the recursive code that expands a sweep."""

from __future__ import annotations

import math
from typing import Any

from fastapi.exceptions import RequestValidationError

from jobs.paths import absolutized, escapes
from jobs.settings import Settings
from leap_core.config import JobSpec

#: Problems listed per request at most; one is enough to fix, a few show a pattern.
MAX_PROBLEMS = 20
#: Deepest nesting of lists and mappings in a body. A real sweep nests 5 levels
#: (``base.train.schedule.milestones.0``, ``axes.<axis>.<label>.<field>``); its free-form
#: parts (base, set, axes, overrides) are copied recursively, so a body nested hundreds
#: deep would exhaust the stack there.
MAX_DEPTH = 32


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "must not contain NUL characters (\\u0000)"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode: an unpaired surrogate (\\ud800-\\udfff) is not"
    return None


def body_problems(data: Any) -> list[tuple[tuple[str, ...], str, Any]]:
    """``(path, problem, value)`` for each string (or mapping key) the database cannot
    store, each number JSON cannot carry (NaN, ±Infinity, which Python's JSON parser reads)
    and each list or mapping nested deeper than :data:`MAX_DEPTH`, anywhere in ``data``, in
    path order. Iterative, so a deep body costs no stack here."""
    found: list[tuple[tuple[str, ...], str, str | None]] = []
    pending: list[tuple[tuple[str, ...], Any]] = [((), data)]
    while pending:
        path, value = pending.pop()
        if isinstance(value, dict | list | tuple) and len(path) >= MAX_DEPTH:
            found.append((path, f"nested deeper than {MAX_DEPTH} levels", None))
        elif isinstance(value, str):
            problem = _text_problem(value)
            if problem:
                found.append((path, problem, value))
        elif isinstance(value, float) and not math.isfinite(value):
            found.append((path, "must be a finite number", str(value)))
        elif isinstance(value, dict):
            for key, item in value.items():
                problem = _text_problem(str(key))
                if problem:
                    found.append(((*path, str(key)), f"field name {problem}", str(key)))
                pending.append(((*path, str(key)), item))
        elif isinstance(value, list | tuple):
            pending.extend(((*path, str(index)), item) for index, item in enumerate(value))
    return sorted(found, key=lambda problem: problem[0])


def check_body(data: dict[str, Any]) -> None:
    """Raise a 422 naming each problem :func:`body_problems` finds in the body."""
    errors = [
        {
            "type": "value_error",
            "loc": ("body", *path),
            "msg": problem,
            **({"input": value} if value is not None else {}),
        }
        for path, problem, value in body_problems(data)[:MAX_PROBLEMS]
    ]
    if errors:
        raise RequestValidationError(errors)


def check_paths(spec: JobSpec, settings: Settings) -> None:
    """Raise a 422 naming each field whose path escapes the allowed data roots."""
    roots = settings.resolved_data_roots()
    errors = [
        {
            "type": "value_error",
            "loc": ("body", *escape.field.split(".")),
            "msg": escape.message(roots),
            "input": escape.value,
        }
        for escape in escapes(spec.model_dump(mode="json"), roots)
    ]
    if errors:
        raise RequestValidationError(errors)


def resolved_spec(spec: JobSpec, settings: Settings) -> dict:
    """The spec as workers will read it: relative data paths made absolute under the first
    allowed root."""
    return absolutized(spec.model_dump(mode="json"), settings.resolved_data_roots())
