"""Feature extraction and retrieval evaluation for the trainer."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from leap_core.config import JobSpec
from leap_core.data import Record, read_lfw_pairs
from leap_core.data.datasets import test_loader
from leap_core.data.evaluation_images import EvaluationImages
from leap_core.evaluation.angular import AngularStats, class_angular_stats
from leap_core.evaluation.face import best_threshold, kfold_accuracy
from leap_core.evaluation.reid import rank_distance_blocks, rank_queries_from_features
from leap_core.evaluation.rerank_sparse import iter_re_ranking
from leap_core.evaluation.size_bins import mean_by_size
from leap_core.training.data_setup import TrainingData

#: ``progress(what, done, total)``: a long piece of an evaluation, for a progress display.
WorkProgress = Callable[[str, int, int], None]


def _report(progress: WorkProgress | None, what: str) -> Callable[[int, int], None] | None:
    if progress is None:
        return None
    return lambda done, total: progress(what, done, total)


@torch.no_grad()
def extract_features(
    model: nn.Module,
    records: list[Record],
    spec: JobSpec,
    device: torch.device,
    images: EvaluationImages | None = None,
    progress: WorkProgress | None = None,
) -> torch.Tensor:
    """``(N, D)`` float32 embeddings of ``records`` in order, on the CPU; the pixels come
    from ``images`` (decoded once per run) when given, else from disk."""
    was_training = model.training
    model.eval()
    chunks = []
    batches: Iterable[torch.Tensor] = (
        (batch for batch, _pids, _camids in test_loader(records, spec))
        if images is None
        else images.batches(records, _report(progress, "decoding evaluation images"))
    )
    for batch in batches:
        images_on_device = batch.to(device)
        if device.type == "cuda":
            images_on_device = images_on_device.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, enabled=spec.train.amp and device.type == "cuda"):
            chunks.append(model(images_on_device).float().cpu())
    model.train(was_training)
    return torch.cat(chunks)


@dataclass
class Evaluation:
    """Metrics (fractions in [0, 1]) and what the plots need: the CMC curve for retrieval,
    the pair scores and labels for verification."""

    metrics: dict[str, float]
    cmc: np.ndarray | None = None
    scores: np.ndarray | None = None
    same: np.ndarray | None = None


@dataclass
class Diagnostics:
    """Training-set embeddings, their per-class angular statistics (spec §4), and how well
    the classifier knows its training classes (is the run converged?)."""

    features: torch.Tensor
    labels: np.ndarray
    head: np.ndarray
    stats: AngularStats
    accuracy: dict[str, float] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        """Head and tail means of the per-class angle to the centre and its variance, and the
        head and tail classification accuracies (``final_*``)."""
        metrics = {
            f"final_{name}": value for name, value in self.stats.head_tail(self.head).items()
        }
        metrics.update({f"final_{name}": value for name, value in self.accuracy.items()})
        return metrics


def evaluate(
    model: nn.Module,
    data: TrainingData,
    spec: JobSpec,
    device: torch.device,
    progress: WorkProgress | None = None,
) -> Evaluation:
    """The spec's evaluation protocol; ``progress`` follows its long pieces (decoding the
    evaluation images the first time, re-ranking)."""
    if spec.eval.protocol == "face":
        return evaluate_verification(model, spec, device, data.evaluation_images, progress)
    return evaluate_retrieval(model, data, spec, device, progress)


def diagnose(
    model: nn.Module,
    classifier: torch.Tensor,
    data: TrainingData,
    spec: JobSpec,
    device: torch.device,
    head: np.ndarray,
) -> Diagnostics:
    """Embed the training set (test transform) and measure each class's angular spread: the
    paper's observation that tail classes look compact, and whether LEAP changed it.

    Also classifies, by the nearest class weight (``classifier``, the head's ``W``), the
    training images and up to ``eval.unseen_per_class`` images per class that the long-tail
    cut left out: a network that has memorised its tail classes but does not recognise their
    unseen images is where a long tail hurts, and an underfit one shows neither.
    """
    manifest = data.manifest
    chosen = diagnostic_sample(
        np.asarray(manifest.labels), spec.eval.diagnostics_per_class, spec.train.seed
    )
    records = [manifest.records[i] for i in chosen]
    features = extract_features(model, records, spec, device)
    labels = np.asarray(manifest.labels)[chosen]
    stats = class_angular_stats(features, labels, manifest.num_classes)
    weights = classifier.detach().float().cpu()
    accuracy = group_accuracy("train_accuracy", features, labels, weights, head)
    unseen = unseen_records(data, spec.eval.unseen_per_class, spec.train.seed)
    accuracy["unseen_images"] = float(len(unseen))
    accuracy["diagnostic_images"] = float(len(records))
    if unseen:
        position = {pid: label for label, pid in enumerate(manifest.pids)}
        unseen_labels = np.asarray([position[record.pid] for record in unseen])
        unseen_features = extract_features(model, unseen, spec, device)
        accuracy.update(
            group_accuracy("unseen_accuracy", unseen_features, unseen_labels, weights, head)
        )
        accuracy.update(
            unseen_by_size(
                unseen_features,
                unseen_labels,
                features,
                labels,
                weights,
                np.asarray(manifest.class_counts),
                head,
                spec.eval.class_size_bins,
            )
        )
    return Diagnostics(features, labels, head, stats, accuracy)


def unseen_by_size(
    unseen: torch.Tensor,
    unseen_labels: np.ndarray,
    train: torch.Tensor,
    train_labels: np.ndarray,
    weights: torch.Tensor,
    class_counts: np.ndarray,
    head: np.ndarray,
    edges: list[int],
) -> dict[str, float]:
    """How well unseen images of the training classes are recognised, by class size.

    Each unseen image is classified by the nearest class weight, and used as a query
    against the embedded training images (its class's images are the true matches): the
    retrieval view of the same question, which needs no classifier. Returns
    ``unseen_map`` (``_head``, ``_tail``), and per bin of ``K_i``
    (:mod:`leap_core.evaluation.size_bins`) ``unseen_accuracy_<bin>``, ``unseen_map_<bin>``
    and ``unseen_images_<bin>``."""
    ranked = rank_queries_from_features(
        unseen,
        train,
        unseen_labels,
        train_labels,
        np.ones(len(unseen_labels), dtype=np.int64),  # no camera is junk here
        np.zeros(len(train_labels), dtype=np.int64),
    )
    ap = ranked.average_precision
    correct = (nearest_class(unseen, weights) == unseen_labels).astype(np.float64)
    is_head = head[unseen_labels]
    result: dict[str, float] = {}
    for suffix, chosen in (("", np.ones_like(is_head)), ("_head", is_head), ("_tail", ~is_head)):
        values = ap[chosen & ~np.isnan(ap)]
        result[f"unseen_map{suffix}"] = float(values.mean()) if values.size else math.nan
    sizes = class_counts[unseen_labels]
    for name, (value, count) in mean_by_size(correct, sizes, edges).items():
        result[f"unseen_accuracy_{name}"] = value
        result[f"unseen_images_{name}"] = float(count)
    for name, (value, _count) in mean_by_size(ap, sizes, edges).items():
        result[f"unseen_map_{name}"] = value
    return result


def diagnostic_sample(labels: np.ndarray, per_class: int | None, seed: int) -> np.ndarray:
    """Indices of at most ``per_class`` samples of each class, drawn with ``seed``, in the
    original order; every index when ``per_class`` is None. Tail classes are small, so they
    are kept whole; large head classes are sampled, which bounds the end-of-run work."""
    if per_class is None:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    order = np.argsort(labels, kind="stable")
    starts = np.flatnonzero(np.r_[True, labels[order][1:] != labels[order][:-1]])
    kept = []
    for group in np.split(order, starts[1:]):
        kept.append(
            group if len(group) <= per_class else rng.choice(group, per_class, replace=False)
        )
    return np.sort(np.concatenate(kept)) if kept else np.arange(0)


_ROWS_PER_CHUNK = 4096


def nearest_class(features: torch.Tensor, weights: torch.Tensor) -> np.ndarray:
    """The class whose weight is nearest (by cosine) to each feature."""
    unit_weights = F.normalize(weights, dim=1)
    # In chunks: a face-scale run has 10^6 images × 10^5 classes, far too many cosines at once.
    return torch.cat(
        [
            (F.normalize(chunk, dim=1) @ unit_weights.T).argmax(dim=1)
            for chunk in features.split(_ROWS_PER_CHUNK)
        ]
    ).numpy()


def group_accuracy(
    name: str, features: torch.Tensor, labels: np.ndarray, weights: torch.Tensor, head: np.ndarray
) -> dict[str, float]:
    """Nearest-class-weight accuracy over all samples, head-class and tail-class samples
    (``{name}``, ``{name}_head``, ``{name}_tail``); NaN for an empty group."""
    correct = nearest_class(features, weights) == labels
    is_head = head[labels]
    result = {}
    for suffix, chosen in (("", np.ones_like(is_head)), ("_head", is_head), ("_tail", ~is_head)):
        result[f"{name}{suffix}"] = float(correct[chosen].mean()) if chosen.any() else math.nan
    return result


def unseen_records(data: TrainingData, per_class: int, seed: int) -> list[Record]:
    """Images of the training classes that the long-tail cut did not keep, at most
    ``per_class`` of each class, drawn with ``seed`` (sorted for a stable order)."""
    if per_class == 0:
        return []
    kept = {record.path for record in data.manifest.records}
    classes = set(data.manifest.pids)
    left_out: dict[int, list[Record]] = {}
    for record in data.listing.split("train"):
        if record.pid in classes and record.path not in kept:
            left_out.setdefault(record.pid, []).append(record)
    rng = np.random.default_rng(seed)
    chosen: list[Record] = []
    for pid in sorted(left_out):
        records = sorted(left_out[pid])
        picks = rng.permutation(len(records))[:per_class]
        chosen.extend(records[i] for i in sorted(picks.tolist()))
    return chosen


def evaluate_verification(
    model: nn.Module,
    spec: JobSpec,
    device: torch.device,
    images: EvaluationImages | None = None,
    progress: WorkProgress | None = None,
) -> Evaluation:
    """LFW protocol: cosine similarity of each pair, 10-fold threshold selection."""
    # EvalSpec's validator requires both for the face protocol.
    assert spec.eval.lfw_root is not None and spec.eval.pairs_file is not None
    pairs = read_lfw_pairs(spec.eval.lfw_root, spec.eval.pairs_file)
    paths = pairs.paths()
    position = {path: index for index, path in enumerate(paths)}
    features = F.normalize(
        extract_features(model, [Record(p, 0, 0) for p in paths], spec, device, images, progress),
        dim=1,
    )
    first = torch.tensor([position[pair.first] for pair in pairs.pairs])
    second = torch.tensor([position[pair.second] for pair in pairs.pairs])
    scores = (features[first] * features[second]).sum(dim=1).numpy()
    same = np.array([pair.same for pair in pairs.pairs])
    folds = np.array([pair.fold for pair in pairs.pairs])
    if pairs.num_folds < 2:
        # pairsDevTest.txt has one fold: the threshold is chosen on the pairs themselves.
        threshold, accuracy = best_threshold(scores, same)
        metrics = {"lfw_accuracy": accuracy, "lfw_threshold": threshold}
    else:
        result = kfold_accuracy(scores, same, folds)
        metrics = {"lfw_accuracy": result.mean, "lfw_accuracy_std": result.std}
    return Evaluation(metrics, scores=scores, same=same)


def evaluate_retrieval(
    model: nn.Module,
    data: TrainingData,
    spec: JobSpec,
    device: torch.device,
    progress: WorkProgress | None = None,
) -> Evaluation:
    """Market-1501 protocol metrics on the query and gallery splits; with ``eval.rerank``
    on k-reciprocal re-ranked distances, produced and ranked block by block."""
    if not data.query or not data.gallery:
        raise ValueError(
            "eval.protocol is 'reid' but the dataset has no query or gallery "
            "split; set eval.protocol to 'none'"
        )
    images = data.evaluation_images
    query = extract_features(model, data.query, spec, device, images, progress)
    gallery = extract_features(model, data.gallery, spec, device, images, progress)
    q_pids = np.array([r.pid for r in data.query])
    g_pids = np.array([r.pid for r in data.gallery])
    q_cams = np.array([r.camid for r in data.query])
    g_cams = np.array([r.camid for r in data.gallery])
    if spec.eval.rerank:
        blocks = iter_re_ranking(query, gallery, progress=_report(progress, "re-ranking"))
        result = rank_distance_blocks(blocks, q_pids, g_pids, q_cams, g_cams)
    else:
        result = rank_queries_from_features(query, gallery, q_pids, g_pids, q_cams, g_cams)
    return Evaluation(result.as_dict(), cmc=result.cmc)
