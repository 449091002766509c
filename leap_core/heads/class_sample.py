"""Partial FC: a step's softmax over a sample of the classes (An et al., insightface's
``partial_fc_v2``).

At a million identities the head's ``(batch, classes)`` logits cost more than the backbone,
and almost every class is a negative of every sample. Partial FC keeps, on each shard, the
rows of every class that has a sample in the global batch and a random share of the others,
and computes an exact softmax cross-entropy over the kept rows only. The sample is the
shard's own (``max(1, ⌊r·C_shard⌋)`` rows, or every positive when there are more), drawn from
a generator on the run's device seeded by the run's seed, the rank and the step (through
NumPy's ``SeedSequence``, so no two of them share a stream), so a rerun or a resumed run
draws the same rows at the same step without keeping any generator state.

Rows left out of a step get a zero gradient for it, as ``partial_fc_v2``'s index into its
one weight tensor gives them: the optimizer still applies its momentum and weight decay to
them, so their optimizer state is the whole head's, sharded like the rows, and a checkpoint
is the same as without sampling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from leap_core import checks
from leap_core.distributed.shard import ClassShard


@dataclass(frozen=True)
class SampledClasses:
    """The head rows one step's softmax runs over, on this shard.

    Attributes:
        rows: ``(n,)`` sorted indices of this shard's kept rows (every class of the batch
            that the shard owns among them).
    """

    rows: torch.Tensor

    @property
    def size(self) -> int:
        return self.rows.numel()

    def columns(self, head_columns: torch.Tensor) -> torch.Tensor:
        """The kept-row positions of ``head_columns`` (rows of the head that are kept)."""
        return torch.searchsorted(self.rows, head_columns)

    def total(self, shard: ClassShard) -> int:
        """How many classes the softmax covers over every shard (a collective when the run
        is sharded)."""
        count = torch.tensor([float(self.size)], dtype=torch.float64, device=self.rows.device)
        return int(shard.sum(count).item())


class ClassSampler:
    """Draws each step's :class:`SampledClasses` for one shard.

    Args:
        sample_rate: ``r`` in ``(0, 1]``, the share of the shard's rows a step keeps; 1
            keeps them all (no sampling: :meth:`draw` returns ``None``). Below 1 every
            shard draws, so all ranks of a run take the same path, even one whose share
            rounds to all its rows.
        shard: the classes of this rank's head.
        seed: the run's seed.
    """

    def __init__(self, sample_rate: float, shard: ClassShard, seed: int = 0) -> None:
        self.sample_rate = checks.finite_float(
            "sample_rate", sample_rate, minimum=0.0, strict_minimum=True
        )
        if self.sample_rate > 1:
            raise ValueError(f"sample_rate must be in (0, 1], got {sample_rate!r}")
        self.shard = shard
        self.seed = checks.non_negative_int("seed", seed)
        self.kept = max(1, int(self.sample_rate * shard.size))

    def draw(self, labels: torch.Tensor, step: int) -> SampledClasses | None:
        """The rows step ``step`` keeps for the (gathered) batch's ``labels`` (classes over
        all shards): every owned positive, and random other rows up to the shard's share.
        ``None`` at sample rate 1."""
        if self.sample_rate >= 1:
            return None
        if self.kept >= self.shard.size:
            return SampledClasses(torch.arange(self.shard.size, device=labels.device))
        _, columns = self.shard.owned(labels)
        positive = torch.unique(columns)
        if positive.numel() >= self.kept:
            return SampledClasses(positive)
        generator = torch.Generator(device=labels.device)
        words = np.random.SeedSequence([self.seed, self.shard.rank, step]).generate_state(
            1, dtype=np.uint64
        )
        generator.manual_seed(int(words[0]))
        score = torch.rand(self.shard.size, generator=generator, device=labels.device)
        score[positive] = 2.0  # above every draw: the positives are always kept
        rows = score.topk(self.kept, sorted=False).indices.sort().values
        return SampledClasses(rows)
