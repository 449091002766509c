"""Data-layer speed: indexing, RecordIO listing, synthetic rendering, loading.

Run: ``.venv/bin/python benchmarks/data_speed.py [--records 1000000] [--workers 0 2]``.
Everything is written to a temporary folder and removed afterwards. The script prints figures
and the targets they are meant for; it asserts nothing about time (machines differ).

1. Index a Market-1501-sized tree (official split sizes, empty files): target < 2 s.
2. List 1,000,000 records from a RecordIO file (index text + headers): target < 2 s.
3. Render the synthetic dataset at 64x32 on one core: images/s in memory and written to disk
   (target well over 500; on slow file systems creating the files dominates).
4. Load it through ``ImageDataset`` + re-ID train transform + DataLoader (batch 64).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from leap_core.data import (
    ImageDataset,
    RandomSampler,
    SynthConfig,
    generate_synthetic,
    read_market1501,
    read_recordio,
    reid_train_transform,
    write_recordio,
)
from leap_core.data.synthetic import PersonRenderer, make_outfit

MARKET_SIZES = {"bounding_box_train": 12_936, "query": 3_368, "bounding_box_test": 19_732}


def timed(function: Callable[[], object], repeats: int = 3) -> tuple[float, object]:
    """Median wall time of ``repeats`` calls, and the last result."""
    times = []
    result: object = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def write_market_tree(root: Path) -> int:
    """Empty files named like Market-1501's, with its split sizes, junk and distractors."""
    rng = np.random.default_rng(0)
    total = 0
    for folder, count in MARKET_SIZES.items():
        directory = root / folder
        directory.mkdir(parents=True)
        pids = rng.integers(1, 1502, size=count)
        if folder == "bounding_box_test":
            pids[:2_798] = -1
            pids[2_798 : 2_798 + 3_819] = 0
        cams = rng.integers(1, 7, size=count)
        for i, (pid, cam) in enumerate(zip(pids.tolist(), cams.tolist(), strict=True)):
            name = "-1" if pid < 0 else f"{pid:04d}"
            (directory / f"{name}_c{cam}s1_{i:06d}_01.jpg").touch()
        total += count
    return total


def bench_index(tmp: Path) -> None:
    root = tmp / "market"
    files = write_market_tree(root)
    seconds, listing = timed(lambda: read_market1501(root))
    kept = sum(len(listing.split(s)) for s in ("train", "query", "gallery"))  # type: ignore[attr-defined]
    print(
        f"index Market-1501-sized tree : {files:>9,} files  {seconds:7.3f} s   "
        f"({kept:,} records kept; target < 2 s)"
    )


def bench_recordio(tmp: Path, records: int) -> None:
    rec = tmp / "train.rec"
    start = time.perf_counter()
    labels = np.random.default_rng(0).integers(0, max(records // 60, 1), size=records)
    write_recordio(rec, ((float(label), b"\xff\xd8\xff\xd9") for label in labels.tolist()))
    written = time.perf_counter() - start
    seconds, listing = timed(lambda: read_recordio(rec))
    count = len(listing.train)  # type: ignore[attr-defined]
    print(
        f"list RecordIO records        : {count:>9,} records {seconds:6.3f} s   "
        f"(target < 2 s for 1,000,000; writing the fixture took {written:.1f} s)"
    )


def bench_render(images: int = 2000) -> None:
    """Rendering and JPEG encoding alone, in memory: the generator's cost without the disk."""
    renderer = PersonRenderer(64, 32, cameras=6, seed=0)
    rng = np.random.default_rng(0)
    outfits = [make_outfit(rng) for _ in range(100)]
    start = time.perf_counter()
    for i in range(images):
        pixels = renderer.render(outfits[i % 100], i % 6, rng)
        Image.fromarray(pixels).save(io.BytesIO(), format="JPEG", quality=90)
    seconds = time.perf_counter() - start
    print(
        f"synthetic render+JPEG 64x32  : {images:>9,} images  {seconds:7.3f} s   "
        f"{images / seconds:8.0f} images/s on one core, in memory"
    )


def bench_synthetic(tmp: Path) -> Path:
    torch.set_num_threads(1)
    config = SynthConfig(identities=300, head=30, test_identities=100, seed=0)
    start = time.perf_counter()
    summary = generate_synthetic(tmp / "synth", config)
    seconds = time.perf_counter() - start
    images = summary.train_images + summary.query_images + summary.gallery_images
    print(
        f"synthetic generator 64x32    : {images:>9,} images  {seconds:7.3f} s   "
        f"{images / seconds:8.0f} images/s on one core, written to disk "
        "(target well over 500)"
    )
    return tmp / "synth"


def bench_loader(root: Path, workers: list[int]) -> None:
    listing = read_market1501(root)
    dataset = ImageDataset(listing.train + listing.gallery, reid_train_transform(64, 32))
    for count in workers:
        sampler = RandomSampler(len(dataset), seed=0)
        loader = DataLoader(
            dataset,
            batch_size=64,
            sampler=sampler,
            num_workers=count,
            drop_last=True,
            persistent_workers=False,
        )
        start = time.perf_counter()
        seen = sum(batch[0].shape[0] for batch in loader)
        seconds = time.perf_counter() - start
        print(
            f"DataLoader 64x32 batch 64    : {count} workers {seen:>7,} images {seconds:6.3f} s   "
            f"{seen / seconds:8.0f} images/s (including worker start-up)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    args = parser.parse_args()
    print(f"data_speed: {os.cpu_count()} CPUs, torch {torch.__version__}, numpy {np.__version__}")
    with tempfile.TemporaryDirectory(prefix="leap-data-speed-") as name:
        tmp = Path(name)
        bench_index(tmp)
        bench_recordio(tmp, args.records)
        bench_render()
        synth = bench_synthetic(tmp)
        bench_loader(synth, args.workers)


if __name__ == "__main__":
    main()
