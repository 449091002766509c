"""The run's one head/tail definition.

The feature cloud (vanilla's eq. 6 and the constant control), the end-of-run diagnostics,
the plots and the MLflow params must all call the same classes "head": a run whose cloud
splits at ``K_i > 3`` while its diagnostics split by the cut (or call everything head) reports
numbers about two different groups. The rule, first match wins:

1. ``method.leap.threshold`` when set: head is ``K_i > T`` (the vanilla version's own split);
2. a long-tail cut (``dataset.long_tail.kind`` other than ``none``, or the synthetic set,
   which is generated already cut): the cut's head classes;
3. otherwise a threshold at the median class size: head is ``K_i >`` the median.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from leap_core.config import JobSpec
from leap_core.data import LongTailManifest


@dataclass(frozen=True)
class HeadTailSplit:
    """Which classes are head, and the rule that said so (for params and reports)."""

    head: np.ndarray  # (C,) bool
    rule: str  # "threshold", "cut" or "median"
    threshold: float | None  # the K_i threshold of the threshold and median rules

    @property
    def head_classes(self) -> int:
        return int(self.head.sum())

    @property
    def tail_classes(self) -> int:
        return int((~self.head).sum())

    def describe(self) -> str:
        """The rule in words: ``K_i > 3 (threshold)``, ``the long-tail cut``."""
        if self.rule == "cut":
            return "the long-tail cut's head classes"
        return f"K_i > {self.threshold:g} ({self.rule})"

    def params(self) -> dict[str, str]:
        """MLflow params recording the split."""
        return {
            "split.rule": self.rule,
            "split.threshold": "" if self.threshold is None else f"{self.threshold:g}",
            "split.head_classes": str(self.head_classes),
            "split.tail_classes": str(self.tail_classes),
        }


def head_tail_split(spec: JobSpec, manifest: LongTailManifest) -> HeadTailSplit:
    """The run's head classes by the module's rule."""
    counts = np.asarray(manifest.class_counts)
    threshold = spec.method.leap.threshold
    if threshold is not None:
        return HeadTailSplit(counts > threshold, "threshold", float(threshold))
    if spec.dataset.long_tail.kind != "none" or spec.dataset.format == "synthetic":
        return HeadTailSplit(np.asarray(manifest.head, dtype=bool), "cut", None)
    median = float(np.median(counts))
    return HeadTailSplit(counts > median, "median", median)
