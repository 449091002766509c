"""Each name → implementation family is one table, and the spec accepts exactly its names:
a new head, backbone, schedule or dataset format is an entry in its table (the heads' and
backbones' tables name where their torch modules live, so the API validates a spec without
torch)."""

from __future__ import annotations

import math

import pytest
from torch import nn

from leap_core import families
from leap_core.config import DatasetSpec, JobSpec, SpecError, parse_spec
from leap_core.data.readers import FORMATS, READERS
from leap_core.heads import HEADS, ArcFaceHead, CosFaceHead, NormFaceHead
from leap_core.models.backbones import build_backbone
from leap_core.schedules import SCHEDULES, learning_rate


def _schema_enum(model: type, field: str) -> list[str]:
    return model.model_json_schema()["properties"][field]["enum"]


def test_the_spec_accepts_exactly_the_names_in_each_table():
    definitions = JobSpec.model_json_schema()["$defs"]
    assert definitions["HeadSpec"]["properties"]["kind"]["enum"] == list(families.HEADS)
    assert definitions["ModelSpec"]["properties"]["backbone"]["enum"] == list(families.BACKBONES)
    assert _schema_enum(DatasetSpec, "format") == ["synthetic", *FORMATS]
    schedule = JobSpec.model_json_schema()["$defs"]["ScheduleSpec"]["properties"]["kind"]
    assert schedule["enum"] == list(SCHEDULES)
    assert {"normface": NormFaceHead, "cosface": CosFaceHead, "arcface": ArcFaceHead} == HEADS
    for name in families.BACKBONES:  # every backbone name builds a trunk
        assert isinstance(build_backbone(name), nn.Module)


def test_a_name_outside_a_table_is_refused_naming_the_field():
    with pytest.raises(SpecError, match=r"train\.schedule\.kind"):
        parse_spec({"train": {"schedule": {"kind": "linear"}}})
    with pytest.raises(SpecError, match=r"dataset\.format"):
        parse_spec({"dataset": {"format": "cifar"}})
    with pytest.raises(ValueError, match=r"model\.backbone must be one of resnet18, resnet50, "):
        build_backbone("vgg16")


def test_the_schedule_table_gives_each_rate():
    """Epoch 5 of 10 at base rate 0.1, each schedule's rate computed by hand."""

    def rate(**schedule) -> float:
        spec = parse_spec({"train": {"epochs": 10, "optimizer": {"lr": 0.1}, "schedule": schedule}})
        return learning_rate(spec.train, 5.0)

    assert rate(kind="constant") == pytest.approx(0.1)
    assert rate(kind="cosine", warmup_epochs=0) == pytest.approx(0.05)
    assert rate(kind="triangular", cycle_epochs=10) == pytest.approx(1.0)  # the 10× peak
    assert rate(kind="warmup_multistep", warmup_epochs=0, milestones=[4, 8]) == pytest.approx(0.01)
    assert rate(kind="warmup_multistep", warmup_epochs=10, warmup_factor=0.5) == pytest.approx(
        0.1 * (0.5 + 0.5 * 0.5)
    )
    assert not math.isnan(rate())


def test_omniglot_alone_reads_without_a_root():
    assert [name for name, layout in READERS.items() if not layout.needs_root] == ["omniglot"]
    assert DatasetSpec(format="omniglot").root is None
    with pytest.raises(ValueError, match="root is required for format 'folders'"):
        DatasetSpec(format="folders")
