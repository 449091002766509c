"""Evaluators: one small protocol so the trainer and the service treat re-ID and face alike.

An evaluator is fed batches of test embeddings as they are extracted, then asked once for a
flat ``dict[str, float]`` that goes straight to MLflow and into the job record.

Metric keys and units (all rates are fractions in ``[0, 1]``, not percentages):

* re-ID: ``mAP``, ``mINP``, ``rank1``, ``rank5``, ``rank10``, ``num_valid_queries``,
  ``num_skipped_queries``; with head identities given, the same under ``head/`` and
  ``tail/``;
* face verification: ``lfw_accuracy``, ``lfw_accuracy_std`` (population std over folds),
  ``tpr@fpr=1e-3``, ``tpr@fpr=1e-4``, ``tpr@fpr=1e-5`` (an unmeasurable target is reported
  as ``tpr@fpr_min`` with ``fpr_min``), ``num_pairs``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from leap_core.evaluation._validation import (
    as_numpy,
    bool_vector,
    feature_matrix,
    int_vector,
    positive_int,
)
from leap_core.evaluation.breakdown import head_query_mask, head_tail_reid
from leap_core.evaluation.distance import normalize
from leap_core.evaluation.face import kfold_accuracy, labelled_operating_points, tpr_at_fpr
from leap_core.evaluation.reid import (
    RankResult,
    rank_distance_blocks,
    rank_queries_from_features,
)
from leap_core.evaluation.rerank_sparse import iter_re_ranking


@runtime_checkable
class Evaluator(Protocol):
    """Accumulate test embeddings batch by batch, then compute flat float metrics."""

    def reset(self) -> None:
        """Forget everything processed so far (called before each evaluation pass)."""

    def process(
        self, features: Any, pids: Any = None, camids: Any = None, split: str = "query"
    ) -> None:
        """Add one batch of embeddings with their identity and camera ids."""

    def evaluate(self) -> dict[str, float]:
        """Metrics over everything processed since the last reset."""


class ReidEvaluator:
    """Market-1501-protocol retrieval on cosine distances (see :mod:`.reid`).

    Feed query batches with ``split="query"`` and gallery batches with ``split="gallery"``.
    ``head_pids`` (training identities counted as head) adds ``head/…`` and ``tail/…``
    metrics for test setups whose identities were seen in training. ``rerank`` applies
    k-reciprocal re-ranking from the features (:mod:`.rerank_sparse`: memory that grows
    with ``(Q + G)·k1``, the re-ranked distances ranked block by block).
    """

    def __init__(
        self,
        max_rank: int = 50,
        ranks: Sequence[int] = (1, 5, 10),
        head_pids: Iterable[int] | None = None,
        rerank: bool = False,
        k1: int = 20,
        k2: int = 6,
        lambda_value: float = 0.3,
        rows_per_block: int = 128,
    ) -> None:
        self.max_rank = positive_int("max_rank", max_rank)
        self.ranks = tuple(positive_int("ranks", k) for k in ranks)
        self.head_pids = (
            None
            if head_pids is None
            else int_vector("head_pids", np.asarray(list(head_pids), dtype=np.int64))
        )
        self.rerank = bool(rerank)
        self.k1, self.k2, self.lambda_value = k1, k2, lambda_value
        self.rows_per_block = positive_int("rows_per_block", rows_per_block)
        self.last_result: RankResult | None = None
        self.reset()

    def reset(self) -> None:
        self._batches: dict[str, list[tuple[torch.Tensor, np.ndarray, np.ndarray]]] = {
            "query": [],
            "gallery": [],
        }
        self.last_result = None

    def process(
        self, features: Any, pids: Any = None, camids: Any = None, split: str = "query"
    ) -> None:
        if split not in self._batches:
            raise ValueError(f"split must be 'query' or 'gallery', got {split!r}")
        feats = feature_matrix("features", features)
        if pids is None or camids is None:
            raise ValueError("pids and camids are required for re-ID evaluation, got None")
        self._batches[split].append(
            (
                feats.clone(),
                int_vector("pids", pids, feats.shape[0]),
                int_vector("camids", camids, feats.shape[0]),
            )
        )

    def _stack(self, split: str) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
        batches = self._batches[split]
        if not batches:
            raise ValueError(f"no {split} features were processed; the {split} set is empty")
        dims = {b[0].shape[1] for b in batches}
        if len(dims) > 1:
            raise ValueError(f"{split} batches have different feature sizes {sorted(dims)}")
        return (
            torch.cat([b[0] for b in batches]),
            np.concatenate([b[1] for b in batches]),
            np.concatenate([b[2] for b in batches]),
        )

    def evaluate(self) -> dict[str, float]:
        qf, q_pids, q_cams = self._stack("query")
        gf, g_pids, g_cams = self._stack("gallery")
        if self.rerank:
            blocks = iter_re_ranking(qf, gf, self.k1, self.k2, self.lambda_value)
            result = rank_distance_blocks(blocks, q_pids, g_pids, q_cams, g_cams, self.max_rank)
        else:
            result = rank_queries_from_features(
                qf, gf, q_pids, g_pids, q_cams, g_cams, self.max_rank, self.rows_per_block
            )
        if result.num_valid == 0:
            raise ValueError(
                f"no query has a true match in the gallery (all "
                f"{result.num_queries} queries skipped)"
            )
        self.last_result = result
        metrics = result.as_dict(self.ranks)
        if self.head_pids is not None:
            metrics.update(
                head_tail_reid(result, head_query_mask(q_pids, self.head_pids), self.ranks)
            )
        return metrics


class FaceVerificationEvaluator:
    """Pair verification: LFW-style k-fold accuracy and TPR at target FPRs.

    ``pairs`` is a ``(P, 2)`` array of indices into the images in the order they are
    processed; ``same`` marks same-identity pairs; ``folds`` (optional) gives each pair's
    fold id for k-fold accuracy. ``pids`` and ``camids`` passed to :meth:`process` are not
    needed (the pair list carries the labels) and are ignored.
    """

    def __init__(
        self,
        pairs: Any,
        same: Any,
        folds: Any | None = None,
        fpr_targets: Sequence[float] = (1e-3, 1e-4, 1e-5),
    ) -> None:
        pair = as_numpy("pairs", pairs)
        if pair.ndim != 2 or pair.shape[1] != 2 or pair.shape[0] == 0:
            raise ValueError(f"pairs must have shape (num_pairs, 2), got {pair.shape}")
        if not np.issubdtype(pair.dtype, np.integer) or pair.min() < 0:
            raise ValueError("pairs must hold non-negative integer image indices")
        self.pairs = pair.astype(np.int64)
        self.same = bool_vector("same", same, pair.shape[0])
        self.folds = None if folds is None else int_vector("folds", folds, pair.shape[0])
        self.fpr_targets = tuple(fpr_targets)
        self.reset()

    @classmethod
    def interleaved(
        cls, same: Any, folds: Any | None = None, fpr_targets: Sequence[float] = (1e-3, 1e-4, 1e-5)
    ) -> FaceVerificationEvaluator:
        """Pairs laid out as images ``(0, 1), (2, 3), …`` (the insightface ``.bin`` order)."""
        num = bool_vector("same", same).shape[0]
        return cls(np.arange(2 * num).reshape(num, 2), same, folds, fpr_targets)

    def reset(self) -> None:
        self._features: list[torch.Tensor] = []

    def process(
        self, features: Any, pids: Any = None, camids: Any = None, split: str = "test"
    ) -> None:
        self._features.append(feature_matrix("features", features).clone())

    def scores(self) -> np.ndarray:
        """Cosine similarity of every pair of the images processed so far."""
        if not self._features:
            raise ValueError("no features were processed; nothing to evaluate")
        feats = normalize(torch.cat(self._features)).double()
        needed = int(self.pairs.max()) + 1
        if feats.shape[0] < needed:
            raise ValueError(
                f"pairs refer to image {needed - 1} but only {feats.shape[0]} images were processed"
            )
        index = torch.from_numpy(self.pairs)
        return (feats[index[:, 0]] * feats[index[:, 1]]).sum(1).numpy()

    def evaluate(self) -> dict[str, float]:
        score = self.scores()
        metrics: dict[str, float] = {"num_pairs": float(score.shape[0])}
        if self.folds is not None:
            kfold = kfold_accuracy(score, self.same, self.folds)
            metrics["lfw_accuracy"] = kfold.mean
            metrics["lfw_accuracy_std"] = kfold.std
        if self.fpr_targets:
            metrics.update(
                labelled_operating_points(tpr_at_fpr(score, self.same, self.fpr_targets))
            )
        return metrics
