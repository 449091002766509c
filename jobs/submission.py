"""What a submitted body must satisfy beyond its schema before anything is stored.

Every path a spec reads must resolve inside an allowed data directory, so an API key cannot
make a worker read (or generate files into) arbitrary places on the GPU machines; and every
value must be one the database can store, nested no deeper than a spec needs, so a body
that passes its schema is refused, naming the field, rather than failing at its INSERT or
in the recursive code that expands a sweep. Problems are raised as :class:`Refused`; the
API turns them into a 422, and nothing here knows HTTP.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from jobs.fair_queue import queued_count
from jobs.paths import absolutized, escapes, missing
from jobs.settings import Settings

#: Problems listed per request at most; one is enough to fix, a few show a pattern.
MAX_PROBLEMS = 20
#: Deepest nesting of lists and mappings in a body. A real sweep nests 5 levels
#: (``base.train.schedule.milestones.0``, ``axes.<axis>.<label>.<field>``); its free-form
#: parts (base, set, axes, overrides) are copied recursively, so a body nested hundreds
#: deep would exhaust the stack there.
MAX_DEPTH = 32


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a submission: where (a path into the body), what, and the value
    that was sent (None when showing it would not help, e.g. a subtree too deep)."""

    loc: tuple[str, ...]
    message: str
    value: Any = None
    kind: str = "value_error"


class Refused(ValueError):
    """A submission refused before anything was stored, with every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{'.'.join(p.loc)}: {p.message}" for p in problems))
        self.problems = problems


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "must not contain NUL characters (\\u0000)"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode: an unpaired surrogate (\\ud800-\\udfff) is not"
    return None


def _value_problems(data: Any) -> list[Problem]:
    """A problem for each string (or mapping key) the database cannot
    store, each number JSON cannot carry (NaN, ±Infinity, which Python's JSON parser reads)
    and each list or mapping nested deeper than :data:`MAX_DEPTH`, anywhere in ``data``, in
    path order. Iterative, so a deep body costs no stack here."""
    found: list[Problem] = []
    pending: list[tuple[tuple[str, ...], Any]] = [((), data)]
    while pending:
        path, value = pending.pop()
        if isinstance(value, dict | list | tuple) and len(path) >= MAX_DEPTH:
            found.append(Problem(path, f"nested deeper than {MAX_DEPTH} levels"))
        elif isinstance(value, str):
            problem = _text_problem(value)
            if problem:
                found.append(Problem(path, problem, value))
        elif isinstance(value, float) and not math.isfinite(value):
            found.append(Problem(path, "must be a finite number", str(value)))
        elif isinstance(value, dict):
            for key, item in value.items():
                problem = _text_problem(str(key))
                if problem:
                    found.append(Problem((*path, str(key)), f"field name {problem}", str(key)))
                pending.append(((*path, str(key)), item))
        elif isinstance(value, list | tuple):
            pending.extend(((*path, str(index)), item) for index, item in enumerate(value))
    return sorted(found, key=lambda problem: problem.loc)


def check_storable(body: dict[str, Any]) -> None:
    """Refuse a body (as JSON-like data) holding any value :func:`_value_problems` finds."""
    problems = _value_problems(body)[:MAX_PROBLEMS]
    if problems:
        raise Refused(problems)


class QueueFull(RuntimeError):
    """The owner has as many queued jobs as ``LEAP_MAX_QUEUED_PER_OWNER`` allows."""


def check_queue_room(session: Session, settings: Settings, owner: str, adding: int) -> None:
    """Refuse ``adding`` more queued jobs of ``owner`` past ``LEAP_MAX_QUEUED_PER_OWNER``."""
    limit = settings.max_queued_per_owner
    if limit is None:
        return
    queued = queued_count(session, owner)
    if queued + adding > limit:
        raise QueueFull(
            f"{queued} of your jobs are queued and this request adds {adding}; "
            f"LEAP_MAX_QUEUED_PER_OWNER allows {limit}: wait for some to start, or cancel some"
        )


def check_devices(devices: int, settings: Settings, at: tuple[str, ...] = ()) -> None:
    """Refuse a job that asks for more devices (its validated ``resources.devices``) than
    any worker has: it would wait forever."""
    if devices > settings.max_devices_per_job:
        raise Refused(
            [
                Problem(
                    (*at, "resources", "devices"),
                    f"{devices} devices asked; the largest job this service runs has "
                    f"{settings.max_devices_per_job} (LEAP_MAX_DEVICES_PER_JOB)",
                    devices,
                )
            ]
        )


def confined_spec(spec: dict[str, Any], settings: Settings, at: tuple[str, ...] = ()) -> dict:
    """The spec (as JSON) as workers will read it, its relative data paths made absolute
    under the first allowed root; refused, naming each field (under ``at``), when any path
    resolves outside the allowed data directories. The worker checks again before it
    trains (a symlink can be re-pointed in between)."""
    roots = settings.resolved_data_roots()
    problems = [
        Problem((*at, *escape.field.split(".")), escape.message(roots), escape.value)
        for escape in escapes(spec, roots)
    ]
    if problems:  # outside is the first thing to fix; only then is existence worth saying
        raise Refused(problems)
    problems = [
        Problem(
            (*at, *field.split(".")),
            f"does not exist: {value!r} names nothing in {root} (LEAP_DATA_ROOTS)",
            value,
        )
        for field, value, root in missing(spec, roots)
    ]
    if problems:
        raise Refused(problems)
    return absolutized(spec, roots)
