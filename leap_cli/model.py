"""``leap embed``, ``leap search`` and ``leap export``: using a trained model.

Embed a folder of images into a gallery file, search it with a query image or folder
(top-k with cosine scores), and export the network as ONNX or TorchScript for serving.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from leap_cli.common import JsonOption, fail, strict_json, usage_errors

if TYPE_CHECKING:
    import numpy as np

    from leap_core.inference.embedder import Embedder

Checkpoint = Annotated[
    Path,
    typer.Argument(
        help="checkpoint written by leap train: last.pt, a sharded run's last.shards, the "
        "run folder, or a registered model (models:/NAME@ALIAS, models:/NAME/VERSION)"
    ),
]


def _embed_with_progress(embedder: Embedder, files: list[Path], console: Console) -> np.ndarray:
    columns = (TextColumn("embedding"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("embed", total=len(files))

        def report(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        return embedder.embed(files, progress=report)


def embed(
    checkpoint: Checkpoint,
    images: Annotated[Path, typer.Argument(help="an image, or a folder searched recursively")],
    out: Annotated[Path, typer.Option(help="gallery file to write (.npz)")],
    batch_size: Annotated[int, typer.Option(min=1, help="images per forward pass")] = 64,
) -> None:
    """Embed images with a trained model into a gallery file (embeddings and file names)."""
    from leap_core.inference.embedder import Embedder, image_files
    from leap_core.inference.gallery import Gallery

    console = Console(stderr=True)
    try:
        embedder = Embedder.from_checkpoint(checkpoint)
        files = image_files(images)
        vectors = _embed_with_progress(embedder, files, console)
    except usage_errors() as error:
        fail(str(error))
    root = images.resolve() if images.is_dir() else images.resolve().parent
    gallery = Gallery(
        vectors,
        [str(path.resolve().relative_to(root)) for path in files],
        root,
        embedder.checkpoint,
    )
    written = gallery.save(out)
    typer.echo(f"embedded {len(files)} images ({embedder.spec.model.embedding_dim}-d) to {written}")


def search(
    gallery_file: Annotated[Path, typer.Argument(help="gallery written by leap embed")],
    query: Annotated[Path, typer.Argument(help="a query image, or a folder of them")],
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="matches per query")] = 5,
    checkpoint: Annotated[
        Path | None, typer.Option(help="model for the queries (default: the gallery's)")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """The gallery images closest to each query, best first, with cosine scores."""
    from leap_core.inference.embedder import Embedder, image_files
    from leap_core.inference.gallery import Gallery
    from leap_core.inference.gallery import search as nearest

    console = Console(stderr=as_json)
    try:
        gallery = Gallery.load(gallery_file)
        embedder = Embedder.from_checkpoint(checkpoint or gallery.checkpoint)
        files = image_files(query)
        matches = nearest(gallery, _embed_with_progress(embedder, files, console), top_k)
    except usage_errors() as error:
        fail(str(error))
    if as_json:
        typer.echo(
            strict_json(
                [
                    {
                        "query": str(path),
                        "matches": [{"file": m.file, "score": m.score} for m in found],
                    }
                    for path, found in zip(files, matches, strict=True)
                ]
            )
        )
        return
    for path, found in zip(files, matches, strict=True):
        console.print(f"[bold]{path}[/]", highlight=False, soft_wrap=True)
        for rank, match in enumerate(found, start=1):
            console.print(
                f"  {rank}. {match.score:.3f}  {match.file}", highlight=False, soft_wrap=True
            )


def _beside(checkpoint: Path, suffix: str) -> Path:
    """``last.pt`` → ``last.onnx`` beside it; a folder's checkpoint → ``last.onnx`` in its
    run folder (never inside the checkpoint folder)."""
    if str(checkpoint).startswith("models:/"):  # models:/name@alias → name-alias.onnx here
        reference = str(checkpoint).removeprefix("models:/")
        return Path(reference.replace("@", "-").replace("/", "-") + suffix)
    if checkpoint.is_file():
        return checkpoint.with_name(f"{checkpoint.stem}{suffix}")
    from leap_core.training.checkpoint_store import run_dir_of

    return run_dir_of(checkpoint) / f"last{suffix}"


def export(
    checkpoint: Checkpoint,
    format: Annotated[str, typer.Option("--format", help="onnx or torchscript")] = "onnx",
    out: Annotated[
        Path | None, typer.Option(help="file to write (default: beside the checkpoint)")
    ] = None,
) -> None:
    """Export the trained network for serving: a batch of transformed images in, embeddings
    (before L2 normalisation) out, any batch size."""
    from leap_core.inference.export import EXPORTERS, SUFFIXES
    from leap_core.inference.export import export as write

    if format not in EXPORTERS:
        fail(f"--format must be one of {', '.join(EXPORTERS)}, got {format!r}")
    target = out or _beside(checkpoint, SUFFIXES[format])
    refused: tuple[type[BaseException], ...] = (RuntimeError, *usage_errors())
    try:
        with Console(stderr=True).status(f"exporting to {format}"):
            written = write(checkpoint, format, target)
    except refused as error:
        fail(str(error))
    typer.echo(f"wrote {written}")
