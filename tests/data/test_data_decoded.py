"""Images decoded once into memory: the same pixels as decoding the file each time, and
batches in the sampler's order."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from leap_core.data import (
    RandomSampler,
    load_image,
    read_recordio,
    reid_test_transform,
    write_recordio,
)
from leap_core.data import decoded as decoded_module
from leap_core.data.batch_augment import BatchAugment
from leap_core.data.decoded import DecodedBatches, decode_images, decoded_bytes


def write_noise_images(root: Path, sizes: list[tuple[int, int]]) -> list[str]:
    """Random-pixel JPEGs and PNGs of the given (width, height): resizing them is not trivial."""
    rng = np.random.default_rng(0)
    paths = []
    for i, (width, height) in enumerate(sizes):
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        path = root / f"{i:03d}.{'png' if i % 2 else 'jpg'}"
        Image.fromarray(pixels).save(path)
        paths.append(str(path))
    return paths


SIZES = [(16, 32), (20, 41), (7, 13), (16, 32), (33, 64)]


def test_store_holds_the_pixels_of_decoding_each_file(tmp_path: Path) -> None:
    paths = write_noise_images(tmp_path, SIZES)
    store = decode_images(paths, (32, 16))
    assert store.shape == (5, 3, 32, 16) and store.dtype == torch.uint8
    resize = v2.Resize((32, 16), antialias=True)
    for i, path in enumerate(paths):
        assert torch.equal(store[i], F.pil_to_tensor(resize(load_image(path)))), path
    # through the deterministic transform: the same float tensors as the per-image path
    plain = BatchAugment(32, 16, flip_p=0.0, padding=0, erasing_p=0.0)(store)
    expected = torch.stack([reid_test_transform(32, 16)(load_image(p)) for p in paths])
    assert torch.equal(plain, expected)


def test_threads_do_not_change_the_result_and_progress_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = write_noise_images(tmp_path, SIZES)
    monkeypatch.setattr(decoded_module, "PROGRESS_EVERY", 2)
    calls: list[tuple[int, int]] = []
    threaded = decode_images(paths, (32, 16), lambda done, total: calls.append((done, total)), 3)
    assert torch.equal(threaded, decode_images(paths, (32, 16), threads=1))
    assert calls == [(2, 5), (4, 5), (5, 5)]


def test_decoded_bytes() -> None:
    assert decoded_bytes(12_936, 256, 128) == 12_936 * 98_304  # Market-1501 train, 1,213 MiB
    assert decoded_bytes(0, 64, 32) == 0


def test_batches_follow_the_sampler_and_drop_the_short_last_one() -> None:
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 3, 2, 2).contiguous()
    sampler = RandomSampler(10, seed=3)
    batches = DecodedBatches(
        images, list(range(100, 110)), list(range(10)), sampler, 3, lambda x: x.float()
    )
    assert len(batches) == 3
    order = list(sampler)
    seen = list(batches)
    assert len(seen) == 3
    for k, (pixels, targets, camids) in enumerate(seen):
        index = order[3 * k : 3 * k + 3]
        assert pixels.dtype == torch.float32 and pixels.shape == (3, 3, 2, 2)
        assert pixels[:, 0, 0, 0].tolist() == index
        assert targets.tolist() == [100 + i for i in index] and targets.dtype == torch.int64
        assert camids.tolist() == index
    sampler.set_epoch(1)
    assert [t.tolist() for _, t, _ in batches] != [t.tolist() for _, t, _ in seen]


def test_mismatched_inputs_are_refused() -> None:
    images = torch.zeros(2, 3, 2, 2, dtype=torch.uint8)
    sampler = RandomSampler(2, seed=0)
    with pytest.raises(ValueError, match="one entry each, got 2, 1 and 2"):
        DecodedBatches(images, [0], [0, 0], sampler, 1, lambda x: x)
    with pytest.raises(ValueError, match="must be a uint8"):
        DecodedBatches(images.float(), [0, 0], [0, 0], sampler, 1, lambda x: x)


def test_threads_read_one_recordio_file_each_with_its_own_handle(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    samples = []
    for i in range(40):
        buffer = io.BytesIO()
        pixels = rng.integers(0, 256, (24 + i % 5, 12, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(buffer, format="JPEG")
        samples.append((float(i % 4), buffer.getvalue()))
    rec = tmp_path / "train.rec"
    write_recordio(rec, samples)
    paths = [record.path for record in read_recordio(rec).train]
    threaded = decode_images(paths, (32, 16), threads=4)
    resize = v2.Resize((32, 16), antialias=True)
    expected = torch.stack([F.pil_to_tensor(resize(load_image(p))) for p in paths])
    assert len(paths) == 40 and torch.equal(threaded, expected)
