"""What every ``leap`` command shares: the options, the error exit, strict JSON output.

Light on purpose: ``leap --help`` and the service client import this, and neither may wait
for torch. Commands import the library's heavy parts inside their bodies.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="override a spec field: path.to.field=value (repeatable)"),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="print the final metrics as one JSON object on stdout")
]


def output_console(stderr: bool = False) -> Console:
    """A console for a command's output. On a terminal it fits the window; to a pipe or a
    file nothing is wrapped (rich would otherwise cut lines at 80 columns, breaking status
    lines, table titles and URLs), and there is no colour."""
    console = Console(stderr=stderr)
    return console if console.is_terminal else Console(stderr=stderr, width=1000, soft_wrap=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """One ``error:`` line on stderr, never wrapped, and the exit code (2: bad input)."""
    line = " ".join(str(message).split())
    Console(stderr=True).print(f"[red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def usage_errors() -> tuple[type[BaseException], ...]:
    """The errors that mean "the input is wrong" (exit 2, one line, no traceback)."""
    from leap_core.config import SpecError
    from leap_core.data.records import DatasetError
    from leap_core.models import PretrainedWeightsMissing
    from leap_core.tracking.retry import TrackingMisconfigured

    return (
        SpecError,
        DatasetError,
        PretrainedWeightsMissing,
        TrackingMisconfigured,
        FileNotFoundError,
        ValueError,
    )


def finite_or_none(value: Any) -> Any:
    """``value`` with every NaN and infinity replaced by None, at any depth: strict JSON
    has no such numbers, and ``json.dumps`` would write bare ``NaN``."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(item) for item in value]
    return value


def strict_json(value: Any, **options: Any) -> str:
    """JSON any parser accepts (see :func:`finite_or_none`)."""
    return json.dumps(finite_or_none(value), allow_nan=False, **options)
