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

**One cloud for every world size.** The cloud holds the classes of a
:class:`~leap_core.distributed.shard.ClassShard`: all of them in a one-process run, a
contiguous slice in a class-sharded one, where its memory per rank falls as one over the
world size. It is fed the whole (gathered) batch and folds in the samples of its own
classes; what spans all classes (eq. 6's head means, eq. 9's weighted mean, the head/tail
reports, a sample's offset std, the shuffled permutation) is a reduction over the shards,
which at world size 1 is the value itself. Offsets drawn once per logit are drawn by each
rank for its own columns, from a generator seeded ``seed + rank``; offsets shared by the
whole sample are drawn with ``seed`` on every rank, the same numbers everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

from leap_core import checks
from leap_core.config import LeapSpec, format_validation_error
from leap_core.distributed.shard import ClassShard
from leap_core.heads.angles import cosine_to_angle
from leap_core.leap import classes
from leap_core.leap.batching import BatchGroups, group_by_class
from leap_core.leap.memory import AngleMemory


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


def leap_settings(settings: LeapSpec | None, fields: dict[str, Any]) -> LeapSpec:
    """The validated method settings: ``settings`` itself, or a :class:`LeapSpec` of
    ``fields`` (mode ``full`` unless given), with errors that name the field."""
    if settings is not None:
        if fields:
            raise ValueError(f"give settings or fields, not both (got {sorted(fields)})")
        return settings
    try:
        settings = LeapSpec(**{"mode": "full", **fields})
    except ValidationError as error:
        # A problem of the settings as a whole has no field to name.
        raise ValueError(format_validation_error(error).replace("spec: ", "")) from None
    return settings


class FeatureCloud(nn.Module):
    """Class centres, FIFO angle memories and the per-class cloud variance of a shard of
    the classes.

    Args:
        class_counts: ``K_i``, the number of training images of **every** class, length
            ``C``.
        embedding_dim: feature size ``D``.
        settings: the method's settings, ``method.leap`` of a job spec (mode, threshold,
            P, gamma, center_update, spread, offset, the controls, single_slot,
            update_every, cloud_samples); their meaning is documented there, once.
        head: ``(C,)`` booleans, the run's head classes. When given it is the one head/tail
            split the cloud uses (vanilla's eq. 6, the controls, the reports); else
            ``K_i > threshold``, else ``K_i >`` the median count.
        shard: the classes this cloud holds (default: all of them).
        seed: seed of the cloud's own random generators, whose states travel in
            :meth:`state_dict` so a resumed run draws the same offsets.
        **fields: instead of ``settings``, its fields (mode defaults to ``full``), for
            use as a library: ``FeatureCloud(counts, 512, mode="vanilla", threshold=5)``.
    """

    # Buffers and submodule, declared so type checkers know their types.
    class_counts: torch.Tensor
    is_head: torch.Tensor
    measurable: torch.Tensor
    centres: torch.Tensor
    seen: torch.Tensor
    shuffle_groups: torch.Tensor
    permutation: torch.Tensor
    memory: AngleMemory

    def __init__(
        self,
        class_counts: Sequence[int] | np.ndarray | torch.Tensor,
        embedding_dim: int,
        settings: LeapSpec | None = None,
        *,
        head: Sequence[bool] | np.ndarray | torch.Tensor | None = None,
        shard: ClassShard | None = None,
        seed: int = 0,
        **fields: Any,
    ) -> None:
        super().__init__()
        self.settings = leap_settings(settings, fields)
        if self.settings.mode == "off":
            raise ValueError("mode must not be 'off' for a feature cloud")
        counts = classes.class_counts_tensor(class_counts)
        self.embedding_dim = checks.positive_int("embedding_dim", embedding_dim)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        self.seed = seed
        self.shard = shard or ClassShard(counts.numel())
        if self.shard.num_classes != counts.numel():
            raise ValueError(
                f"class_counts has {counts.numel()} classes but the shard splits "
                f"{self.shard.num_classes}"
            )
        mode = self.settings.mode
        is_head = classes.head_mask(counts, head, self.settings.threshold)
        if mode == "vanilla" or (mode == "constant" and self.settings.constant_classes == "tail"):
            described = "head" if head is not None else f"threshold={self.settings.threshold!r}"
            if not bool(is_head.any()):
                raise ValueError(
                    f"{described} leaves no head class (largest class count is {int(counts.max())})"
                )
            if bool(is_head.all()):
                raise ValueError(
                    f"{described} leaves no tail class (smallest class count is "
                    f"{int(counts.min())})"
                )
        mine = slice(self.shard.start, self.shard.stop)
        local = counts[mine]
        self.register_buffer("class_counts", local)
        self.register_buffer("is_head", is_head[mine].clone(), persistent=False)
        self.register_buffer(
            "measurable",
            classes.measurable_classes(local, self.P, self.settings.spread),
            persistent=False,
        )
        self.register_buffer("centres", torch.zeros(local.numel(), self.embedding_dim))
        self.register_buffer("seen", torch.zeros(local.numel(), dtype=torch.bool))
        # Shuffled mode: class i takes the variance of class permutation[i], over all
        # classes (the identity until the first statistics update); tail classes are
        # grouped by K_i, head classes each form a group of one.
        shuffled = mode == "shuffled"
        every = torch.arange(counts.numel()) if shuffled else torch.arange(0)
        groups = torch.where(is_head, -1 - every, counts) if shuffled else every
        self.register_buffer("shuffle_groups", groups, persistent=False)
        self.register_buffer("permutation", every.clone(), persistent=False)
        self.memory = AngleMemory(classes.memory_capacities(local, self.P))
        self._calls = 0
        self._generators: dict[str, torch.Generator] = {}
        self._pending_generator_states: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------ settings
    @property
    def mode(self) -> str:
        return self.settings.mode

    @property
    def P(self) -> float:
        return self.settings.P

    @property
    def offset(self) -> str:
        return self.settings.offset

    @property
    def spread(self) -> str:
        return self.settings.spread

    @property
    def cloud_samples(self) -> int:
        return self.settings.cloud_samples

    @property
    def num_classes(self) -> int:
        """All the run's classes (this cloud holds :attr:`shard`'s)."""
        return self.shard.num_classes

    @property
    def calls(self) -> int:
        """How many times :meth:`update` was called (updating or not)."""
        return self._calls

    @property
    def shifts_other_logits(self) -> bool:
        """Whether the offsets move the non-target logits too (not for ``target_only``)."""
        return self.offset != "target_only"

    @property
    def single_slot_classes(self) -> int:
        """Classes whose memory can never hold two angles (``ceil(K_i·P) = 1``), over all
        shards (every rank must ask)."""
        return self._count(self.memory.capacity < 2)

    @property
    def unmeasurable_classes(self) -> int:
        """Classes whose spread cannot be measured (single-slot ones and, under
        ``leave_one_out``, those of fewer than three images); ``single_slot`` decides
        their cloud. Over all shards."""
        return self._count(~self.measurable)

    def classes_without_statistics(self) -> int:
        """Classes that hold fewer than two angles now (never seen twice, or single-slot),
        over all shards."""
        return self._count(self.memory.count < 2)

    def _count(self, mask: torch.Tensor) -> int:
        return int(self.shard.sum(mask.sum().to(torch.float64)).item())

    def extra_repr(self) -> str:
        chosen = self.settings.model_dump(exclude={"cloud_start_epoch"})
        described = ", ".join(f"{name}={value!r}" for name, value in chosen.items())
        return (
            f"num_classes={self.num_classes}, shard={self.shard.start}..{self.shard.stop}, "
            f"embedding_dim={self.embedding_dim}, {described}"
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
        """:meth:`update` without argument checks, for a criterion that checked them. In a
        sharded run every rank calls it with the whole gathered batch."""
        due = self._calls % self.settings.update_every == 0
        self._calls += 1
        if not due:
            return due
        if self.shard.world_size > 1:  # this shard's samples (at world size 1: all of them)
            positions, labels = self.shard.owned(labels)
            features = features.index_select(0, positions)
            if sample_ids is not None:
                sample_ids = sample_ids.index_select(0, positions)
        if labels.numel():
            self._fold(features, labels, sample_ids)
        if self.mode == "shuffled":
            groups = self.shuffle_groups
            self.permutation.copy_(classes.permute_within_groups(groups, self._rng("shuffle")))
        return True

    def _fold(
        self, features: torch.Tensor, labels: torch.Tensor, sample_ids: torch.Tensor | None
    ) -> None:
        """Eq. 4's centres, then eq. 3's angles into the memories, for this shard's samples
        (``labels`` are this shard's class indices)."""
        unit = F.normalize(features.detach().to(self.centres.dtype), dim=1)
        if self.spread == "leave_one_out" and sample_ids is not None:
            first = classes.first_occurrences(sample_ids)
            if first.numel() < labels.numel():
                unit, labels = unit.index_select(0, first), labels.index_select(0, first)
        groups = group_by_class(labels)
        batch_mean = torch.zeros(
            groups.classes.numel(), self.embedding_dim, dtype=unit.dtype, device=unit.device
        )
        batch_mean.index_add_(0, groups.group, unit)
        batch_mean /= groups.sizes.unsqueeze(1).to(unit.dtype)
        previous = self.centres[groups.classes]
        gamma = self.settings.gamma
        batch_weight = 1.0 - gamma if self.settings.center_update == "literal" else gamma
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
        """Mean, unbiased variance and count of each of this shard's classes' stored
        angles."""
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
        """``(C_shard,)`` float64 variance ``v_i`` of the offsets each of this shard's
        classes receives; 0 = no cloud."""
        settings = self.settings
        if settings.mode == "constant":
            assert settings.constant_std is not None  # the settings require it
            clouded = ~self.is_head if settings.constant_classes == "tail" else self._full() > 0
            zero = torch.zeros_like(self.memory.variance)
            return torch.where(clouded, zero + settings.constant_std**2, zero)
        if settings.mode == "vanilla":
            return self._vanilla()
        if settings.mode == "shuffled":
            every = self.shard.gather_classes(self._full())
            return every[self.permutation[self.shard.start : self.shard.stop]]
        return self._full()

    def _measured(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(has, known, eligible)``: the classes with a measured variance, that variance (0
        elsewhere), and the classes that may get a cloud (measured ones and, under the
        ``zero_variance`` policy, those that cannot be measured, their own variance
        counted as 0)."""
        has = (self.memory.count >= 2) & self.measurable
        known = torch.where(has, self.memory.variance, torch.zeros_like(self.memory.variance))
        zero_variance = self.settings.single_slot == "zero_variance"
        eligible = has | ~self.measurable if zero_variance else has
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
        """Sums over all classes of per-class sums taken on this shard's classes."""
        return self.shard.sum(torch.stack(values))

    # -------------------------------------------------------------- offsets (eqs. 7, 8)
    def sample_variance(
        self, labels: torch.Tensor, variance: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``(B,)`` each sample's offset variance (its class's :meth:`cloud_variance`, or
        ``variance`` when given), known to every rank: the owner contributes it."""
        variance = self.cloud_variance() if variance is None else variance
        if self.shard.world_size == 1:
            return variance.index_select(0, labels)
        positions, columns = self.shard.owned(labels)
        mine = torch.zeros(labels.numel(), dtype=variance.dtype, device=variance.device)
        mine[positions] = variance.index_select(0, columns)
        return self.shard.sum(mine)

    @torch.no_grad()
    def sample_alpha(
        self, labels: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``(B, C_shard)`` float32 offsets ``α_{n,j} ~ N(0, v_{y_n})``; zero rows where
        ``v = 0``. With one offset per sample a row repeats one draw; with ``target_only``
        the draw sits in the target's column alone (of the target's owner).

        Uses the cloud's own generator unless ``generator`` is given.
        """
        labels = self._checked_labels(labels)
        rows, row_alpha = self.draw_rows(self.sample_variance(labels), generator)
        alpha = torch.zeros(labels.numel(), self.shard.size, device=labels.device)
        if self.offset == "target_only":
            local = labels.index_select(0, rows) - self.shard.start
            mine = (local >= 0) & (local < self.shard.size)
            return alpha.index_put_((rows[mine], local[mine]), row_alpha[mine, 0])
        return alpha.index_copy_(0, rows, row_alpha.expand(-1, self.shard.size))

    @torch.no_grad()
    def draw_rows(
        self,
        per_sample_variance: torch.Tensor,
        generator: torch.Generator | None = None,
        buffer: Callable[[tuple[int, ...]], torch.Tensor] | None = None,
        logits: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(rows, offsets)``: the samples with a cloud (variance > 0) and their draws,
        ``(n, C_shard)`` one per logit of this shard's classes (``(n, logits)`` when a class
        sample keeps ``logits`` of them) or ``(n, 1)`` one per sample.

        ``buffer(shape)``, when given, supplies the float32 tensor the draws are written into
        (a reused one saves allocating ``(n, C)`` floats every step)."""
        std = per_sample_variance.sqrt().to(torch.float32)
        rows = (std > 0).nonzero().squeeze(1)
        width = 1
        if self.offset == "per_logit":
            width = self.shard.size if logits is None else logits
        shape = (rows.numel(), width)
        noise = torch.empty(shape, device=std.device) if buffer is None else buffer(shape)
        noise.normal_(generator=generator or self._rng("draws"))
        return rows, noise.mul_(std.index_select(0, rows).unsqueeze(1))

    def repeat_index(self, per_sample_variance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows to feed the head when each cloud sample is drawn ``cloud_samples`` times.

        Returns ``(index, repeats)``: ``index`` selects batch rows (each sample once, cloud
        samples ``cloud_samples`` times, adjacent), ``repeats`` gives each batch sample's
        number of rows.
        """
        ones = torch.ones(per_sample_variance.numel(), dtype=torch.long)
        ones = ones.to(per_sample_variance.device)
        repeats = torch.where(per_sample_variance > 0, ones * self.cloud_samples, ones)
        positions = torch.arange(per_sample_variance.numel(), device=ones.device)
        return torch.repeat_interleave(positions, repeats), repeats

    def _checked_labels(self, labels: torch.Tensor) -> torch.Tensor:
        if not isinstance(labels, torch.Tensor):
            raise ValueError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
        batch = labels.shape[0] if labels.dim() == 1 else -1
        return checks.labels_tensor("labels", labels, batch, self.num_classes)

    # ------------------------------------------------------------------ random generators
    def draw_seed(self, name: str) -> int:
        """The seed of generator ``name``: the draws per logit are this rank's own (``seed
        + rank``); the draws shared by a sample and the shuffled permutation are the same
        on every rank."""
        own = name == "draws" and self.offset == "per_logit"
        return self.seed + (self.shard.rank if own else 0)

    def _rng(self, name: str) -> torch.Generator:
        device = self.centres.device
        generator = self._generators.get(name)
        if generator is None or generator.device.type != device.type:
            generator = torch.Generator(device=device)
            generator.manual_seed(self.draw_seed(name))
            pending = self._pending_generator_states.pop(name, None)
            if pending is not None and pending["device_type"] == device.type:
                generator.set_state(pending["state"])
            self._generators[name] = generator
        return generator

    def generator_states(self) -> dict[str, dict[str, Any] | None]:
        """Each generator's state (``None`` for one not used yet)."""
        states: dict[str, dict[str, Any] | None] = {}
        for name in ("draws", "shuffle"):
            generator = self._generators.get(name)
            if generator is not None:
                states[name] = {
                    "device_type": generator.device.type,
                    "state": generator.get_state(),
                }
            else:
                states[name] = self._pending_generator_states.get(name)
        return states

    def get_extra_state(self) -> dict[str, Any]:
        states = self.generator_states()
        return {
            "seed": self.seed,
            "generator": states["draws"],
            "shuffle_generator": states["shuffle"],
            "calls": self._calls,
            "readings": self._readings(),
            "permutation": self.permutation.cpu() if self.mode == "shuffled" else None,
        }

    def _readings(self) -> dict[str, str]:
        settings = self.settings
        return {
            "mode": settings.mode,
            "center_update": settings.center_update,
            "offset": settings.offset,
            "spread": settings.spread,
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
        readings = self._readings()
        changed = {
            name: (value, readings[name])
            for name, value in saved.items()
            if readings.get(name) != value
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
        self._generators = {}
        self._pending_generator_states = {
            name: value
            for name, value in (
                ("draws", state.get("generator")),
                ("shuffle", state.get("shuffle_generator")),
            )
            if value is not None
        }
