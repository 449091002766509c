"""The trainer: exact resume, non-finite loss, cancellation, learning on synthetic data."""

from __future__ import annotations

import pytest
import torch

from leap_core.config import SpecError
from leap_core.training.checkpoint import load_checkpoint
from leap_core.training.hooks import Hook
from leap_core.training.trainer import (
    NonFiniteLoss,
    Trainer,
    TrainingCancelled,
    TrainingPreempted,
)


def weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {
        **{f"model.{k}": v for k, v in trainer.model.state_dict().items()},
        **{f"head.{k}": v for k, v in trainer.head.state_dict().items()},
    }


def test_resume_after_an_epoch_ends_with_identical_weights(tiny_spec, tmp_path):
    spec = tiny_spec(train={"epochs": 3, "checkpoint_every": 1}, eval={"protocol": "none"})
    straight = Trainer(spec, tmp_path / "straight")
    straight.fit()

    class StopAfterFirstEpoch(Hook):
        def on_epoch_end(self, trainer, epoch, metrics):
            if epoch == 0:
                trainer.save()
                raise KeyboardInterrupt  # the process dies between epochs

    first = Trainer(spec, tmp_path / "interrupted", [StopAfterFirstEpoch()])
    with pytest.raises(KeyboardInterrupt):
        first.fit()
    checkpoint = tmp_path / "interrupted" / "last.pt"
    assert load_checkpoint(checkpoint)["epoch"] == 1

    torch.manual_seed(1234)  # a fresh process would start from another RNG state
    resumed = Trainer(spec, tmp_path / "interrupted")
    resumed.fit(resume=checkpoint)
    assert resumed.global_step == straight.global_step == 3 * 4
    expected, actual = weights(straight), weights(resumed)
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name
    assert torch.equal(straight.cloud.memory.angles, resumed.cloud.memory.angles)


def test_non_finite_loss_stops_the_run_naming_the_step(tiny_spec, tmp_path):
    class PoisonAfterTwoSteps(Hook):
        def on_step(self, trainer, info):
            if info.global_step == 2:
                with torch.no_grad():
                    trainer.head.weight[0, 0] = float("nan")

    failures = []

    class Record(Hook):
        def on_failure(self, trainer, error):
            failures.append(error)

    spec = tiny_spec(eval={"protocol": "none"})
    trainer = Trainer(spec, tmp_path, [PoisonAfterTwoSteps(), Record()])
    with pytest.raises(NonFiniteLoss, match="loss is nan at epoch 0, global step 3"):
        trainer.fit()
    assert len(failures) == 1 and isinstance(failures[0], NonFiniteLoss)


def test_cancellation_between_steps_keeps_the_last_checkpoint(tiny_spec, tmp_path):
    class CancelInSecondEpoch(Hook):
        def should_stop(self, trainer):
            return trainer.global_step == 6

    spec = tiny_spec(eval={"protocol": "none"})
    trainer = Trainer(spec, tmp_path, [CancelInSecondEpoch()])
    with pytest.raises(TrainingCancelled, match="cancelled at epoch 1, step 2"):
        trainer.fit()
    kept = load_checkpoint(tmp_path / "last.pt")
    assert kept["epoch"] == 1 and kept["global_step"] == 4


def test_step_figures_and_epoch_metrics_are_reported(tiny_spec, tmp_path):
    seen = []

    class Collect(Hook):
        def on_step(self, trainer, info):
            seen.append(info)

    spec = tiny_spec(eval={"every_epochs": 0})
    trainer = Trainer(spec, tmp_path, [Collect()])
    metrics = trainer.fit()
    assert [info.global_step for info in seen] == list(range(1, 13))
    assert [info.epoch for info in seen] == [0] * 4 + [1] * 4 + [2] * 4
    assert seen[-1].total_steps == 12
    # Warm-up over one epoch from 1% of lr: the first step runs at 0.01·0.003.
    assert seen[0].lr == pytest.approx(0.003 * 0.01)
    assert seen[4].lr == pytest.approx(0.003)
    assert seen[3].figures["cloud_fraction"] == 0.0  # epoch 0: before cloud_start_epoch
    assert 0.0 < seen[-1].figures["cloud_fraction"] <= 1.0
    for name in ("rank1", "mAP", "mINP", "train_loss", "train_accuracy", "lr"):
        assert name in metrics
    assert 0.0 <= metrics["rank1"] <= 1.0


def test_the_step_counter_ends_at_n_of_n_when_pk_epochs_differ_in_length(tiny_spec, tmp_path):
    """A P×K epoch's batch count depends on its shuffle; the total the hooks see is exact
    from the last epoch on, so a progress counter ends at N/N (it once ended at 55/56)."""
    from leap_core.training.hooks import Hook

    seen: list[tuple[int, int]] = []

    class Count(Hook):
        def on_step(self, trainer, info):
            seen.append((info.global_step, info.total_steps))

    spec = tiny_spec(train={"epochs": 7, "steps_per_epoch": None}, eval={"protocol": "none"})
    trainer = Trainer(spec, tmp_path / "run", [Count()])
    batch = spec.train.sampler.batch()
    per_epoch = []
    for epoch in range(7):
        trainer.data.sampler.set_epoch(epoch)
        per_epoch.append(len(trainer.data.sampler) // batch)
    assert len(set(per_epoch)) > 1  # this seed's epochs do differ (9 and 10 batches)
    trainer.fit()
    assert trainer.global_step == sum(per_epoch)
    assert seen[-1] == (sum(per_epoch), sum(per_epoch))
    last = [total for step, total in seen if step > sum(per_epoch[:6])]
    assert last == [sum(per_epoch)] * per_epoch[6]


def test_the_long_tail_terms_come_from_the_runs_class_sizes(tiny_spec, tmp_path):
    spec = tiny_spec(
        method={
            "head": {"kind": "cosface", "margin": 0.3, "margin_profile": "ldam"},
            "leap": {"mode": "full", "cloud_start_epoch": 1},
            "loss": {"label_smoothing": 0.1, "logit_adjustment": 0.5},
        },
        eval={"protocol": "none"},
    )
    trainer = Trainer(spec, tmp_path)
    counts = torch.tensor(trainer.data.manifest.class_counts, dtype=torch.float64)
    assert counts.min() < counts.max()  # a long tail: the margins differ
    margins = trainer.head.class_margins
    assert margins is not None
    torch.testing.assert_close(margins.double(), 0.3 * (counts.min() / counts) ** 0.25)
    balance = trainer.criterion.balance
    assert balance is not None and balance.logit_bias is not None
    torch.testing.assert_close(balance.logit_bias, 0.5 * (counts / counts.sum()).log())
    assert balance.label_smoothing == 0.1
    trainer.fit()
    assert trainer.global_step == 3 * 4
    assert torch.isfinite(torch.tensor(trainer.last_metrics["train_loss"]))


def test_partial_fc_samples_each_steps_rows_and_a_resumed_run_draws_the_same(tiny_spec, tmp_path):
    # The rows a step keeps are seeded by its global step: a run resumed after its first
    # epoch (a new process, another RNG state) keeps the same rows and ends with the same
    # weights; a criterion counting its own calls would start again at 0 and not.
    def spec(rate: float):
        return tiny_spec(
            method={
                "head": {"sample_rate": rate},
                "leap": {"mode": "full", "cloud_start_epoch": 1},
            },
            train={"epochs": 2, "checkpoint_every": 1},
            eval={"protocol": "none"},
        )

    straight = Trainer(spec(0.5), tmp_path / "straight")
    sampler = straight.criterion.sampler
    assert sampler is not None and sampler.kept == straight.data.manifest.num_classes // 2
    straight.fit()

    class StopAfterFirstEpoch(Hook):
        def on_epoch_end(self, trainer, epoch, metrics):
            if epoch == 0:
                trainer.save()
                raise KeyboardInterrupt

    first = Trainer(spec(0.5), tmp_path / "interrupted", [StopAfterFirstEpoch()])
    with pytest.raises(KeyboardInterrupt):
        first.fit()
    torch.manual_seed(99)
    resumed = Trainer(spec(0.5), tmp_path / "interrupted")
    resumed.fit(resume=tmp_path / "interrupted" / "last.pt")
    for name, value in weights(straight).items():
        assert torch.equal(value, weights(resumed)[name]), name

    dense = Trainer(spec(1.0), tmp_path / "dense")
    assert dense.criterion.sampler is None
    dense.fit()
    assert not torch.equal(dense.head.weight, straight.head.weight)  # the sample mattered


class DieAfterCheckpoint(Hook):
    """The process dies right after the checkpoint written at ``global_step``."""

    def __init__(self, global_step: int) -> None:
        self.global_step = global_step

    def on_checkpoint(self, trainer, path):
        if trainer.global_step == self.global_step:
            raise KeyboardInterrupt


def test_a_checkpoint_within_an_epoch_resumes_at_its_step_with_identical_weights(
    tiny_spec, tmp_path
):
    # 4 steps an epoch; every 3 steps a checkpoint: after global steps 3, 6 and 9, within
    # epochs 0, 1 and 2. The run dies after the one at step 6 (epoch 1, its step 2).
    spec = tiny_spec(
        train={"epochs": 3, "checkpoint_every_steps": 3},
        method={"leap": {"mode": "full", "cloud_start_epoch": 1}},
        eval={"protocol": "none"},
    )
    means: dict[str, dict[int, float]] = {"straight": {}, "resumed": {}}

    class EpochLoss(Hook):
        def __init__(self, run: str) -> None:
            self.run = run

        def on_epoch_end(self, trainer, epoch, metrics):
            means[self.run][epoch] = metrics["train_loss"]

    straight = Trainer(spec, tmp_path / "straight", [EpochLoss("straight")])
    straight.fit()
    first = Trainer(spec, tmp_path / "interrupted", [DieAfterCheckpoint(6)])
    with pytest.raises(KeyboardInterrupt):
        first.fit()
    checkpoint = load_checkpoint(tmp_path / "interrupted" / "last.pt")
    assert (checkpoint["epoch"], checkpoint["global_step"]) == (1, 6)
    assert checkpoint["within_epoch"]["step"] == 2

    torch.manual_seed(1234)  # a fresh process
    resumed = Trainer(spec, tmp_path / "interrupted", [EpochLoss("resumed")])
    resumed.fit(resume=tmp_path / "interrupted" / "last.pt")
    assert resumed.global_step == straight.global_step == 12
    for name, value in weights(straight).items():
        assert torch.equal(value, weights(resumed)[name]), name
    assert torch.equal(straight.cloud.memory.angles, resumed.cloud.memory.angles)
    # The interrupted epoch's means count its steps from before the checkpoint too.
    assert means["resumed"] == {1: means["straight"][1], 2: means["straight"][2]}
    # An epoch's end writes a checkpoint anyway; it carries no position within an epoch.
    assert load_checkpoint(tmp_path / "interrupted" / "last.pt")["within_epoch"] is None


@pytest.mark.parametrize("at,epoch,step", [(5, 1, 1), (8, 1, 4)])
def test_a_preempted_run_checkpoints_at_the_step_boundary_and_resumes_to_the_same_end(
    tiny_spec, tmp_path, at, epoch, step
):
    # A SIGTERM during global step 5 (epoch 1, its first step) or 8 (its last: the epoch's
    # end, evaluation and checkpoint, is left to the resumed run).
    spec = tiny_spec(train={"epochs": 3}, eval={"protocol": "none"})
    straight = Trainer(spec, tmp_path / "straight")
    straight.fit()

    class Preempt(Hook):
        def on_step(self, trainer, info):
            if info.global_step == at:
                trainer.request_preemption()

    first = Trainer(spec, tmp_path / "preempted", [Preempt()])
    with pytest.raises(TrainingPreempted, match=f"at epoch {epoch}, step {step} of 4") as raised:
        first.fit()
    assert raised.value.checkpoint == tmp_path / "preempted" / "last.pt"
    saved = load_checkpoint(raised.value.checkpoint)
    assert (saved["epoch"], saved["global_step"], saved["within_epoch"]["step"]) == (
        epoch,
        at,
        step,
    )

    resumed = Trainer(spec, tmp_path / "preempted")
    resumed.fit(resume=raised.value.checkpoint)
    for name, value in weights(straight).items():
        assert torch.equal(value, weights(resumed)[name]), name


def test_checkpoint_minutes_checkpoints_at_the_first_step_boundary_after_the_interval(
    tiny_spec, tmp_path
):
    # An interval shorter than any step: a checkpoint after every step, the epochs' last
    # steps written once, by the epoch's own checkpoint.
    spec = tiny_spec(train={"epochs": 2, "checkpoint_minutes": 1e-9}, eval={"protocol": "none"})
    written: list[tuple[int, int | None]] = []

    class Record(Hook):
        def on_checkpoint(self, trainer, path):
            within = load_checkpoint(path)["within_epoch"]
            written.append((trainer.global_step, within and within["step"]))

    Trainer(spec, tmp_path, [Record()]).fit()
    assert written == [(1, 1), (2, 2), (3, 3), (4, None), (5, 1), (6, 2), (7, 3), (8, None)]


def test_a_checkpoint_written_within_an_epoch_resumes_only_at_its_world_size(tiny_spec, tmp_path):
    # Its step counts batches of that many ranks: another world size would skip others.
    spec = tiny_spec(train={"epochs": 2, "checkpoint_every_steps": 2}, eval={"protocol": "none"})
    first = Trainer(spec, tmp_path / "run", [DieAfterCheckpoint(2)])
    with pytest.raises(KeyboardInterrupt):
        first.fit()
    payload = load_checkpoint(tmp_path / "run" / "last.pt")
    assert payload["within_epoch"]["world_size"] == 1
    payload["within_epoch"]["world_size"] = 2  # as two ranks would have written it
    torch.save(payload, tmp_path / "two.pt")
    with pytest.raises(SpecError, match=r"within epoch 0 \(step 2\) by 2 processes"):
        Trainer(spec, tmp_path / "again").fit(resume=tmp_path / "two.pt")
