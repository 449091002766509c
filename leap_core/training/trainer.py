"""The training loop shared by ``leap train`` and the service's workers.

Setup builds data, model, head, feature cloud and optimizer from a :class:`JobSpec`; ``fit``
runs epochs of steps, evaluates and checkpoints on schedule, and reports through hooks.
The loop itself stays short enough to read top to bottom.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from leap_core.class_priors import ClassBalance, ldam_margins
from leap_core.config import JobSpec, SpecError
from leap_core.data.decoded import DecodedBatches
from leap_core.distributed import ClassShard
from leap_core.heads import HEADS, ClassSampler
from leap_core.leap import FeatureCloud
from leap_core.leap.cloud_state import load_cloud_rows
from leap_core.losses import LEAPLoss
from leap_core.models.embedding import model_for
from leap_core.schedules import learning_rate
from leap_core.training import checkpoint as ckpt
from leap_core.training import world
from leap_core.training.checkpoint_rows import Rows, join_payload, split_payload
from leap_core.training.checkpoint_shards import SHARDED_NAME, write_shards
from leap_core.training.checkpoint_store import (
    SINGLE_NAME,
    Checkpoint,
    open_checkpoint,
    remove_other_form,
)
from leap_core.training.data_setup import TrainingData, prepare_data
from leap_core.training.evaluate import Diagnostics, Evaluation, diagnose, evaluate
from leap_core.training.hooks import Hook, StepInfo
from leap_core.training.split import HeadTailSplit, head_tail_split


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; the message names the epoch and step."""


class TrainingCancelled(RuntimeError):
    """A hook asked the run to stop; the last checkpoint is kept."""


class TrainingPreempted(RuntimeError):
    """The run was asked to make way (:meth:`Trainer.request_preemption`, a SIGTERM): it
    wrote a checkpoint at the step boundary and stopped; resuming from it continues at the
    next step."""

    def __init__(self, message: str, checkpoint: Path) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"train.device is {name!r} but CUDA is not available here")
    return device


def _owned(value: Any) -> Any:
    """``value`` with every tensor in it copied into memory of its own."""
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, dict):
        return {key: _owned(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_owned(item) for item in value]
    return value


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Trainer:
    """One training run of a :class:`JobSpec`.

    In a process group of more than one process (launched by ``torchrun``), every rank
    builds the same trainer; see :mod:`leap_core.training.world`. Hooks are given to
    rank 0 only.

    Args:
        spec: the run.
        run_dir: where checkpoints go (``last.pt``; ``last.shards`` in a sharded run).
        hooks: followers of the run (progress display, MLflow, the service's job row).
        data: prepared data, to share one dataset between runs (e.g. in tests).
    """

    def __init__(
        self,
        spec: JobSpec,
        run_dir: str | Path,
        hooks: list[Hook] | None = None,
        data: TrainingData | None = None,
    ) -> None:
        self.spec = spec
        self.run_dir = Path(run_dir)
        self.hooks = list(hooks or [])
        self.ranks = world.current_ranks()
        rank, size = (self.ranks.rank, self.ranks.world_size) if self.ranks else (0, 1)
        self.device = resolve_device(spec.train.device)
        if self.ranks and self.device.type == "cuda":
            self.device = torch.device("cuda", self.ranks.local_rank)
            torch.cuda.set_device(self.device)
        # One seed per rank: augmentations differ across ranks and a run repeats exactly at
        # the same world size (the backbone's initial weights are rank 0's, see below).
        seed_everything(spec.train.seed + rank)
        self.data = data or prepare_data(spec, rank=rank, world_size=size)
        if isinstance(self.data.loader, DecodedBatches):
            self.data.loader.device = self.device  # augment where the model runs
        manifest = self.data.manifest
        self.split: HeadTailSplit = head_tail_split(spec, manifest)
        self.model = model_for(spec).to(self.device)
        scale, margin = spec.head_parameters()
        self.shard = ClassShard(manifest.num_classes, rank, size)
        self.head = HEADS[spec.method.head.kind](
            spec.model.embedding_dim, self.shard.size, scale=scale, margin=margin
        ).to(self.device)
        if self.shard.world_size > 1:  # each rank its own rows, from its own seed
            generator = torch.Generator().manual_seed(spec.train.seed + rank)
            with torch.no_grad():
                self.head.weight.copy_(
                    torch.randn(self.head.weight.shape, generator=generator) * 0.01
                )
        if spec.method.head.margin_profile == "ldam":
            margins = ldam_margins(manifest.class_counts, margin)[
                self.shard.start : self.shard.stop
            ]
            self.head.set_class_margins(margins)
        self.cloud = self._build_cloud()
        start = spec.method.leap.start_epoch(spec.train.epochs) if self.cloud else 0
        sampler = None
        if spec.method.head.sample_rate < 1:
            sampler = ClassSampler(spec.method.head.sample_rate, self.shard, spec.train.seed)
        self.criterion = LEAPLoss(
            self.head, self.cloud, start, self.shard, self._build_balance(), sampler
        )
        self.optimizer = self._build_optimizer()
        self.amp = spec.train.amp and self.device.type == "cuda"
        # In a sharded run a step skipped for an overflow must be skipped on every rank (each
        # holds other head rows): FSDP's scaler all-reduces the overflow flag.
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        if self.shard.world_size > 1:  # imported here: it costs a second; one process needs none
            from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

            self.scaler = ShardedGradScaler("cuda", enabled=self.amp)
        if self.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.forward_model: nn.Module = self.model
        if self.shard.world_size > 1:
            self.forward_model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
            self.forward_model.register_comm_hook(None, world.sum_gradients)
        self.epoch = 0
        self.global_step = 0
        self._epoch_steps: tuple[int, int] | None = None  # (steps before, steps in) this epoch
        self.mlflow_run_id: str | None = None
        self.last_metrics: dict[str, float] = {}
        # (share of samples with a cloud, their mean offset std) of every epoch with the
        # cloud on, so a control's std can be matched to the whole run, not its last epoch.
        self.cloud_epochs: list[tuple[float, float]] = []
        self.last_evaluation: Evaluation | None = None
        self.diagnostics: Diagnostics | None = None
        # Where a checkpoint written within an epoch left it: the steps done and the
        # epoch's running sums of the step figures (restored by :meth:`restore`).
        self._within_epoch: dict[str, Any] | None = None
        #: Steps done in the epoch under way (0 between epochs); a run restored from a
        #: checkpoint written within an epoch starts there.
        self.step_in_epoch = 0
        self._preempt = False
        self._last_checkpoint = time.monotonic()

    def _build_balance(self) -> ClassBalance | None:
        loss = self.spec.method.loss
        if not loss.changes_loss():
            return None
        return ClassBalance(
            list(self.data.manifest.class_counts),
            self.shard,
            label_smoothing=loss.label_smoothing,
            class_balanced_beta=loss.class_balanced_beta,
            reweight_start_epoch=loss.start_epoch(self.spec.train.epochs),
            logit_adjustment=loss.logit_adjustment,
        )

    def _build_cloud(self) -> FeatureCloud | None:
        leap = self.spec.method.leap
        if leap.mode == "off":
            return None
        split = self.split
        needs_split = leap.mode == "vanilla" or (
            leap.mode == "constant" and leap.constant_classes == "tail"
        )
        if needs_split and not 0 < split.head_classes < len(split.head):
            missing = "head" if split.head_classes == 0 else "tail"
            raise ValueError(
                f"method.leap.mode {leap.mode!r} needs head and tail classes, but the run's "
                f"split ({split.describe()}) leaves no {missing} class; set "
                f"method.leap.threshold to a class size that separates them"
            )
        return FeatureCloud(
            list(self.data.manifest.class_counts),
            self.spec.model.embedding_dim,
            leap,
            head=split.head,
            shard=self.shard,
            seed=self.spec.train.seed,
        ).to(self.device)

    def distributed_params(self) -> dict[str, str]:
        """How the run is spread, for the run's record."""
        sharded = self.shard.world_size > 1
        return {
            "distributed.world_size": str(self.shard.world_size),
            "distributed.sharding": "classes (head rows, feature cloud)" if sharded else "none",
        }

    def full_head_weight(self) -> torch.Tensor | None:
        """The head's weight of all classes (on rank 0; ``None`` on the others). Every rank
        must call it."""
        return self.shard.gather_to_main(self.head.weight.detach())

    def cloud_counts(self) -> dict[str, float]:
        """How many classes the cloud could not measure: ``cloud_single_slot_classes``
        (memories that can never hold two angles), ``cloud_unmeasurable_classes`` (those and,
        under ``leave_one_out``, classes of fewer than three images: the ``single_slot``
        policy decides their cloud) and ``cloud_classes_without_statistics`` (fewer than two
        angles at the end of the run). Empty without a cloud."""
        if self.cloud is None:
            return {}
        return {
            "cloud_single_slot_classes": float(self.cloud.single_slot_classes),
            "cloud_unmeasurable_classes": float(self.cloud.unmeasurable_classes),
            "cloud_classes_without_statistics": float(self.cloud.classes_without_statistics()),
        }

    def cloud_summary(self) -> dict[str, float]:
        """``cloud_fraction_all_epochs`` and ``cloud_std_all_epochs``: the share of samples
        with offsets and their mean std (radians), averaged over every epoch with the
        cloud on. Empty without a cloud or before it starts."""
        if not self.cloud_epochs:
            return {}
        fractions, stds = zip(*self.cloud_epochs, strict=True)
        return {
            "cloud_fraction_all_epochs": sum(fractions) / len(fractions),
            "cloud_std_all_epochs": sum(stds) / len(stds),
        }

    def _build_optimizer(self) -> torch.optim.Optimizer:
        options = self.spec.train.optimizer
        params = [p for p in [*self.model.parameters(), *self.head.parameters()] if p.requires_grad]
        if options.kind == "sgd":
            return torch.optim.SGD(
                params, lr=options.lr, momentum=options.momentum, weight_decay=options.weight_decay
            )
        return torch.optim.Adam(params, lr=options.lr, weight_decay=options.weight_decay)

    @property
    def total_steps(self) -> int:
        """The run's steps: those done, the current epoch's exactly, and the epochs still to
        come at ``steps_per_epoch`` each. A P×K epoch's batch count varies with its
        shuffle, so the figure is exact from the last epoch on (a counter ends at N/N)."""
        if self._epoch_steps is None:
            return self.spec.train.epochs * self.data.steps_per_epoch
        start, steps = self._epoch_steps
        later = self.spec.train.epochs - self.epoch - 1
        return start + steps + max(later, 0) * self.data.steps_per_epoch

    def steps_in_epoch(self, epoch: int) -> int:
        """How many batches epoch ``epoch`` has (the loader drops a short last one)."""
        self.data.sampler.set_epoch(epoch)
        batches = len(self.data.sampler) // (self.data.loader.batch_size or 1)
        cap = self.spec.train.steps_per_epoch
        return min(batches, cap) if cap is not None else batches

    # ------------------------------------------------------------------------ the loop
    def fit(self, resume: str | Path | None = None) -> dict[str, float]:
        """Train to the last epoch (from a checkpoint when ``resume`` is given)."""
        if resume is not None:
            self.restore(open_checkpoint(resume))
        self._last_checkpoint = time.monotonic()  # checkpoint_minutes counts from here
        try:
            self._call("on_start")
            for epoch in range(self.epoch, self.spec.train.epochs):
                self.epoch = epoch
                metrics = self.train_epoch(epoch)
                self.step_in_epoch = 0
                if self.cloud is not None and epoch >= self.criterion.cloud_start_epoch:
                    self.cloud_epochs.append(
                        (metrics["train_cloud_fraction"], metrics["train_cloud_std_mean"])
                    )
                last = epoch + 1 == self.spec.train.epochs
                every = self.spec.eval.every_epochs
                if (
                    self.spec.eval.protocol != "none"
                    and (last or (every and (epoch + 1) % every == 0))
                    and self.shard.main
                ):
                    metrics.update(self.evaluate())
                self.epoch = epoch + 1
                self.last_metrics = metrics
                self._call("on_epoch_end", epoch, metrics)
                if last or self.epoch % self.spec.train.checkpoint_every == 0:
                    path = self.save()
                    self._call("on_checkpoint", path)
            # Collectives first: in a sharded run the ranks other than 0 must not wait in one
            # while rank 0 alone embeds the diagnostic images.
            counts = self.cloud_counts()
            weight = self.full_head_weight() if self.spec.eval.diagnostics else None
            if weight is not None:
                self.diagnostics = diagnose(
                    self.model, weight, self.data, self.spec, self.device, self.split.head
                )
                self.last_metrics.update(self.diagnostics.metrics())
            self.last_metrics.update(counts)
            self.last_metrics.update(self.cloud_summary())
            self._call("on_end", self.last_metrics)
            return self.last_metrics
        except BaseException as error:
            self._call("on_failure", error)
            raise

    def request_preemption(self) -> None:
        """Ask the run to checkpoint at the next step boundary and stop with
        :class:`TrainingPreempted` (a spot instance's or a drained node's SIGTERM; only sets
        a flag, so a signal handler may call it). In a sharded run one rank asking is
        enough: every rank checkpoints and stops."""
        self._preempt = True

    def _checkpoint_due(self, epoch: int, last_step: bool) -> bool:
        """Whether ``train.checkpoint_every_steps`` or ``train.checkpoint_minutes`` asks for
        a checkpoint after this step (not at an epoch's end that writes one anyway)."""
        train = self.spec.train
        if last_step and (epoch + 1 == train.epochs or (epoch + 1) % train.checkpoint_every == 0):
            return False
        every, minutes = train.checkpoint_every_steps, train.checkpoint_minutes
        if every is not None and self.global_step % every == 0:
            return True
        return minutes is not None and time.monotonic() - self._last_checkpoint >= minutes * 60

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass of ``steps_per_epoch`` steps (the rest of it, after a checkpoint written
        within it); returns the epoch's mean figures."""
        self.model.train()
        steps = self.steps_in_epoch(epoch)  # sets the sampler's epoch too
        within, self._within_epoch = self._within_epoch or {}, None
        done = int(within.get("step", 0))
        self._epoch_steps = (self.global_step - done, steps)
        totals: dict[str, float] = dict(within.get("totals", {}))
        started = time.perf_counter()
        images_seen = 0
        # Both loaders serve the sampler's order in consecutive batches, so a batch's
        # positions in it are the training-set indices of its images.
        order = torch.from_numpy(self.data.sampler.indices().copy())
        batch = self.data.loader.batch_size or 1
        self.data.sampler.resume_at(done * batch)
        lr = learning_rate(self.spec.train, epoch + max(done - 1, 0) / steps)
        # After a checkpoint written at the epoch's last step nothing is left: the loader is
        # not even started (its first batch would draw augmentations the run never made).
        batches: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = (
            self.data.loader if done < steps else []
        )
        for step, (images, labels, _camids) in enumerate(batches, start=done + 1):
            lr = learning_rate(self.spec.train, epoch + (step - 1) / steps)
            sample_ids = order[(step - 1) * batch : step * batch]
            figures = self.train_step(images, labels, epoch, lr, sample_ids)
            self.step_in_epoch = step
            images_seen += labels.numel() * self.shard.world_size
            for name, value in figures.items():
                totals[name] = totals.get(name, 0.0) + value
            rate = images_seen / max(time.perf_counter() - started, 1e-9)
            self._call(
                "on_step",
                StepInfo(epoch, step, self.global_step, steps, self.total_steps, lr, rate, figures),
            )
            stop, preempt, due = world.any_rank(
                [
                    any(hook.should_stop(self) for hook in self.hooks),
                    self._preempt,
                    self._checkpoint_due(epoch, step == steps),
                ],
                self.shard,
                self.device,
            )
            if stop:
                raise TrainingCancelled(f"cancelled at epoch {epoch}, step {step}")
            if preempt or due:
                # Steps count this world size's batches: only the same world size resumes.
                self._within_epoch = {
                    "step": step,
                    "totals": totals,
                    "world_size": self.shard.world_size,
                }
                path = self.save()
                self._within_epoch = None
                self._call("on_checkpoint", path)
                if preempt:
                    raise TrainingPreempted(
                        f"preempted at epoch {epoch}, step {step} of {steps}; checkpoint {path}",
                        path,
                    )
            if step == steps:
                break
        metrics = {f"train_{name}": value / steps for name, value in totals.items()}
        metrics["lr"] = lr
        metrics["images_per_second"] = images_seen / max(time.perf_counter() - started, 1e-9)
        return metrics

    def train_step(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        epoch: int,
        lr: float,
        sample_ids: torch.Tensor | None = None,
    ) -> dict[str, float]:
        """Forward, loss, backward and update on one batch; returns the step's figures.
        ``sample_ids`` (the images' training-set indices) let the cloud count an image
        repeated in the batch once."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        images = images.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        if self.device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, enabled=self.amp):
            features = self.forward_model(images)
            ids = None if sample_ids is None else sample_ids.to(self.device, non_blocking=True)
            loss = self.criterion(features, labels, epoch, ids, step=self.global_step)
        if not torch.isfinite(loss):
            raise NonFiniteLoss(
                f"loss is {loss.item()} at epoch {epoch}, global step "
                f"{self.global_step + 1}; lower train.optimizer.lr or set "
                f"train.grad_clip"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.spec.train.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            self._clip_gradients(self.spec.train.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.global_step += 1
        return self.criterion.figures()

    def _clip_gradients(self, max_norm: float) -> None:
        """Clip by the norm of the whole run's gradient. In a sharded run every rank holds
        the same backbone gradient but only its classes' head rows, so the head's part of
        the norm is summed over ranks: every rank then scales by the same factor and the
        backbone copies stay identical."""
        backbone = [p for p in self.model.parameters() if p.grad is not None]
        head = [p for p in self.head.parameters() if p.grad is not None]
        backbone_norm = nn.utils.get_total_norm([p.grad for p in backbone if p.grad is not None])
        head_squared = nn.utils.get_total_norm([p.grad for p in head if p.grad is not None]).pow(2)
        total = (backbone_norm.pow(2) + self.shard.sum(head_squared.reshape(1))[0]).sqrt()
        nn.utils.clip_grads_with_norm_([*backbone, *head], max_norm, total)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """The spec's evaluation protocol (metrics as fractions in [0, 1])."""
        self.last_evaluation = evaluate(
            self.model, self.data, self.spec, self.device, self._report_work
        )
        return dict(self.last_evaluation.metrics)

    # -------------------------------------------------------------------- checkpoints
    def _local_payload(self) -> dict[str, Any]:
        """This rank's checkpoint in the single-file layout: its own classes' rows (every
        class in a one-process run), and the rest as every rank has it."""
        return {
            "spec": self.spec.model_dump(mode="json"),
            "model": self.model.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "global_step": self.global_step,
            "within_epoch": self._within_epoch,
            "mlflow_run_id": self.mlflow_run_id,
            "metrics": dict(self.last_metrics),
            "cloud_epochs": list(self.cloud_epochs),
            "head": {"weight": self.head.weight.detach()},
            "cloud": None if self.cloud is None else self.cloud.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "head_parameter": self._head_parameter_index(),
            "rng": ckpt.rng_states(),
        }

    def _head_parameter_index(self) -> int:
        """Position of the head's weight among the optimizer's parameters."""
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        return next(i for i, p in enumerate(params) if p is self.head.weight)

    def save(self) -> Path:
        """Write the run's checkpoint; returns where. One process writes ``last.pt``; in a
        sharded run every rank writes its own classes into ``last.shards`` (every rank calls
        it, and no rank gathers another's rows)."""
        payload = self._local_payload()
        generator = (
            None if payload["cloud"] is None else payload["cloud"]["_extra_state"]["generator"]
        )
        if self.shard.world_size == 1:
            payload["distributed"] = {
                "world_size": 1,
                "rng": [payload["rng"]],
                "cloud_generators": [generator],
            }
            path = ckpt.save_checkpoint(self.run_dir / SINGLE_NAME, payload)
        else:
            payload["distributed"] = {"world_size": self.shard.world_size}
            common, rows = split_payload(payload, start=self.shard.start)
            rank_state = {"rng": payload["rng"], "cloud_generator": generator}
            path = write_shards(
                self.run_dir / SHARDED_NAME,
                common if self.shard.main else None,
                rows,
                rank_state,
                self.shard,
            )
        if self.shard.main:
            remove_other_form(self.run_dir, path)
        self._last_checkpoint = time.monotonic()
        return path

    def restore(self, checkpoint: Checkpoint) -> None:
        """Continue from a checkpoint of this spec (its structure must match), of either
        form and any world size, one process included: each rank reads its classes' rows."""
        common = checkpoint.common
        if checkpoint.num_classes != self.shard.num_classes:
            raise ValueError(
                f"the checkpoint {checkpoint.path} holds {checkpoint.num_classes} classes, "
                f"the run {self.shard.num_classes}"
            )
        self.model.load_state_dict(common["model"])
        same_world = checkpoint.world_size == self.shard.world_size
        rank = self.shard.rank
        P = None if self.cloud is None else self.cloud.P
        rows = checkpoint.rows(self.shard.start, self.shard.stop, P)
        self.head.load_state_dict({"weight": rows.head})
        # Copies (_owned): the optimizer and the cloud keep some tensors they are given, and
        # a slice of a mapped file would hold (and at the next save write) the whole of the
        # file's tensor, and keep the file mapped after the run has replaced it.
        local = join_payload(common, Rows(rows.start, rows.stop, rows.head, rows.optimizer, None))
        self.optimizer.load_state_dict(_owned(local["optimizer"]))
        streams = checkpoint.rank_state(rank) if same_world else checkpoint.rank_state(0)
        if self.cloud is not None:
            if common.get("cloud") is None or rows.cloud is None:
                raise ValueError(
                    "checkpoint was trained without a feature cloud but the spec "
                    "has method.leap.mode on"
                )
            generator = streams["cloud_generator"] if same_world else None
            load_cloud_rows(self.cloud, _owned(common["cloud"]), rows.cloud, _owned(generator))
        self.scaler.load_state_dict(common["scaler"])
        ckpt.restore_rng_states(streams["rng"])
        if not same_world and rank > 0:  # rank 0's streams, made this rank's own
            seed_everything(self.spec.train.seed + rank + 7919 * int(common["epoch"]))
        self.epoch = int(common["epoch"])
        self.global_step = int(common["global_step"])
        within = common.get("within_epoch")
        if within is not None and within.get("world_size", 1) != self.shard.world_size:
            raise SpecError(
                f"the checkpoint was written within epoch {common['epoch']} (step "
                f"{within['step']}) by {within.get('world_size', 1)} processes; its steps "
                f"are theirs: resume it with as many ({self.shard.world_size} now), or from "
                f"a checkpoint written at an epoch's end"
            )
        self._within_epoch = within
        self.step_in_epoch = int((self._within_epoch or {}).get("step", 0))
        self.mlflow_run_id = common.get("mlflow_run_id")
        self.last_metrics = dict(common.get("metrics") or {})
        self.cloud_epochs = [(float(f), float(s)) for f, s in common.get("cloud_epochs", [])]

    def _report_work(self, what: str, done: int, total: int) -> None:
        self._call("on_work", what, done, total)

    def _call(self, method: str, *args: Any) -> None:
        for hook in self.hooks:
            getattr(hook, method)(self, *args)
