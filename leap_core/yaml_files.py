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
        return yaml.safe_load(path.read_text())
    except OSError as problem:
        raise error(f"{label}: {problem.strerror}") from None
    except yaml.YAMLError as problem:
        first = str(problem).splitlines()[0]
        raise error(f"{label}: not valid YAML ({first})") from None
