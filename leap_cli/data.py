"""``leap data``: write the synthetic dataset, inspect any supported dataset and its cut.

Bad input ends with one line on stderr naming the file or field, and exit code 2 (the usage
error code), never a traceback: these are the first commands a new user runs.
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from leap_cli.common import fail
from leap_core.data.readers import FORMATS, read_dataset
from leap_core.data.records import SPLITS, SplitListing

if TYPE_CHECKING:
    from leap_core.data.manifest import LongTailManifest

app = typer.Typer(help="Datasets: synthesise, inspect, cut long tails.", no_args_is_help=True)


class SynthLayout(StrEnum):
    """Layouts ``synth`` writes."""

    market1501 = "market1501"
    folders = "folders"


class HeadSelection(StrEnum):
    """How head identities are chosen."""

    count = "count"  # type: ignore[assignment]  # the option's value; shadows str.count
    random = "random"


@app.command()
def synth(
    out_dir: Annotated[Path, typer.Argument(help="Folder to create (absent or empty).")],
    identities: Annotated[int, typer.Option(help="Training identities.")] = 100,
    test_identities: Annotated[
        int | None, typer.Option(help="Query/gallery identities [default: = identities].")
    ] = None,
    cameras: Annotated[int, typer.Option(help="Cameras (>= 2).")] = 6,
    head: Annotated[int, typer.Option(help="Head identities H (all their images).")] = 10,
    tail_samples: Annotated[int, typer.Option(help="Images per tail identity S.")] = 5,
    height: Annotated[int, typer.Option(help="Image height in pixels.")] = 64,
    width: Annotated[int, typer.Option(help="Image width in pixels.")] = 32,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    layout: Annotated[SynthLayout, typer.Option(help="Folder layout.")] = SynthLayout.market1501,
) -> None:
    """Write the seeded synthetic long-tailed person dataset."""
    from leap_core.data.synthetic import SynthConfig, generate_synthetic

    config = SynthConfig(
        identities=identities,
        test_identities=test_identities,
        cameras=cameras,
        head=head,
        tail_samples=tail_samples,
        height=height,
        width=width,
        seed=seed,
        layout=layout.value,
    )
    console = Console(stderr=True)
    columns = (
        TextColumn("rendering"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task("synth", total=None)

            def report(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            summary = generate_synthetic(out_dir, config, progress=report)
    except ValueError as error:
        fail(str(error))
    typer.echo(
        f"wrote {summary.train_images} train, {summary.query_images} query and "
        f"{summary.gallery_images} gallery images ({summary.layout}) to {summary.root}"
    )


def _cut(
    listing: SplitListing,
    head: int | None,
    tail_samples: int | None,
    tail_classes: int | None,
    imbalance: float | None,
    head_selection: str,
    seed: int,
) -> LongTailManifest:
    """The long-tailed training set the options describe (the full set without options)."""
    from leap_core.data.long_tail import (
        exponential_long_tail,
        face_long_tail,
        full_training_set,
        reid_long_tail,
    )

    if not listing.train:
        fail(f"{listing.name}: the train split holds no images")
    if imbalance is not None:
        if head is not None or tail_classes is not None or tail_samples is not None:
            fail("--imbalance cannot be combined with --head, --tail-samples or --tail-classes")
        return exponential_long_tail(
            listing.train,
            imbalance_factor=imbalance,
            seed=seed,
            head_selection=head_selection,  # type: ignore[arg-type]
        )
    if head is None:
        if tail_samples is not None or tail_classes is not None:
            fail("--tail-samples and --tail-classes need --head")
        return full_training_set(listing.train, seed=seed)
    samples = 5 if tail_samples is None else tail_samples
    if tail_classes is not None:
        return face_long_tail(
            listing.train,
            head=head,
            tail_classes=tail_classes,
            tail_samples=samples,
            seed=seed,
            head_selection=head_selection,  # type: ignore[arg-type]
        )
    return reid_long_tail(
        listing.train,
        head=head,
        tail_samples=samples,
        seed=seed,
        head_selection=head_selection,  # type: ignore[arg-type]
    )


def _print_tables(summary: dict[str, dict[str, object]]) -> None:
    console = Console()
    table = Table(title="splits")
    for column in ("split", "identities", "images", "cameras", "skipped"):
        table.add_column(column)
    for split in SPLITS:
        entry = summary[split]
        skipped = entry["skipped"]
        assert isinstance(skipped, dict)
        text = ", ".join(f"{k}: {v}" for k, v in skipped.items()) or "0"
        table.add_row(
            split, str(entry["num_ids"]), str(entry["num_images"]), str(entry["num_cams"]), text
        )
    console.print(table)
    train = Table(title="train (after the long-tail cut)")
    train.add_column("field")
    train.add_column("value")
    for key, value in summary["train"].items():
        if key not in ("num_ids", "num_images", "num_cams", "skipped"):
            train.add_row(key, json.dumps(value) if isinstance(value, dict) else str(value))
    console.print(train)
    single = summary["train"]["one_image_ids"]
    if single:
        console.print(
            f"{single} of {summary['train']['num_ids']} identities have one image: at "
            f"method.leap.P = 1 their angle memory holds one angle, so the feature cloud cannot "
            f"measure their spread; method.leap.single_slot says what they get "
            f"(default zero_variance: the whole target variance)",
            soft_wrap=True,
        )


@app.command()
def inspect(
    format: Annotated[
        str,
        typer.Option("--format", help=f"Dataset layout: {', '.join(FORMATS)}."),
    ],
    root: Annotated[
        Path | None,
        typer.Option(
            help="Dataset root (RecordIO: the .rec file or its folder; optional for omniglot)."
        ),
    ] = None,
    head: Annotated[int | None, typer.Option(help="Head identities H.")] = None,
    tail_samples: Annotated[
        int | None,
        typer.Option(help="Images per tail identity (re-ID S; with --tail-classes, default 5)."),
    ] = None,
    tail_classes: Annotated[
        int | None, typer.Option(help="Tail identities T (face cut <H, T>).")
    ] = None,
    imbalance: Annotated[
        float | None, typer.Option(help="Exponential profile with this imbalance factor.")
    ] = None,
    head_selection: Annotated[
        HeadSelection, typer.Option(help="Head identities by image count or at random.")
    ] = HeadSelection.count,
    seed: Annotated[int, typer.Option(help="Seed of the cut (and of --holdout).")] = 0,
    holdout: Annotated[
        int, typer.Option(help="folders: identities held out as query/gallery.")
    ] = 0,
    skip_bad: Annotated[
        bool, typer.Option("--skip-bad", help="Skip and count names that do not parse.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    plot: Annotated[
        Path | None, typer.Option(help="Write the class-frequency histogram (PNG).")
    ] = None,
) -> None:
    """Per-split identities, images, cameras and skipped items; head/tail of the cut."""
    if format not in FORMATS:
        raise typer.BadParameter(
            f"{format!r} is not one of {', '.join(FORMATS)}", param_hint="'--format'"
        )
    try:
        from leap_core.data.report import plot_class_frequency, summarize

        listing = read_dataset(format, root, skip_bad=skip_bad, holdout=holdout, seed=seed)
        manifest = _cut(
            listing, head, tail_samples, tail_classes, imbalance, head_selection.value, seed
        )
        summary = summarize(listing, manifest)
        if plot is not None:
            profile = ", ".join(f"{k}={v}" for k, v in manifest.profile.items())
            plot_class_frequency(manifest, plot, title=f"{format}: {profile}")
    except ValueError as error:
        fail(str(error))
    except OSError as error:
        fail(f"{getattr(error, 'filename', '') or ''}: {error.strerror or error}")
    if as_json:
        sys.stdout.write(json.dumps(summary, sort_keys=False) + "\n")
    else:
        _print_tables(summary)
        if plot is not None:
            typer.echo(f"plot written to {plot}")
