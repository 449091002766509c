"""Sharded checkpoints on real gloo ranks: every rank writes its own classes once, a
checkpoint of one world size resumes at another (2 → 1, 1 → 2, 2 → 3) with every class's
state where it was, and a save cut short is never taken for a checkpoint."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from leap_core.config import parse_spec
from leap_core.training.checkpoint import CheckpointWriteError
from leap_core.training.checkpoint_shards import MANIFEST, ShardedCheckpoint, rank_file
from leap_core.training.checkpoint_store import consolidate, latest_checkpoint, open_checkpoint
from leap_core.training.trainer import Trainer
from tests.ranks import run_ranks

pytestmark = pytest.mark.process

CLASSES = 24
ROW_NAMES = ("head", "exp_avg", "exp_avg_sq", "centres", "seen", "written")


def class_state(trainer: Trainer) -> dict[str, Any]:
    """What a rank holds of its classes, read from its live modules (each angle memory from
    the cloud's own slot layout), and the backbone."""
    cloud = trainer.cloud
    memory = cloud.memory
    slots = zip(memory.offset.tolist(), memory.capacity.tolist(), strict=True)
    return {
        "start": trainer.shard.start,
        "head": trainer.head.weight.detach().clone(),
        **{  # Adam's moments of the head rows
            name: trainer.optimizer.state[trainer.head.weight][name].clone()
            for name in ("exp_avg", "exp_avg_sq")
        },
        "centres": cloud.centres.clone(),
        "seen": cloud.seen.clone(),
        "written": memory.written.clone(),
        "mean": memory.mean.clone(),
        "variance": memory.variance.clone(),
        "angles": [memory.angles[first : first + size].clone() for first, size in slots],
        "model": {name: value.clone() for name, value in trainer.model.state_dict().items()},
        "epoch": trainer.epoch,
    }


def by_class(states: list[dict[str, Any]]) -> dict[str, Any]:
    """The ranks' states joined in class order."""
    states = sorted(states, key=lambda state: state["start"])
    joined: dict[str, Any] = {
        name: torch.cat([state[name] for state in states])
        for name in (*ROW_NAMES, "mean", "variance")
    }
    joined["angles"] = [angles for state in states for angles in state["angles"]]
    return joined


def assert_same_classes(restored: dict[str, Any], saved: dict[str, Any]) -> None:
    for name in ROW_NAMES:
        assert torch.equal(restored[name], saved[name]), name
    for name in ("mean", "variance"):  # NaN where a class has fewer than two angles
        assert torch.equal(restored[name].isnan(), saved[name].isnan()), name
        known = ~saved[name].isnan()
        assert torch.equal(restored[name][known], saved[name][known]), name
    assert len(restored["angles"]) == CLASSES
    for index, (ours, theirs) in enumerate(zip(restored["angles"], saved["angles"], strict=True)):
        assert torch.equal(ours, theirs), f"angle memory of class {index}"


def train(rank: int, world_size: int, job: dict, folder: str) -> dict[str, Any]:
    trainer = Trainer(parse_spec(job), Path(folder))
    trainer.fit()
    return class_state(trainer)


def resume(rank: int, world_size: int, job: dict, folder: str, source: str) -> dict[str, Any]:
    """Restore ``source`` at this world size, then train to the job's last epoch."""
    trainer = Trainer(parse_spec(job), Path(folder))
    trainer.restore(open_checkpoint(source))
    restored = class_state(trainer)
    metrics = trainer.fit()
    finished = class_state(trainer)
    return {"restored": restored, "finished": finished, "loss": metrics["train_loss"]}


@pytest.fixture(scope="module")
def two_rank_run(tiny_root, tmp_path_factory) -> tuple[dict, Path, list[dict[str, Any]]]:
    """Two epochs on two ranks (Adam, the feature cloud on from epoch 1)."""
    from tests.tiny import tiny_job

    job = tiny_job(train={"epochs": 2, "checkpoint_every": 1}, eval={"protocol": "none"})
    job["dataset"] = {**job["dataset"], "root": str(tiny_root)}
    folder = tmp_path_factory.mktemp("two-ranks")
    return job, folder, run_ranks(2, train, job, str(folder))


def test_every_rank_writes_its_own_classes_once_and_nothing_else_holds_them(two_rank_run):
    _, folder, states = two_rank_run
    generations = sorted((folder / "last.shards").iterdir())
    assert [path.name for path in generations] == ["000002"]  # epoch 1's was removed
    assert not (folder / "last.pt").exists()
    generation = generations[0]
    manifest = json.loads((generation / MANIFEST).read_text())
    assert manifest["world_size"] == 2 and manifest["bounds"] == [[0, 12], [12, 24]]
    assert set(manifest["files"]) == {"common.pt", rank_file(0, 2), rank_file(1, 2)}
    for rank, state in enumerate(states):
        saved = torch.load(generation / rank_file(rank, 2), weights_only=True)
        assert (saved["start"], saved["stop"]) == (12 * rank, 12 * rank + 12)
        # Each file holds its rank's rows, not one copy of a tensor every rank named alike.
        assert torch.equal(saved["rows"]["head"], state["head"])
        assert torch.equal(saved["rows"]["optimizer"]["exp_avg"], state["exp_avg"])
        assert torch.equal(saved["rows"]["optimizer"]["exp_avg_sq"], state["exp_avg_sq"])
        assert torch.equal(saved["rows"]["cloud"]["centres"], state["centres"])
        assert torch.equal(saved["rows"]["cloud"]["memory.angles"], torch.cat(state["angles"]))
    assert not torch.equal(states[0]["head"], states[1]["head"])
    common = torch.load(generation / "common.pt", weights_only=True)
    assert "head" not in common and common["cloud"].keys() == {"_extra_state"}
    # The head's moments are in the rank files; Adam's step count, the same on every rank,
    # is common.
    assert common["optimizer"]["state"][common["head_parameter"]].keys() == {"step"}
    for name, size in manifest["files"].items():
        assert (generation / name).stat().st_size == size


def test_a_two_rank_checkpoint_resumes_in_one_process_and_on_three_ranks(two_rank_run, tmp_path):
    job, folder, states = two_rank_run
    saved = by_class(states)
    longer = {**job, "train": {**job["train"], "epochs": 3}}

    three = run_ranks(3, resume, longer, str(tmp_path / "three"), str(folder / "last.shards"))
    assert [result["restored"]["head"].shape[0] for result in three] == [8, 8, 8]
    assert_same_classes(by_class([result["restored"] for result in three]), saved)
    for result in three:
        assert result["restored"]["epoch"] == 2 and result["finished"]["epoch"] == 3
        for name, value in states[0]["model"].items():
            assert torch.equal(result["restored"]["model"][name], value), name
        assert torch.isfinite(torch.tensor(result["loss"]))
    written = ShardedCheckpoint(tmp_path / "three" / "last.shards")
    assert written.world_size == 3 and written.common["epoch"] == 3
    assert torch.equal(
        written.rows(0, CLASSES, None).head,
        by_class([result["finished"] for result in three])["head"],
    )

    single = resume(0, 1, longer, str(tmp_path / "one"), str(folder))
    assert single["restored"]["head"].shape[0] == CLASSES
    assert_same_classes(single["restored"], saved)
    assert single["finished"]["epoch"] == 3 and (tmp_path / "one" / "last.pt").is_file()


def test_a_one_process_checkpoint_resumes_on_two_ranks(tiny_dict, tmp_path):
    job = tiny_dict(train={"epochs": 2, "checkpoint_every": 1}, eval={"protocol": "none"})
    saved = train(0, 1, job, str(tmp_path / "one"))
    longer = {**job, "train": {**job["train"], "epochs": 3}}
    two = run_ranks(2, resume, longer, str(tmp_path / "one"), str(tmp_path / "one" / "last.pt"))
    assert_same_classes(by_class([result["restored"] for result in two]), by_class([saved]))
    assert all(result["finished"]["epoch"] == 3 for result in two)
    # The two ranks went on in the same folder: their sharded checkpoint replaced last.pt.
    assert not (tmp_path / "one" / "last.pt").exists()
    assert open_checkpoint(tmp_path / "one").world_size == 2


def test_a_consolidated_file_resumes_exactly_like_the_shards(two_rank_run, tmp_path):
    job, folder, states = two_rank_run
    single = consolidate(open_checkpoint(folder / "last.shards"), tmp_path / "whole.pt")
    payload = torch.load(single, weights_only=True)
    assert payload["distributed"]["world_size"] == 2
    assert torch.equal(payload["head"]["weight"], by_class(states)["head"])
    longer = {**job, "train": {**job["train"], "epochs": 3}}
    from_shards = run_ranks(2, resume, longer, str(tmp_path / "a"), str(folder / "last.shards"))
    from_file = run_ranks(2, resume, longer, str(tmp_path / "b"), str(single))
    for ours, theirs in zip(from_shards, from_file, strict=True):
        for name in ("head", "exp_avg", "centres"):
            assert torch.equal(ours["finished"][name], theirs["finished"][name]), name


FAILURES = {
    "full disk": (OSError(errno.ENOSPC, "No space left on device"), "No space left on device"),
    "serialising": (RuntimeError("storage copy failed"), "RuntimeError: storage copy failed"),
}


def save_fails_on_rank_one(rank: int, world_size: int, job: dict, folder: str, failure: str) -> str:
    """Rank 1's write of its file of the epoch-1 save fails."""
    from leap_core.training import checkpoint_shards

    written = checkpoint_shards.write_atomically

    def failing_at_the_second_save(path: Path, value: Any) -> Path:
        if rank == 1 and path.parent.name == "000002":
            raise FAILURES[failure][0]
        return written(path, value)

    checkpoint_shards.write_atomically = failing_at_the_second_save  # type: ignore[assignment]
    trainer = Trainer(parse_spec(job), Path(folder))
    with pytest.raises(CheckpointWriteError) as raised:
        trainer.fit()
    return str(raised.value)


@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_a_save_that_fails_on_one_rank_fails_on_every_rank_and_keeps_the_last_one(
    tiny_dict, tmp_path, failure
):
    job = tiny_dict(train={"epochs": 2, "checkpoint_every": 1}, eval={"protocol": "none"})
    messages = run_ranks(2, save_fails_on_rank_one, job, str(tmp_path), failure)
    for message in messages:
        assert message.endswith(
            f"checkpoint {tmp_path / 'last.shards' / '000002'} not complete: "
            f"rank 1: {FAILURES[failure][1]}"
        )
    assert [path.name for path in (tmp_path / "last.shards").iterdir()] == ["000001"]
    assert open_checkpoint(tmp_path).common["epoch"] == 1


def train_in_own_folder(rank: int, world_size: int, job: dict, folder: str) -> str:
    """Each rank given a run folder of its own, as machines without a shared disk."""
    trainer = Trainer(parse_spec(job), Path(folder) / f"machine{rank}")
    with pytest.raises(CheckpointWriteError) as raised:
        trainer.fit()
    return str(raised.value)


def test_ranks_that_do_not_share_the_run_folder_are_told_so(tiny_dict, tmp_path):
    job = tiny_dict(train={"epochs": 2, "checkpoint_every": 1}, eval={"protocol": "none"})
    messages = run_ranks(2, train_in_own_folder, job, str(tmp_path))
    generation = tmp_path / "machine0" / "last.shards" / "000001"
    for message in messages:
        assert message == (
            f"rank 0 does not see {rank_file(1, 2)} in {generation} as the ranks wrote them: "
            f"the run folder must be one folder shared by every rank's machine"
        )
    assert not generation.exists()


def restore_only(rank: int, world_size: int, job: dict, source: str) -> dict[str, Any]:
    trainer = Trainer(parse_spec(job), Path(source).parent / f"restored{world_size}")
    trainer.restore(open_checkpoint(source))
    return class_state(trainer)


def test_an_uneven_split_takes_every_classs_rows_from_the_ranks_that_wrote_them(two_rank_run):
    job, folder, states = two_rank_run
    five = run_ranks(5, restore_only, job, str(folder / "last.shards"))
    # 24 classes on five ranks: 5, 5, 5, 5, 4, across the two files' boundary at class 12.
    assert [state["head"].shape[0] for state in five] == [5, 5, 5, 5, 4]
    assert_same_classes(by_class(five), by_class(states))


def test_a_generation_written_halfway_is_never_taken_for_a_checkpoint(two_rank_run, tmp_path):
    _, folder, _ = two_rank_run
    run = tmp_path / "run"
    shutil.copytree(folder / "last.shards", run / "last.shards")
    complete = run / "last.shards" / "000002"
    # A newer save cut short before its manifest ...
    unfinished = run / "last.shards" / "000003"
    shutil.copytree(complete, unfinished)
    (unfinished / MANIFEST).unlink()
    assert latest_checkpoint(run) == complete
    # ... and one whose rank file was cut short after the manifest named its size.
    truncated = run / "last.shards" / "000004"
    shutil.copytree(complete, truncated)
    with open(truncated / rank_file(1, 2), "r+b") as file:
        file.truncate(1000)
    assert latest_checkpoint(run) == complete
    assert open_checkpoint(run / "last.shards").path == complete
    with pytest.raises(FileNotFoundError, match="holds no complete sharded checkpoint"):
        ShardedCheckpoint(truncated)
    shutil.rmtree(complete)
    with pytest.raises(FileNotFoundError, match="holds no complete checkpoint"):
        open_checkpoint(run)


def tracked(rank: int, world_size: int, job: dict, folder: str, uri: str) -> str | None:
    from leap_core.tracking.mlflow_hook import MLflowHook

    hooks = [MLflowHook(uri)] if rank == 0 else []  # rank 0 alone reports
    trainer = Trainer(parse_spec(job), Path(folder), hooks)
    trainer.fit()
    return trainer.mlflow_run_id


def test_the_mlflow_run_of_a_sharded_run_holds_its_checkpoint_folder(tiny_dict, tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    job = tiny_dict(train={"epochs": 2}, eval={"protocol": "none"})
    run_id, _ = run_ranks(2, tracked, job, str(tmp_path / "run"), uri)
    client = MlflowClient(uri)
    logged = {
        artifact.path: artifact.file_size
        for artifact in client.list_artifacts(run_id, "checkpoints/last.shards")
    }
    generation = tmp_path / "run" / "last.shards" / "000002"  # the last one, epoch 2's
    assert logged == {
        f"checkpoints/last.shards/{path.name}": path.stat().st_size for path in generation.iterdir()
    }
    assert set(logged) == {
        f"checkpoints/last.shards/{name}"
        for name in ("common.pt", MANIFEST, rank_file(0, 2), rank_file(1, 2))
    }
