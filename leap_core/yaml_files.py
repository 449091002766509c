"""Reading a YAML (or JSON) file a user wrote, with the one error message every caller
gives: the file named with the operating system's reason, or with the parser's first line
when it is not YAML. Each caller raises it as its own error type (a spec error, a sweep
error), so the CLI and the API report it as they report the rest of that file's problems.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def read_yaml(path: Path, label: str, error: type[Exception] = ValueError) -> Any:
    """The parsed content of ``path``; ``error`` naming ``label`` (e.g. ``"spec file x.yaml"``)
    when it cannot be read or is not valid YAML."""
    try:
        with path.open() as stream:
            return yaml.safe_load(stream)
    except OSError as problem:
        raise error(f"{label}: {problem.strerror}") from None
    except yaml.YAMLError as problem:
        raise error(f"{label}: not valid YAML ({_where(problem)})") from None


def _where(problem: yaml.YAMLError) -> str:
    """``line 3, column 7: mapping values are not allowed here``, or the parser's first
    line when it gives no position."""
    mark = getattr(problem, "problem_mark", None)
    what = getattr(problem, "problem", None)
    if mark is not None and what:
        return f"line {mark.line + 1}, column {mark.column + 1}: {what}"
    return str(problem).splitlines()[0]
