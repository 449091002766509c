"""The feature cloud: class centres, angle memories and cloud variances (spec §3-§6).

Every under-represented class gets angular noise on its logits whose variance is the
intra-class angular variance it is missing compared with the well-represented classes.
The quantities follow the paper's equations:

* eq. 4, centres, in one of its two readings (``center_update``): ``literal``,
  ``c_i ← (1 − γ)·b_i + γ·c_i``, or ``center_loss``, ``c_i ← γ·b_i + (1 − γ)·c_i``, with
  ``b_i`` the batch mean of the class's L2-normalised features, ``c_i ← b_i`` at first
  sighting;
* eqs. 3, 5, angles ``β = arccos(<f, c>/(‖f‖‖c‖))`` kept in a FIFO of ``S_i = K_i × P``;
* eq. 6 (vanilla) and eq. 9 (full), the cloud variance of each class;
* two controls: ``constant`` gives one fixed variance to every tail class, or
  (``constant_classes="matched"``) to exactly the classes full mode would cloud at that step;
  ``shuffled`` gives full mode's variances permuted among tail classes of the same size, so
  only the link between a class and its own measurement is broken;
* eqs. 7-8, offsets ``α ~ N(0, v_y)``, one per logit, one per sample, or on the target only
  (``offset``, spec §6).

How a class's spread is measured is ``spread``. The paper's estimator (``paper``) stores the
angle of each sample to its class's centre, the running mean of the class's *own* images, so
a class of a few images looks narrower than it is: the centre sits among its images. The
default, ``leave_one_out``, stores the angle of each sample to the centre with that sample's
own share taken out (``c_{-k} = (c − s_k·f̂_k)/(1 − s_k)``, ``s_k`` the sample's weight in the
running mean, ``γ/m + (1 − γ)/K_i`` for the centre-loss reading with ``m`` distinct samples
of the class in the batch), and counts an image repeated in a batch once. Two images are
always at the same angle to their mean and to each other, so under ``leave_one_out`` a class
needs three images to be measured at all.

A class whose spread cannot be measured (a memory that can never hold two angles,
``ceil(K_i·P) = 1``, or under ``leave_one_out`` fewer than three images) follows the
``single_slot`` policy: ``zero_variance`` by default, its own variance counts as 0, so it
receives the whole target variance (it takes no part in the target itself); ``no_cloud``
leaves it without a cloud. Either way such classes are counted
(:attr:`FeatureCloud.unmeasurable_classes`) so a run says how many there were.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from leap_core import checks
from leap_core.heads.base import cosine_to_angle
from leap_core.leap.batching import BatchGroups, group_by_class
from leap_core.leap.memory import AngleMemory

ChoiceT = TypeVar("ChoiceT", bound=str)
Mode = Literal["full", "vanilla", "constant", "shuffled"]
CenterUpdate = Literal["literal", "center_loss"]
Offset = Literal["per_logit", "per_sample", "target_only"]
SingleSlot = Literal["zero_variance", "no_cloud"]
Spread = Literal["leave_one_out", "paper"]
ConstantClasses = Literal["tail", "matched"]

MODES: tuple[str, ...] = ("full", "vanilla", "constant", "shuffled")
CENTER_UPDATES: tuple[str, ...] = ("literal", "center_loss")
OFFSETS: tuple[str, ...] = ("per_logit", "per_sample", "target_only")
SINGLE_SLOT_POLICIES: tuple[str, ...] = ("zero_variance", "no_cloud")
SPREADS: tuple[str, ...] = ("leave_one_out", "paper")
CONSTANT_CLASSES: tuple[str, ...] = ("tail", "matched")

#: Images a class needs before ``leave_one_out`` can measure its spread: with two, both are
#: at the same angle to their mean and to each other, whatever their true spread.
LEAVE_ONE_OUT_MIN_IMAGES = 3


class ClassStats(NamedTuple):
    """Per-class angular statistics of the stored angles, in radians.

    Attributes:
        mean: ``(C,)`` mean angle; NaN for a class with no stored angle.
        variance: ``(C,)`` unbiased variance; NaN for a class with fewer than two angles.
        count: ``(C,)`` number of stored angles.
    """

    mean: torch.Tensor
    variance: torch.Tensor
    count: torch.Tensor  # type: ignore[assignment]  # the field shadows tuple.count, by design


def _class_counts_tensor(class_counts: object) -> torch.Tensor:
    """Validate ``class_counts`` (a sequence, array or tensor of positive integers)."""
    if isinstance(class_counts, torch.Tensor):
        array = class_counts.detach().cpu().numpy()
    elif isinstance(class_counts, np.ndarray | Sequence):
        array = np.asarray(class_counts)
    else:
        raise ValueError(
            f"class_counts must be a sequence of positive integers, "
            f"got {type(class_counts).__name__}"
        )
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"class_counts must be a non-empty 1-D sequence, got shape {array.shape}")
    if array.dtype.kind not in "iuf" or (
        array.dtype.kind == "f" and not np.all(np.mod(array, 1) == 0)
    ):
        raise ValueError(f"class_counts must hold integers, got dtype {array.dtype}")
    bad = np.flatnonzero(array < 1)
    if bad.size:
        raise ValueError(
            f"class_counts must all be >= 1, got {array[bad[0]].item()!r} at index "
            f"{int(bad[0])} ({bad.size} class(es) below 1)"
        )
    return torch.as_tensor(array.astype(np.int64))


def _choice(name: str, value: ChoiceT, allowed: tuple[str, ...]) -> ChoiceT:
    if value not in allowed:
        raise ValueError(
            f"{name} must be one of {', '.join(repr(a) for a in allowed)}, got {value!r}"
        )
    return value


def _head_mask(counts: torch.Tensor, head: object, threshold: float | None) -> torch.Tensor:
    """The head classes: ``head`` when given, else ``K_i > threshold``, else ``K_i >`` the
    median count."""
    if head is None:
        split = threshold if threshold is not None else float(counts.median())
        return counts > split
    mask = torch.as_tensor(
        np.asarray(head.detach().cpu() if isinstance(head, torch.Tensor) else head)
    )
    if mask.dtype != torch.bool or tuple(mask.shape) != tuple(counts.shape):
        raise ValueError(
            f"head must be {counts.numel()} booleans, got dtype {mask.dtype} and "
            f"shape {tuple(mask.shape)}"
        )
    return mask


def memory_capacities(counts: torch.Tensor, P: float) -> torch.Tensor:
    """``ceil(K_i × P)`` angles per class (eq. 5), at least one."""
    return torch.ceil(counts.to(torch.float64) * P - 1e-9).clamp(min=1).long()


def measurable_classes(counts: torch.Tensor, P: float, spread: Spread) -> torch.Tensor:
    """Classes whose spread the memory can measure: two slots at least, and under
    ``leave_one_out`` three images at least (module docstring)."""
    measurable = memory_capacities(counts, P) >= 2
    if spread == "leave_one_out":
        measurable &= counts >= LEAVE_ONE_OUT_MIN_IMAGES
    return measurable


def first_occurrences(sample_ids: torch.Tensor) -> torch.Tensor:
    """Positions of the first occurrence of each id, in batch order (an image repeated in a
    batch, as P×K does for a class with fewer than K images, is kept once)."""
    order = torch.sort(sample_ids, stable=True).indices
    ordered = sample_ids[order]
    first = torch.ones_like(ordered, dtype=torch.bool)
    first[1:] = ordered[1:] != ordered[:-1]
    return torch.sort(order[first]).values


def permute_within_groups(
    group: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A random permutation ``p`` of ``range(len(group))`` with ``group[p] == group``: every
    element moves to a random position of its own group (a group of one stays put)."""
    count = group.numel()
    keys = torch.rand(count, generator=generator, dtype=torch.float64, device=group.device)
    in_place = torch.sort(group, stable=True).indices  # by group, then position
    shuffled = torch.sort(group.to(torch.float64) * 2 + keys).indices  # by group, then at random
    permutation = torch.empty_like(in_place)
    permutation[in_place] = shuffled
    return permutation


class FeatureCloud(nn.Module):
    """Class centres, FIFO angle memories and the per-class cloud variance.

    Args:
        class_counts: ``K_i``, the number of training images of each class, length ``C``.
        embedding_dim: feature size ``D``.
        mode: ``"full"`` (eq. 9, no threshold needed), ``"vanilla"`` (eq. 6), or one of the
            controls: ``"constant"`` (variance ``constant_std²`` for the classes
            ``constant_classes`` names) or ``"shuffled"`` (full mode's variances, permuted
            among tail classes of the same ``K_i`` at every statistics update).
        threshold: ``T``; class ``i`` is head when ``K_i > T``. Used when ``head`` is not
            given; required for vanilla then. When neither is given, classes with more images
            than the median count are head.
        head: ``(C,)`` booleans, the run's head classes. When given it is the one head/tail
            split the cloud uses (vanilla's eq. 6, the constant control, the reports).
        P: memory length in epochs; class ``i`` keeps ``ceil(K_i × P)`` angles (eq. 5).
        gamma: γ of eq. 4 (0 ≤ γ ≤ 1); which term it weighs is ``center_update``'s.
        center_update: ``"literal"`` (the batch mean weighs 1 − γ) or ``"center_loss"``
            (the batch mean weighs γ, a slow average as in centre loss).
        offset: ``"per_logit"`` (one draw per class logit), ``"per_sample"`` (one draw
            shared by all the sample's logits) or ``"target_only"``.
        constant_std: the control's offset standard deviation in radians (constant mode).
        constant_classes: which classes the constant control perturbs: ``"tail"`` (every
            tail class) or ``"matched"`` (those full mode would cloud at that step, so the
            same share of samples as LEAP).
        spread: how a class's spread is measured: ``"leave_one_out"`` or ``"paper"``
            (module docstring).
        single_slot: policy for classes whose spread cannot be measured (module docstring).
        update_every: centres and memories are updated on calls 0, u, 2u, … of
            :meth:`update` (the paper uses 5 for faces, 1 for re-ID).
        cloud_samples: draws per cloud sample used by :class:`leap_core.losses.LEAPLoss`.
        seed: seed of the cloud's own random generator, whose state travels in
            :meth:`state_dict` so a resumed run draws the same offsets.
    """

    # Buffers and submodule, declared so type checkers know their types.
    class_counts: torch.Tensor
    is_head: torch.Tensor
    measurable: torch.Tensor
    shuffle_groups: torch.Tensor
    permutation: torch.Tensor
    centres: torch.Tensor
    seen: torch.Tensor
    memory: AngleMemory

    def __init__(
        self,
        class_counts: Sequence[int] | np.ndarray | torch.Tensor,
        embedding_dim: int,
        mode: Mode = "full",
        threshold: float | None = None,
        P: float = 1,
        gamma: float = 0.1,
        update_every: int = 1,
        cloud_samples: int = 1,
        seed: int = 0,
        center_update: CenterUpdate = "center_loss",
        offset: Offset = "per_logit",
        constant_std: float | None = None,
        single_slot: SingleSlot = "zero_variance",
        head: Sequence[bool] | np.ndarray | torch.Tensor | None = None,
        reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
        spread: Spread = "leave_one_out",
        constant_classes: ConstantClasses = "tail",
    ) -> None:
        super().__init__()
        counts = _class_counts_tensor(class_counts)
        self.embedding_dim = checks.positive_int("embedding_dim", embedding_dim)
        self.mode: Mode = _choice("mode", mode, MODES)
        self.center_update: CenterUpdate = _choice("center_update", center_update, CENTER_UPDATES)
        self.offset: Offset = _choice("offset", offset, OFFSETS)
        self.single_slot: SingleSlot = _choice("single_slot", single_slot, SINGLE_SLOT_POLICIES)
        self.spread: Spread = _choice("spread", spread, SPREADS)
        self.constant_classes: ConstantClasses = _choice(
            "constant_classes", constant_classes, CONSTANT_CLASSES
        )
        if mode == "shuffled" and reduce is not None:
            raise ValueError(
                "mode 'shuffled' permutes variances across all classes and runs in one "
                "process; a shard of the classes cannot hold it"
            )
        if threshold is None and head is None and mode == "vanilla":
            raise ValueError("threshold (or head) must be given when mode='vanilla', got None")
        self.threshold = (
            None if threshold is None else checks.finite_float("threshold", threshold, minimum=0.0)
        )
        if mode == "constant":
            if constant_std is None:
                raise ValueError("constant_std must be given when mode='constant', got None")
            constant_std = checks.finite_float(
                "constant_std", constant_std, minimum=0.0, strict_minimum=True
            )
        self.constant_std = constant_std
        self.P = checks.finite_float("P", P, minimum=0.0, strict_minimum=True)
        self.gamma = checks.finite_float("gamma", gamma, minimum=0.0, maximum=1.0)
        self.update_every = checks.positive_int("update_every", update_every)
        self.cloud_samples = checks.positive_int("cloud_samples", cloud_samples)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        self.seed = seed

        is_head = _head_mask(counts, head, self.threshold)
        described = "head" if head is not None else f"threshold={threshold!r}"
        # A shard of the classes (``reduce`` given) may hold no head or no tail class; the
        # sharded cloud checks the whole split instead.
        self._reduce = reduce
        if reduce is None and mode in ("vanilla", "constant") and not bool(is_head.any()):
            raise ValueError(
                f"{described} leaves no head class (largest class count is {int(counts.max())})"
            )
        if reduce is None and mode in ("vanilla", "constant") and bool(is_head.all()):
            raise ValueError(
                f"{described} leaves no tail class (smallest class count is {int(counts.min())})"
            )
        capacity = memory_capacities(counts, self.P)

        self.register_buffer("class_counts", counts)
        self.register_buffer("is_head", is_head, persistent=False)
        self.register_buffer(
            "measurable", measurable_classes(counts, self.P, self.spread), persistent=False
        )
        # Shuffled mode: class i takes the variance of class permutation[i] (the identity
        # until the first statistics update); tail classes are grouped by K_i, head classes
        # each form a group of one.
        tail_size = torch.where(is_head, -1 - torch.arange(counts.numel()), counts)
        self.register_buffer("shuffle_groups", tail_size, persistent=False)
        self.register_buffer("permutation", torch.arange(counts.numel()), persistent=False)
        self.register_buffer("centres", torch.zeros(counts.numel(), self.embedding_dim))
        self.register_buffer("seen", torch.zeros(counts.numel(), dtype=torch.bool))
        self.memory = AngleMemory(capacity)
        self._calls = 0
        self._generator: torch.Generator | None = None
        self._pending_generator_state: dict[str, Any] | None = None

    @property
    def num_classes(self) -> int:
        return self.class_counts.numel()

    @property
    def calls(self) -> int:
        """How many times :meth:`update` was called (updating or not)."""
        return self._calls

    @property
    def single_slot_classes(self) -> int:
        """Classes whose memory can never hold two angles (``ceil(K_i·P) = 1``)."""
        return int((self.memory.capacity < 2).sum())

    @property
    def unmeasurable_classes(self) -> int:
        """Classes whose spread cannot be measured (single-slot ones and, under
        ``leave_one_out``, those of fewer than three images); ``single_slot`` decides
        their cloud."""
        return int((~self.measurable).sum())

    def classes_without_statistics(self) -> int:
        """Classes that hold fewer than two angles now (never seen twice, or single-slot)."""
        return int((self.memory.count < 2).sum())

    @property
    def shifts_other_logits(self) -> bool:
        """Whether the offsets move the non-target logits too (not for ``target_only``)."""
        return self.offset != "target_only"

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, embedding_dim={self.embedding_dim}, "
            f"mode={self.mode!r}, threshold={self.threshold}, P={self.P}, "
            f"gamma={self.gamma}, center_update={self.center_update!r}, "
            f"offset={self.offset!r}, update_every={self.update_every}, "
            f"cloud_samples={self.cloud_samples}, constant_std={self.constant_std}, "
            f"constant_classes={self.constant_classes!r}, spread={self.spread!r}, "
            f"single_slot={self.single_slot!r}"
        )

    # ---------------------------------------------------------------- statistics (eqs. 3-5)
    @torch.no_grad()
    def update(
        self, features: torch.Tensor, labels: torch.Tensor, sample_ids: torch.Tensor | None = None
    ) -> bool:
        """Fold a batch into the centres and angle memories; returns whether it did.

        Only calls 0, u, 2u, … (``u = update_every``) change state; the others only count.
        ``sample_ids`` (one per sample, e.g. its index in the training set) lets
        ``leave_one_out`` count an image repeated in the batch once.
        """
        checks.features_tensor("features", features, self.embedding_dim)
        labels = checks.labels_tensor("labels", labels, features.shape[0], self.num_classes)
        if sample_ids is not None:
            sample_ids = checks.labels_tensor(
                "sample_ids", sample_ids, features.shape[0], torch.iinfo(torch.int64).max
            )
        return self.observe(features, labels, sample_ids)

    @torch.no_grad()
    def observe(
        self, features: torch.Tensor, labels: torch.Tensor, sample_ids: torch.Tensor | None = None
    ) -> bool:
        """:meth:`update` without argument checks, for a criterion that checked them."""
        due = self._calls % self.update_every == 0
        self._calls += 1
        if not due or labels.numel() == 0:
            return due
        unit = F.normalize(features.detach().to(self.centres.dtype), dim=1)
        if self.spread == "leave_one_out" and sample_ids is not None:
            first = first_occurrences(sample_ids)
            if first.numel() < labels.numel():
                unit, labels = unit.index_select(0, first), labels.index_select(0, first)
        groups = group_by_class(labels)
        batch_mean = torch.zeros(
            groups.classes.numel(), self.embedding_dim, dtype=unit.dtype, device=unit.device
        )
        batch_mean.index_add_(0, groups.group, unit)
        batch_mean /= groups.sizes.unsqueeze(1).to(unit.dtype)
        previous = self.centres[groups.classes]
        batch_weight = 1.0 - self.gamma if self.center_update == "literal" else self.gamma
        blended = batch_weight * batch_mean + (1.0 - batch_weight) * previous
        seen = self.seen[groups.classes]
        centres = torch.where(seen.unsqueeze(1), blended, batch_mean)
        self.centres[groups.classes] = centres
        self.seen[groups.classes] = True

        if self.spread == "paper":
            unit_centres = F.normalize(centres, dim=1)[groups.group]
            self.memory.write(cosine_to_angle((unit * unit_centres).sum(dim=1)), labels, groups)
        else:
            self._write_leave_one_out(unit, labels, groups, centres, seen, batch_weight)
        if self.mode == "shuffled":
            self.permutation.copy_(permute_within_groups(self.shuffle_groups, self._rng()))
        return True

    def _write_leave_one_out(
        self,
        unit: torch.Tensor,
        labels: torch.Tensor,
        groups: BatchGroups,
        centres: torch.Tensor,
        seen: torch.Tensor,
        batch_weight: float,
    ) -> None:
        """Store each sample's angle to its class's centre without the sample's own share.

        The centre is a running mean of the class's unit features (``centres``, not
        normalised); a sample's share in it is ``w/m`` from this batch (``m`` samples of
        its class, batch weight ``w``) plus ``(1 − w)/K_i`` from the running mean, which
        averages all ``K_i`` images of the class. At first sighting the centre is the batch
        mean alone, so the share is ``1/m``. A sample that is all of its centre (a class of
        one image, or one sample at first sighting) has no angle to store."""
        dtype = unit.dtype
        in_batch = groups.sizes[groups.group].to(dtype)
        images = self.class_counts[labels].to(dtype)
        share = torch.where(
            seen[groups.group],
            batch_weight / in_batch + (1.0 - batch_weight) / images,
            1.0 / in_batch,
        )
        rest = 1.0 - share
        keep = (rest > 1e-6) & self.measurable[labels]
        others = (centres[groups.group] - share.unsqueeze(1) * unit) / rest.clamp(
            min=1e-6
        ).unsqueeze(1)
        angles = cosine_to_angle((unit * F.normalize(others, dim=1)).sum(dim=1))
        if not bool(keep.all()):
            kept = keep.nonzero().squeeze(1)
            angles, labels = angles.index_select(0, kept), labels.index_select(0, kept)
            groups = group_by_class(labels)
        if labels.numel():
            self.memory.write(angles, labels, groups)

    def class_stats(self) -> ClassStats:
        """Mean, unbiased variance and count of each class's stored angles."""
        return ClassStats(self.memory.mean.clone(), self.memory.variance.clone(), self.memory.count)

    def head_statistics(self) -> tuple[float, float]:
        """``(μ_h, σ_h²)`` of eq. 6: mean angle and mean variance over head classes that have
        statistics; NaN while none has."""
        has = self.is_head & (self.memory.count >= 2)
        zero = torch.zeros_like(self.memory.mean)
        sums = self._summed(
            torch.where(has, self.memory.mean, zero).sum(),
            torch.where(has, self.memory.variance, zero).sum(),
            has.sum().to(zero.dtype),
        )
        if float(sums[2]) == 0:
            return math.nan, math.nan
        return float(sums[0] / sums[2]), float(sums[1] / sums[2])

    def angular_variance_by_group(self) -> tuple[float, float]:
        """Mean intra-class angular variance over head and over tail classes that have
        statistics (the paper's 0.463 / 0.288 analysis); NaN for an empty group."""
        has = self.memory.count >= 2
        zero = torch.zeros_like(self.memory.variance)
        terms = []
        for group in (self.is_head, ~self.is_head):
            chosen = group & has
            terms += [torch.where(chosen, self.memory.variance, zero).sum(), chosen.sum()]
        sums = self._summed(*(term.to(zero.dtype) for term in terms))
        return tuple(  # type: ignore[return-value]
            float(sums[i] / sums[i + 1]) if float(sums[i + 1]) > 0 else math.nan for i in (0, 2)
        )

    # ------------------------------------------------------------ cloud variance (eqs. 6, 9)
    def cloud_variance(self) -> torch.Tensor:
        """``(C,)`` float64 variance ``v_i`` of each class's angular offsets; 0 = no cloud."""
        if self.mode == "constant":
            assert self.constant_std is not None  # checked in __init__
            clouded = ~self.is_head if self.constant_classes == "tail" else self._full() > 0
            zero = torch.zeros_like(self.memory.variance)
            return torch.where(clouded, zero + self.constant_std**2, zero)
        if self.mode == "vanilla":
            return self._vanilla()
        if self.mode == "shuffled":
            return self._full()[self.permutation]
        return self._full()

    def _measured(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(has, known, eligible)``: the classes with a measured variance, that variance (0
        elsewhere), and the classes that may get a cloud (measured ones and, under the
        ``zero_variance`` policy, those that cannot be measured, their own variance
        counted as 0)."""
        has = (self.memory.count >= 2) & self.measurable
        known = torch.where(has, self.memory.variance, torch.zeros_like(self.memory.variance))
        eligible = has | ~self.measurable if self.single_slot == "zero_variance" else has
        return has, known, eligible

    def _vanilla(self) -> torch.Tensor:
        """Eq. 6: tail classes get the gap to the mean head variance."""
        has, known, eligible = self._measured()
        zero = torch.zeros_like(known)
        head = self.is_head & has
        head_sum, heads = self._summed(
            torch.where(head, known, zero).sum(), head.sum().to(known.dtype)
        )
        target = head_sum / heads.clamp(min=1)
        gets_cloud = ~self.is_head & eligible & (heads > 0)
        return torch.where(gets_cloud, (target - known).clamp(min=0.0), zero)

    def _full(self) -> torch.Tensor:
        """Eq. 9: every class below the ``(K_i − 1)``-weighted mean variance gets the gap."""
        has, known, eligible = self._measured()
        zero = torch.zeros_like(known)
        weight = torch.where(has, (self.class_counts - 1).to(known.dtype), zero)
        weighted, total = self._summed((weight * known).sum(), weight.sum())
        target = weighted / total.clamp(min=1e-300)
        gets_cloud = eligible & (known < target) & (total > 0)
        return torch.where(gets_cloud, target - known, zero)

    def _summed(self, *values: torch.Tensor) -> torch.Tensor:
        """The sums over all classes of per-class sums taken on this cloud's classes: the
        values themselves, or, for a shard of the classes, their total over the shards."""
        stacked = torch.stack(values)
        return stacked if self._reduce is None else self._reduce(stacked)

    # -------------------------------------------------------------- offsets (eqs. 7, 8)
    @torch.no_grad()
    def sample_alpha(
        self, labels: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``(B, C)`` float32 offsets ``α_{n,j} ~ N(0, v_{y_n})``; zero rows where ``v = 0``.

        With one offset per sample a row repeats one draw; with ``target_only`` the draw sits
        in the target's column alone.

        Uses the cloud's own generator unless ``generator`` is given.
        """
        labels = self._checked_labels(labels)
        return self.draw(labels, self.cloud_variance(), generator)

    @torch.no_grad()
    def draw(
        self, labels: torch.Tensor, variance: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """:meth:`sample_alpha` for already-checked labels and a precomputed
        :meth:`cloud_variance`, so a training step computes the variance once."""
        rows, row_alpha = self.draw_rows(labels, variance, generator)
        alpha = torch.zeros(labels.numel(), self.num_classes, device=labels.device)
        if self.offset == "target_only":
            return alpha.index_put_((rows, labels[rows]), row_alpha[:, 0])
        return alpha.index_copy_(0, rows, row_alpha.expand(-1, self.num_classes))

    @torch.no_grad()
    def draw_rows(
        self,
        labels: torch.Tensor,
        variance: torch.Tensor,
        generator: torch.Generator | None = None,
        buffer: Callable[[tuple[int, ...]], torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The non-zero rows of :meth:`draw`: ``(rows, offsets)`` with ``rows`` the indices of
        the samples whose class has a cloud and ``offsets`` their draws, ``(n, C)`` per logit
        or ``(n, 1)`` per sample. The same generator calls as :meth:`draw`, so both give the
        same numbers.

        ``buffer(shape)``, when given, supplies the float32 tensor the draws are written into
        (a reused one saves allocating ``(n, C)`` floats every step)."""
        std = variance[labels].sqrt().to(torch.float32)
        rows = (std > 0).nonzero().squeeze(1)
        width = self.num_classes if self.offset == "per_logit" else 1
        shape = (rows.numel(), width)
        noise = torch.empty(shape, device=std.device) if buffer is None else buffer(shape)
        noise.normal_(generator=generator or self._rng())
        return rows, noise.mul_(std.index_select(0, rows).unsqueeze(1))

    def repeat_index(
        self, labels: torch.Tensor, variance: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows to feed the head when each cloud sample is drawn ``cloud_samples`` times.

        Returns ``(index, repeats)``: ``index`` selects batch rows (each sample once, cloud
        samples ``cloud_samples`` times, adjacent), ``repeats`` gives each batch sample's
        number of rows.
        """
        ones = torch.ones_like(labels)
        repeats = torch.where(variance[labels] > 0, ones * self.cloud_samples, ones)
        index = torch.repeat_interleave(torch.arange(labels.numel(), device=labels.device), repeats)
        return index, repeats

    def _checked_labels(self, labels: torch.Tensor) -> torch.Tensor:
        if not isinstance(labels, torch.Tensor):
            raise ValueError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
        batch = labels.shape[0] if labels.dim() == 1 else -1
        return checks.labels_tensor("labels", labels, batch, self.num_classes)

    # ------------------------------------------------------------------ random generator
    def _rng(self) -> torch.Generator:
        device = self.centres.device
        if self._generator is None or self._generator.device.type != device.type:
            self._generator = torch.Generator(device=device)
            self._generator.manual_seed(self.seed)
            pending = self._pending_generator_state
            if pending is not None and pending["device_type"] == device.type:
                self._generator.set_state(pending["state"])
            self._pending_generator_state = None
        return self._generator

    def get_extra_state(self) -> dict[str, Any]:
        state = self._pending_generator_state
        if self._generator is not None:
            state = {
                "device_type": self._generator.device.type,
                "state": self._generator.get_state(),
            }
        return {
            "seed": self.seed,
            "generator": state,
            "calls": self._calls,
            "readings": self._readings(),
            "permutation": self.permutation.cpu() if self.mode == "shuffled" else None,
        }

    def _readings(self) -> dict[str, str]:
        return {
            "mode": self.mode,
            "center_update": self.center_update,
            "offset": self.offset,
            "spread": self.spread,
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        # A cloud saved before the readings were recorded always used the literal eq. 4 and
        # one offset per logit, and one saved before the spread was a reading the paper's
        # estimator; resuming it with another reading would change the method mid-run
        # without a word.
        saved = {
            "spread": "paper",
            **state.get("readings", {"center_update": "literal", "offset": "per_logit"}),
        }
        changed = {
            name: (value, getattr(self, name))
            for name, value in saved.items()
            if getattr(self, name) != value
        }
        if changed:
            described = "; ".join(
                f"method.leap.{name} was {old!r}, the spec says {new!r}"
                for name, (old, new) in changed.items()
            )
            raise ValueError(
                f"the checkpoint's feature cloud was trained with other readings "
                f"({described}); resume with the checkpoint's values"
            )
        self.seed = int(state["seed"])
        self._calls = int(state["calls"])
        if state.get("permutation") is not None:
            self.permutation.copy_(state["permutation"])
        self._generator = None
        self._pending_generator_state = state["generator"]
