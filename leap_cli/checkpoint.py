"""``leap checkpoint``: a sharded run's checkpoint as one file.

A sharded run writes each rank's classes to its own file (``last.shards``); every command
that reads a checkpoint reads that folder directly, at any world size. ``consolidate``
writes the single file a one-process run writes, for tools that expect one file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from leap_cli.common import fail, usage_errors

app = typer.Typer(help="Inspect and convert checkpoints.", no_args_is_help=True)


@app.command("consolidate")
def consolidate(
    source: Annotated[
        Path, typer.Argument(help="a sharded checkpoint (last.shards) or its run folder")
    ],
    out: Annotated[
        Path | None,
        typer.Option(help="file to write (default: consolidated.pt in the run folder)"),
    ] = None,
) -> None:
    """Write a checkpoint as one file in the one-process layout (every class's rows are
    held in memory while it is written)."""
    from leap_core.training.checkpoint import CheckpointWriteError
    from leap_core.training.checkpoint_store import consolidate as write
    from leap_core.training.checkpoint_store import open_checkpoint, run_dir_of

    refused: tuple[type[BaseException], ...] = (*usage_errors(), CheckpointWriteError)
    try:
        target = out or run_dir_of(source) / "consolidated.pt"
        with Console(stderr=True).status(f"consolidating {source} into {target}"):
            checkpoint = open_checkpoint(source)
            written = write(checkpoint, target)
    except refused as error:
        fail(str(error), code=1 if isinstance(error, CheckpointWriteError) else 2)
    typer.echo(
        f"wrote {written}: {checkpoint.num_classes} classes from "
        f"{checkpoint.world_size} rank file(s) of {checkpoint.path}"
    )
