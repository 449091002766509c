"""Feature extraction and retrieval evaluation for the trainer."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from leap_core.config import JobSpec
from leap_core.data import Record, read_lfw_pairs
from leap_core.evaluation.angular import AngularStats, class_angular_stats
from leap_core.evaluation.distance import cosine_distance
from leap_core.evaluation.face import best_threshold, kfold_accuracy
from leap_core.evaluation.reid import rank_queries, rank_queries_from_features
from leap_core.evaluation.rerank import re_ranking
from leap_core.training.data_setup import TrainingData, test_loader


@torch.no_grad()
def extract_features(model: nn.Module, records: list[Record], spec: JobSpec,
                     device: torch.device) -> torch.Tensor:
    """``(N, D)`` float32 embeddings of ``records`` in order, on the CPU."""
    was_training = model.training
    model.eval()
    chunks = []
    for images, _pids, _camids in test_loader(records, spec):
        images = images.to(device)
        if device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, enabled=spec.train.amp and device.type == "cuda"):
            chunks.append(model(images).float().cpu())
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
    """Training-set embeddings and their per-class angular statistics (spec §4)."""

    features: torch.Tensor
    labels: np.ndarray
    head: np.ndarray
    stats: AngularStats

    def metrics(self) -> dict[str, float]:
        """Head and tail means of the per-class angle to the centre and its variance."""
        return {f"final_{name}": value for name, value in self.stats.head_tail(self.head).items()}


def evaluate(model: nn.Module, data: TrainingData, spec: JobSpec,
             device: torch.device) -> Evaluation:
    """The spec's evaluation protocol."""
    if spec.eval.protocol == "face":
        return evaluate_verification(model, spec, device)
    return evaluate_retrieval(model, data, spec, device)


def diagnose(model: nn.Module, data: TrainingData, spec: JobSpec,
             device: torch.device) -> Diagnostics:
    """Embed the training set (test transform) and measure each class's angular spread: the
    paper's observation that tail classes look compact, and whether LEAP changed it."""
    manifest = data.manifest
    features = extract_features(model, list(manifest.records), spec, device)
    labels = np.asarray(manifest.labels)
    stats = class_angular_stats(features, labels, manifest.num_classes)
    return Diagnostics(features, labels, np.asarray(manifest.head), stats)


def evaluate_verification(model: nn.Module, spec: JobSpec,
                          device: torch.device) -> Evaluation:
    """LFW protocol: cosine similarity of each pair, 10-fold threshold selection."""
    pairs = read_lfw_pairs(spec.eval.lfw_root, spec.eval.pairs_file)
    paths = pairs.paths()
    position = {path: index for index, path in enumerate(paths)}
    features = F.normalize(extract_features(model, [Record(p, 0, 0) for p in paths], spec,
                                            device), dim=1)
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


def evaluate_retrieval(model: nn.Module, data: TrainingData, spec: JobSpec,
                       device: torch.device) -> Evaluation:
    """Market-1501 protocol metrics on the query and gallery splits."""
    if not data.query or not data.gallery:
        raise ValueError("eval.protocol is 'reid' but the dataset has no query or gallery "
                         "split; set eval.protocol to 'none'")
    query = extract_features(model, data.query, spec, device)
    gallery = extract_features(model, data.gallery, spec, device)
    q_pids = np.array([r.pid for r in data.query])
    g_pids = np.array([r.pid for r in data.gallery])
    q_cams = np.array([r.camid for r in data.query])
    g_cams = np.array([r.camid for r in data.gallery])
    if spec.eval.rerank:
        distances = re_ranking(cosine_distance(query, gallery), cosine_distance(query, query),
                               cosine_distance(gallery, gallery))
        result = rank_queries(distances, q_pids, g_pids, q_cams, g_cams)
    else:
        result = rank_queries_from_features(query, gallery, q_pids, g_pids, q_cams, g_cams)
    return Evaluation(result.as_dict(), cmc=result.cmc)
