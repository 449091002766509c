"""Dataset statistics and the class-frequency plot behind ``leap data inspect``.

Kept out of the CLI so the numbers can be tested directly and reused by a job's logging. The
summary counts everything a reader or a cut left out (junk, distractors, bad names, images and
identities dropped by the long-tail cut), so nothing disappears silently.
"""

from __future__ import annotations

import os
import statistics
from typing import Any

from leap_core.data.manifest import LongTailManifest
from leap_core.data.records import SPLITS, SplitListing, images_per_pid


def summarize(listing: SplitListing, manifest: LongTailManifest) -> dict[str, dict[str, Any]]:
    """Per-split statistics; ``train`` describes ``manifest``, the cut of ``listing.train``.

    Every split has ``num_ids``, ``num_images``, ``num_cams`` and ``skipped`` (reason → count).
    ``train`` adds head/tail identities and images, min / median / max images per identity,
    the counts before the cut, what the cut dropped, and how many identities it leaves at
    one image (``one_image_ids``).
    """
    summary: dict[str, dict[str, Any]] = {}
    for split in SPLITS:
        records = manifest.records if split == "train" else listing.split(split)
        counts = list(images_per_pid(records).values())
        entry: dict[str, Any] = {
            "num_ids": len(counts),
            "num_images": len(records),
            "num_cams": len({r.camid for r in records}),
            "skipped": dict(sorted(listing.skipped.get(split, {}).items())),
        }
        if split == "train":
            stats = manifest.stats
            entry.update(
                {
                    "head_ids": stats["head_ids"],
                    "tail_ids": stats["tail_ids"],
                    "head_images": stats["head_images"],
                    "tail_images": stats["tail_images"],
                    "min_images_per_id": min(counts),
                    "median_images_per_id": float(statistics.median(counts)),
                    "max_images_per_id": max(counts),
                    "ids_before_cut": stats["input_ids"],
                    "images_before_cut": stats["input_images"],
                    "dropped_ids": stats["dropped_ids"],
                    "dropped_images": stats["dropped_images"],
                    "short_tail_ids": stats["short_tail_ids"],
                    # A one-image class can never hold two angles at P = 1: the feature cloud
                    # cannot measure its spread (see method.leap.single_slot).
                    "one_image_ids": sum(1 for count in counts if count == 1),
                    "cut": manifest.profile,
                    "seed": manifest.seed,
                }
            )
        summary[split] = entry
    return summary


def plot_class_frequency(
    manifest: LongTailManifest, path: str | os.PathLike[str], title: str = ""
) -> None:
    """Save the images-per-identity bar chart (log scale): head identities first, then tail,
    each sorted by count, coloured, with a dashed line between them."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    order = sorted(
        range(manifest.num_classes),
        key=lambda i: (not manifest.head[i], -manifest.class_counts[i], manifest.pids[i]),
    )
    counts = [manifest.class_counts[i] for i in order]
    colours = ["tab:orange" if manifest.head[i] else "tab:blue" for i in order]
    figure = Figure(figsize=(8, 4), dpi=100)  # no pyplot: no global backend or figure state
    axes = figure.add_subplot()
    axes.bar(range(len(counts)), counts, width=1.0, color=colours, linewidth=0)
    axes.set_yscale("log")
    axes.set_xlabel("identity (head, then tail; each by image count)")
    axes.set_ylabel("images per identity (log)")
    heads = sum(manifest.head)
    if 0 < heads < len(counts):
        axes.axvline(heads - 0.5, color="black", linestyle="--", linewidth=1)
    axes.set_ylim(bottom=0.8)
    axes.legend(
        handles=[
            Patch(color="tab:orange", label=f"head: {heads} ids, {sum(counts[:heads])} images"),
            Patch(
                color="tab:blue",
                label=f"tail: {len(counts) - heads} ids, {sum(counts[heads:])} images",
            ),
        ]
    )
    axes.set_title(title or f"class frequency: {manifest.profile.get('kind', '')}")
    figure.tight_layout()
    figure.savefig(path)
