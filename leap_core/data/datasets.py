"""The torch ``Dataset`` over records: image files, RecordIO records or Omniglot arrays.

One dataset class serves training (targets are manifest labels) and evaluation (targets are
pids), whatever the storage: ``load_image`` dispatches on the record path's scheme. RecordIO
readers are cached per process and thread, and reopen their file after a DataLoader fork or
in another thread (decoding a set into memory uses several), since a file handle shared
across processes or threads would interleave seeks.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset

from leap_core.data import omniglot, recordio
from leap_core.data.manifest import LongTailManifest
from leap_core.data.records import DatasetError, Record
from leap_core.data.transforms import test_transform, train_transform

if TYPE_CHECKING:
    from leap_core.config import JobSpec
    from leap_core.data.samplers import ShardedSampler

_LOCAL = threading.local()  # per thread: {(pid, rec_path): reader}; gone with its thread


def _recordio_reader(rec_path: str) -> recordio.RecordIOReader:
    readers: dict[tuple[int, str], recordio.RecordIOReader] | None = getattr(
        _LOCAL, "readers", None
    )
    if readers is None:
        readers = _LOCAL.readers = {}
    key = (os.getpid(), rec_path)
    reader = readers.get(key)
    if reader is None:
        reader = recordio.RecordIOReader(rec_path)
        readers[key] = reader
    return reader


def load_image(path: str) -> Image.Image:
    """Open the image a record path names, as RGB; ``DatasetError`` names what failed."""
    if path.startswith(recordio.SCHEME):
        rec_path, key = recordio.parse_record_path(path)
        _, payload = _recordio_reader(rec_path).read(key)
        source: Any = io.BytesIO(payload)
    elif path.startswith(omniglot.SCHEME):
        return omniglot.load_omniglot_image(path)
    else:
        source = path
    try:
        with Image.open(source) as image:
            return image.convert("RGB")
    except FileNotFoundError:
        raise DatasetError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError) as error:
        raise DatasetError(f"{path}: cannot decode image ({error})") from None


class ImageDataset(Dataset[tuple[Any, int, int]]):
    """Items ``(image, target, camid)``: the transformed image, its label or pid, its camera.

    ``targets`` defaults to the pids (evaluation); ``from_manifest`` uses the contiguous
    training labels instead.
    """

    def __init__(
        self,
        records: Sequence[Record],
        transform: Callable[[Image.Image], Any] | None = None,
        targets: Sequence[int] | None = None,
    ) -> None:
        self.records = list(records)
        if targets is not None and len(targets) != len(self.records):
            raise DatasetError(
                f"targets must have one entry per record ({len(self.records)}), got {len(targets)}"
            )
        self.targets = [r.pid for r in self.records] if targets is None else list(targets)
        self.transform = transform

    @classmethod
    def from_manifest(
        cls, manifest: LongTailManifest, transform: Callable[[Image.Image], Any] | None = None
    ) -> ImageDataset:
        """Training dataset whose targets are the manifest's labels ``0..C-1``."""
        return cls(manifest.records, transform, manifest.labels)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[Any, int, int]:
        record = self.records[index]
        image = load_image(record.path)
        item = self.transform(image) if self.transform is not None else image
        return item, self.targets[index], record.camid


def per_image_loader(
    spec: JobSpec, manifest: LongTailManifest, sampler: ShardedSampler
) -> DataLoader:
    """The loader that reads, decodes and transforms every image at every step."""
    dataset = ImageDataset.from_manifest(manifest, train_transform(spec))
    return DataLoader(
        dataset,
        batch_size=spec.train.sampler.batch(),
        sampler=sampler,
        drop_last=True,
        num_workers=spec.train.num_workers,
        persistent_workers=spec.train.num_workers > 0,
        pin_memory=torch.cuda.is_available(),
    )


def test_loader(records: list[Record], spec: JobSpec) -> DataLoader:
    """Deterministic loader over evaluation images (targets are pids)."""
    dataset = ImageDataset(records, test_transform(spec))
    return DataLoader(
        dataset, batch_size=spec.eval.batch_size, shuffle=False, num_workers=spec.train.num_workers
    )
