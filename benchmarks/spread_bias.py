"""How biased is a class's measured spread, and how many images does its memory hold?

Two measurements behind ``method.leap.spread`` (README, "How a class's spread is measured"):

``memory``: the distinct images a class's angle memory holds at the end of each epoch, for
memory lengths P = 0.5, 1, 2, under P×K batches (16×4) of the Omniglot ``<H20,S3>`` cut's
class sizes (20 classes of 20 images, 944 of 3), with every sample written (the paper's
estimator) or an image repeated in a batch written once (``leave_one_out``). Labels only:
no images are read.

``shrinkage`` (needs ``--checkpoint``, a finished run on a dataset whose head classes have
many images): embeds the run's training images and, for every head class, draws subsets of
n of its images; the within-subset variance of the angles to the subset's own mean (the
paper's estimator) and to the mean of the other images of the subset (leave-one-out), each
against the variance around the mean of all the class's images. Trained embeddings shrink
less than an isotropic cloud and more than a one-dimensional one; the recovery test's
generator is fitted to these figures.

    python benchmarks/spread_bias.py memory
    python benchmarks/spread_bias.py shrinkage --checkpoint RUN/last.pt
"""

from __future__ import annotations

import argparse
import math
from collections import deque

import numpy as np
import torch

from leap_core.data.samplers import PKSampler

SUBSET_SIZES = (3, 4, 5, 10)


def memory_contents(counts: list[int], memory_length: float, once: bool, epochs: int) -> dict:
    """Distinct images per memory at each epoch's end, averaged over epochs 2.. (the first
    fills the memories), for classes of each size."""
    labels = np.repeat(np.arange(len(counts)), counts)
    sampler = PKSampler(labels.tolist(), identities=16, instances=4, seed=0)
    capacity = [max(1, math.ceil(k * memory_length - 1e-9)) for k in counts]
    memories = [deque(maxlen=c) for c in capacity]
    distinct: dict[int, list[float]] = {}
    full: dict[int, list[bool]] = {}
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        order = sampler.indices()
        for start in range(0, len(order) - 63, 64):
            batch = order[start : start + 64]
            if once:
                batch = np.array(list(dict.fromkeys(batch.tolist())))
            for image in batch:
                memories[labels[image]].append(int(image))
        if epoch == 0:
            continue
        for cls, memory in enumerate(memories):
            size = counts[cls]
            held = len(set(memory))
            distinct.setdefault(size, []).append(held)
            full[size] = [*full.get(size, []), held == min(size, capacity[cls])]
    return {
        size: (float(np.mean(values)), float(np.mean(full[size])))
        for size, values in sorted(distinct.items())
    }


def print_memory_table(epochs: int) -> None:
    counts = [20] * 20 + [3] * 944
    print(
        "| P | estimator | K_i | slots ceil(K_i·P) | distinct images held (mean) | memories "
        "holding min(K_i, slots) distinct |"
    )
    print("|---|---|---|---|---|---|")
    for memory_length in (0.5, 1.0, 2.0):
        for once, name in ((False, "paper"), (True, "leave_one_out")):
            for size, (mean, share) in memory_contents(counts, memory_length, once, epochs).items():
                slots = max(1, math.ceil(size * memory_length - 1e-9))
                print(
                    f"| {memory_length:g} | {name} | {size} | {slots} | {mean:.2f} | "
                    f"{100 * share:.0f} % |"
                )


def angles(features: np.ndarray, centres: np.ndarray) -> np.ndarray:
    centres = centres / np.linalg.norm(centres, axis=-1, keepdims=True)
    return np.arccos(np.clip((features * centres).sum(-1), -1.0, 1.0))


def shrinkage(features: np.ndarray, labels: np.ndarray, draws: int, seed: int) -> None:
    counts = np.bincount(labels)
    largest = int(counts.max())
    heads = np.flatnonzero(counts == largest)
    rng = np.random.default_rng(seed)
    whole = [angles(features[labels == c], features[labels == c].mean(0)) for c in heads]
    reference = float(np.mean([a.var(ddof=1) for a in whole]))
    print(
        f"{len(heads)} head classes of {largest} images; angle variance around the mean of "
        f"all of a class's images: {reference:.5f} rad²"
    )
    print("| n images | paper: around their mean | leave_one_out: around the others' mean |")
    print("|---|---|---|")
    for n in SUBSET_SIZES:
        paper, loo = [], []
        for c in heads:
            members = features[labels == c]
            for _ in range(draws):
                subset = members[rng.choice(len(members), n, replace=False)]
                paper.append(angles(subset, subset.mean(0)).var(ddof=1))
                others = (subset.sum(0)[None] - subset) / (n - 1)
                loo.append(angles(subset, others).var(ddof=1))
        print(f"| {n} | {np.mean(paper) / reference:.3f} | {np.mean(loo) / reference:.3f} |")


def embed_checkpoint(path: str) -> tuple[np.ndarray, np.ndarray]:
    from leap_core.config import JobSpec
    from leap_core.models.embedding import model_for
    from leap_core.training.checkpoint_store import open_checkpoint
    from leap_core.training.data_setup import prepare_data
    from leap_core.training.evaluate import extract_features

    payload = open_checkpoint(path).common
    spec = JobSpec.model_validate(payload["spec"])
    model = model_for(spec, pretrained=False)
    model.load_state_dict(payload["model"])
    data = prepare_data(spec)
    features = extract_features(model, list(data.manifest.records), spec, torch.device("cpu"))
    unit = torch.nn.functional.normalize(features.double(), dim=1).numpy()
    return unit, np.asarray(data.manifest.labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("memory", "shrinkage"))
    parser.add_argument("--checkpoint", help="shrinkage: a finished run's last.pt")
    parser.add_argument("--epochs", type=int, default=8, help="memory: epochs of batches")
    parser.add_argument("--draws", type=int, default=200, help="shrinkage: subsets per class")
    args = parser.parse_args()
    if args.what == "memory":
        print_memory_table(args.epochs)
        return
    if args.checkpoint is None:
        parser.error("shrinkage needs --checkpoint")
    torch.set_num_threads(1)
    features, labels = embed_checkpoint(args.checkpoint)
    shrinkage(features, labels, args.draws, seed=0)


if __name__ == "__main__":
    main()
