"""The records Dataset: files, RecordIO records and DataLoader workers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from leap_core.data import (
    DatasetError,
    ImageDataset,
    Record,
    load_image,
    read_market1501,
    read_recordio,
    reid_long_tail,
    reid_test_transform,
    write_recordio,
)

COLOURS = {
    "bounding_box_train/0001_c1s1_000001_01.jpg": (250, 0, 0),
    "bounding_box_train/0001_c2s1_000002_01.jpg": (240, 0, 0),
    "bounding_box_train/0004_c1s1_000003_01.jpg": (0, 250, 0),
    "bounding_box_train/0009_c3s1_000004_01.jpg": (0, 0, 250),
    "bounding_box_train/0009_c3s1_000005_01.jpg": (0, 0, 240),
    "query/0002_c1s1_000001_01.jpg": (9, 9, 9),
    "bounding_box_test/0002_c2s1_000001_01.jpg": (9, 9, 9),
}


def test_training_targets_are_manifest_labels(tmp_path: Path, make_images) -> None:
    make_images(tmp_path, COLOURS)
    listing = read_market1501(tmp_path)
    manifest = reid_long_tail(listing.train, head=1, tail_samples=5)
    dataset = ImageDataset.from_manifest(manifest, reid_test_transform(16, 8))
    assert len(dataset) == 5
    image = dataset[0][0]
    assert image.shape == (3, 16, 8)
    assert [dataset[i][1:] for i in range(5)] == [(0, 0), (0, 1), (1, 0), (2, 2), (2, 2)]
    assert image[0].mean() > 1.5 and image[1].mean() < -1.5  # red on ImageNet normalisation
    evaluation = ImageDataset(listing.query)
    raw, pid, cam = evaluation[0]
    assert raw.size == (8, 16) and (pid, cam) == (2, 0)


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_over_recordio(tmp_path: Path, jpeg, workers: int) -> None:
    rec = tmp_path / "train.rec"
    write_recordio(rec, [(float(i % 3), jpeg((80 * (i % 3), 0, 0))) for i in range(12)])
    listing = read_recordio(rec)
    dataset = ImageDataset(listing.train, reid_test_transform(16, 8))
    loader = DataLoader(dataset, batch_size=4, num_workers=workers)
    targets = torch.cat([batch[1] for batch in loader])
    assert targets.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]


def test_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"nothing\.jpg: image file not found"):
        load_image(str(tmp_path / "nothing.jpg"))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(DatasetError, match=r"broken\.jpg: cannot decode image"):
        ImageDataset([Record(str(broken), 1, 0)])[0]
    with pytest.raises(DatasetError, match="targets must have one entry per record \\(1\\), got 2"):
        ImageDataset([Record(str(broken), 1, 0)], targets=[0, 1])
