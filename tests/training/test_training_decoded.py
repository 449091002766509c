"""The training data path: decoded once in memory within the budget, image by image over it,
and seeded runs that repeat exactly on either path."""

from __future__ import annotations

import logging

import torch
from torch.utils.data import DataLoader

from leap_core.data.decoded import DecodedBatches
from leap_core.training.data_setup import prepare_data
from leap_core.training.trainer import Trainer


def test_a_small_set_is_decoded_once_into_memory(tiny_spec, caplog):
    caplog.set_level(logging.INFO, logger="leap_core.data.decoded")
    calls: list[tuple[int, int]] = []
    data = prepare_data(
        tiny_spec(), decode_progress=lambda done, total: calls.append((done, total))
    )
    records = data.manifest.records
    assert data.decoded and isinstance(data.loader, DecodedBatches)
    assert data.loader.images.shape == (len(records), 3, 32, 16)
    assert calls[-1] == (len(records), len(records))
    assert f"decoding {len(records)} at 32x16 once into memory (0.2 MiB)" in caplog.text
    images, labels, camids = next(iter(data.loader))
    assert images.shape == (16, 3, 32, 16) and images.dtype == torch.float32
    assert labels.dtype == torch.int64 and camids.dtype == torch.int64


def test_over_the_budget_it_falls_back_to_the_per_image_loader(tiny_spec, caplog):
    caplog.set_level(logging.INFO, logger="leap_core.data.decoded")
    data = prepare_data(tiny_spec(train={"cache_decoded_mb": 0}))
    assert not data.decoded and isinstance(data.loader, DataLoader)
    assert "over train.cache_decoded_mb (0); decoding and transforming each image" in caplog.text
    images, _, _ = next(iter(data.loader))
    assert images.shape == (16, 3, 32, 16) and images.dtype == torch.float32


def _train(spec, path) -> dict[str, torch.Tensor]:
    trainer = Trainer(spec, path)
    trainer.fit()
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


def test_seeded_runs_repeat_exactly_on_both_paths(tiny_spec, tmp_path):
    for budget in (2048, 0):
        spec = tiny_spec(train={"epochs": 2, "cache_decoded_mb": budget}, eval={"protocol": "none"})
        first, second = _train(spec, tmp_path / f"a{budget}"), _train(spec, tmp_path / f"b{budget}")
        assert first.keys() == second.keys()
        for name in first:
            assert torch.equal(first[name], second[name]), (budget, name)
