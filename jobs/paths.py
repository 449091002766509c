"""Confinement of the paths a job reads to the allowed data directories.

The API checks a spec when it is submitted; the worker checks it again just before it
trains, after resolving symlinks once more, because a symlink inside an allowed directory
can be re-pointed between the two. Both use these functions, which know nothing of HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Every spec field that names a file or folder the worker reads, as (section, key).
PATH_FIELDS: tuple[tuple[str, str], ...] = (
    ("dataset", "root"),
    ("eval", "lfw_root"),
    ("eval", "pairs_file"),
)


@dataclass(frozen=True)
class Escape:
    """A path field whose value resolves outside every allowed root, or not at all
    (``resolved`` is None)."""

    field: str
    value: str
    resolved: Path | None

    def message(self, roots: list[Path]) -> str:
        where = (
            f"resolves to {self.resolved}"
            if self.resolved is not None
            else "cannot be resolved on this machine"
        )
        return (
            f"must be inside the allowed data directories "
            f"(LEAP_DATA_ROOTS: {', '.join(map(str, roots))}); {self.value!r} {where}"
        )


def inside(path: Path, roots: list[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def resolve_under(value: str, roots: list[Path]) -> Path | None:
    """``value`` with ``~``, ``..`` and every symlink resolved; a relative path is taken
    under the first root. None when it cannot be resolved: ``~name`` of a user this machine
    does not know, a symlink loop, a NUL character. Such a path is refused, never kept as
    written: another machine (a worker) might resolve it differently."""
    try:
        path = Path(value).expanduser()
        return path.resolve() if path.is_absolute() else (roots[0] / path).resolve()
    except (RuntimeError, ValueError, OSError):
        return None


def escapes(spec: dict[str, Any], roots: list[Path]) -> list[Escape]:
    """The path fields of the spec (as a JSON dict) that resolve outside ``roots``."""
    found = []
    for section, key in PATH_FIELDS:
        value = (spec.get(section) or {}).get(key)
        if value is None:
            continue
        resolved = resolve_under(str(value), roots)
        if resolved is None or not inside(resolved, roots):
            found.append(Escape(f"{section}.{key}", str(value), resolved))
    return found


def missing(spec: dict[str, Any], roots: list[Path]) -> list[tuple[str, str, Path]]:
    """``(field, value, root)`` for each path field that resolves inside an allowed root
    this machine can see but names nothing there. A root that is not mounted here (the API
    may run apart from the GPU machines) says nothing, and a synthetic dataset's root is
    generated when missing."""
    found = []
    for section, key in PATH_FIELDS:
        value = (spec.get(section) or {}).get(key)
        if value is None or (section == "dataset" and spec["dataset"].get("format") == "synthetic"):
            continue
        resolved = resolve_under(str(value), roots)
        root = next((r for r in roots if resolved is not None and inside(resolved, [r])), None)
        if resolved is not None and root is not None and root.is_dir() and not resolved.exists():
            found.append((f"{section}.{key}", str(value), root))
    return found


def absolutized(spec: dict[str, Any], roots: list[Path]) -> dict[str, Any]:
    """A copy of the spec whose relative path fields are made absolute under the first root
    (workers and API may run in different folders). Absolute ones are kept as written, so
    the worker's own check resolves their symlinks again."""
    data = {
        section: dict(values) if isinstance(values, dict) else values
        for section, values in spec.items()
    }
    for section, key in PATH_FIELDS:
        value = (data.get(section) or {}).get(key)
        if value is not None and not Path(value).expanduser().is_absolute():
            data[section][key] = str((roots[0] / value).resolve())
    return data
