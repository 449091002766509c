"""The training data path: decoded once in memory within the budget, image by image over it,
and seeded runs that repeat exactly on either path; evaluation images decoded once in what
the training set leaves of the budget."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from leap_core.data.decoded import DecodedBatches
from leap_core.data.evaluation_images import EvaluationImages
from leap_core.evaluation.distance import cosine_distance
from leap_core.evaluation.reid import rank_queries
from leap_core.evaluation.rerank import re_ranking
from leap_core.training.data_setup import prepare_data
from leap_core.training.evaluate import extract_features
from leap_core.training.hooks import Hook
from leap_core.training.trainer import Trainer

CPU = torch.device("cpu")


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


def test_evaluation_images_are_decoded_once_and_embed_as_read_from_disk(
    tiny_spec, caplog, tmp_path
):
    caplog.set_level(logging.INFO, logger="leap_core.data.evaluation_images")
    spec = tiny_spec(eval={"protocol": "reid"})
    data = prepare_data(spec)
    model = Trainer(spec, tmp_path, data=data).model
    decoding: list[tuple[str, int, int]] = []
    images = data.evaluation_images
    from_memory = [
        extract_features(model, data.query, spec, CPU, images, lambda *a: decoding.append(a))
        for _ in range(2)
    ]
    from_disk = extract_features(model, data.query, spec, CPU)
    assert torch.equal(from_memory[0], from_disk) and torch.equal(from_memory[1], from_disk)
    size = len(data.query)
    assert decoding == [("decoding evaluation images", size, size)]  # the first time only
    assert images.decoded_bytes == size * 3 * 32 * 16
    # What the training set leaves of the budget is the evaluation images' budget.
    train_bytes = len(data.manifest.records) * 3 * 32 * 16
    assert images.budget_bytes == spec.train.cache_decoded_mb * 2**20 - train_bytes
    assert "read from disk" not in caplog.text


def test_evaluation_images_over_the_budget_are_read_at_every_use(tiny_spec, caplog, tmp_path):
    caplog.set_level(logging.INFO, logger="leap_core.data.evaluation_images")
    spec = tiny_spec(eval={"protocol": "reid"})
    data = prepare_data(spec)
    model = Trainer(spec, tmp_path, data=data).model
    size = len(data.query)
    tight = EvaluationImages(spec, size * 3 * 32 * 16 - 1)  # one byte short
    embedded = extract_features(model, data.query, spec, CPU, tight)
    assert torch.equal(embedded, extract_features(model, data.query, spec, CPU))
    assert tight.decoded_bytes == 0
    assert f"evaluation images: {size} at 32x16 need" in caplog.text
    assert "read from disk at every evaluation" in caplog.text


class _Work(Hook):
    def __init__(self) -> None:
        self.events: list[tuple[int, str, int, int]] = []

    def on_work(self, trainer: Trainer, what: str, done: int, total: int) -> None:
        self.events.append((trainer.epoch, what, done, total))


def test_a_re_ranked_run_reports_its_work_and_matches_the_dense_reference(tiny_spec, tmp_path):
    spec = tiny_spec(eval={"protocol": "reid", "every_epochs": 1, "rerank": True})
    work = _Work()
    trainer = Trainer(spec, tmp_path, hooks=[work])
    metrics = trainer.fit()
    data = trainer.data
    num_q, num_g = len(data.query), len(data.gallery)
    decoded = [e for e in work.events if e[1] == "decoding evaluation images"]
    assert decoded == [
        (0, "decoding evaluation images", num_q, num_q),
        (0, "decoding evaluation images", num_g, num_g),
    ]
    finished = [e for e in work.events if e[1] == "re-ranking" and e[2] == e[3]]
    total = 2 * num_q + num_g
    assert finished == [(epoch, "re-ranking", total, total) for epoch in range(3)]
    query = extract_features(trainer.model, data.query, spec, CPU)
    gallery = extract_features(trainer.model, data.gallery, spec, CPU)
    dense = re_ranking(
        cosine_distance(query, gallery),
        cosine_distance(query, query),
        cosine_distance(gallery, gallery),
    )
    labels = [
        np.array([getattr(r, f) for r in split])
        for f in ("pid", "camid")
        for split in (data.query, data.gallery)
    ]
    expected = rank_queries(dense, labels[0], labels[1], labels[2], labels[3])
    assert metrics["mAP"] == pytest.approx(expected.mAP, abs=1e-6)
    assert metrics["rank1"] == pytest.approx(expected.cmc[0], abs=1e-6)
