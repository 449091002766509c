"""The feature cloud's part of one step, as the head and its loss read it.

A step perturbs only the samples whose class has a cloud (about half of a long-tailed
batch), so the offsets travel as those rows and their draws, never as a dense
``(batch, classes)`` matrix. :class:`CloudRows` carries them with what says how they are
read: whether they move every logit of the row or only the target. (The weights of samples
fed several times, ``cloud_samples``, are the loss's:
:class:`~leap_core.heads.loss_terms.LossTerms`.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class CloudRows:
    """Angular offsets for some rows of a batch.

    Attributes:
        rows: ``(n,)`` indices of the samples with offsets.
        offsets: their offsets in radians, ``(n, C)`` one per logit (``C``: the head's
            classes, a shard's in a sharded run, the kept ones in a Partial FC step) or
            ``(n, 1)`` one per sample, shared by all its logits. The loss uses this tensor
            as scratch.
        shift_others: ``False`` moves only the target logit (``target_only``, spec §6).
    """

    rows: torch.Tensor
    offsets: torch.Tensor
    shift_others: bool = True

    @property
    def any(self) -> bool:
        return self.rows.numel() > 0

    def at_targets(
        self, batch: int, positions: torch.Tensor, columns: torch.Tensor, dtype: torch.dtype
    ) -> torch.Tensor:
        """``(len(positions), 1)`` offsets of the target logits of samples ``positions``,
        whose targets are columns ``columns`` of the offsets; 0 for samples without
        offsets."""
        row_of = torch.full((batch,), -1, dtype=torch.long, device=self.rows.device)
        row_of[self.rows] = torch.arange(self.rows.numel(), device=self.rows.device)
        picks = row_of.index_select(0, positions)
        # One element per sample: never a copy of whole offset rows.
        along = columns if self.offsets.shape[1] > 1 else torch.zeros_like(columns)
        drawn = self.offsets[picks.clamp(min=0), along].to(dtype).unsqueeze(1)
        return torch.where((picks >= 0).unsqueeze(1), drawn, torch.zeros_like(drawn))
