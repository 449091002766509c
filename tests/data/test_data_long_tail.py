"""Long-tail cuts (spec §7) and their manifests, on a hand-made count profile."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from leap_core.data import (
    DatasetError,
    LongTailManifest,
    Record,
    exponential_long_tail,
    face_long_tail,
    full_training_set,
    reid_long_tail,
)
from leap_core.data.records import listing_hash

# pid: image count. Ranking by (count desc, pid): 10 (8), 3 (6), 7 (6), 1 (4), 5 (2), 9 (1).
COUNTS = {10: 8, 3: 6, 7: 6, 1: 4, 5: 2, 9: 1}


def make_records(counts: dict[int, int] = COUNTS) -> list[Record]:
    return [
        Record(f"/d/{pid:04d}_{i:02d}.jpg", pid, i % 3)
        for pid, n in counts.items()
        for i in range(n)
    ]


def check_consistent(manifest: LongTailManifest, records: list[Record]) -> None:
    source = set(records)
    assert set(manifest.records) <= source
    assert len(set(manifest.records)) == len(manifest.records)
    for record, label in zip(manifest.records, manifest.labels, strict=True):
        assert manifest.pids[label] == record.pid
    assert list(manifest.pids) == sorted(manifest.pids)
    assert sum(manifest.class_counts) == len(manifest.records)


def test_reid_cut_exact_membership() -> None:
    records = make_records()
    manifest = reid_long_tail(records, head=2, tail_samples=3, seed=0)
    check_consistent(manifest, records)
    assert manifest.pids == (1, 3, 5, 7, 9, 10)
    assert manifest.class_counts == (3, 6, 2, 3, 1, 8)
    assert manifest.head == (False, True, False, False, False, True)  # 3 beats 7 on the tie
    assert manifest.head_labels == [1, 5] and manifest.tail_labels == [0, 2, 3, 4]
    assert manifest.stats == {
        "input_ids": 6,
        "input_images": 27,
        "head_ids": 2,
        "tail_ids": 4,
        "head_images": 14,
        "tail_images": 9,
        "dropped_ids": 0,
        "dropped_images": 4,
        "short_tail_ids": 2,
    }
    assert manifest.profile == {
        "kind": "reid",
        "head": 2,
        "tail_samples": 3,
        "head_selection": "count",
    }
    assert manifest.source_hash == listing_hash(records)
    # head identities keep every image
    assert [r for r in manifest.records if r.pid == 10] == [r for r in records if r.pid == 10]


def test_face_cut_exact_membership() -> None:
    records = make_records()
    manifest = face_long_tail(records, head=1, tail_classes=3, tail_samples=2, seed=5)
    check_consistent(manifest, records)
    assert manifest.pids == (1, 3, 7, 10)
    assert manifest.class_counts == (2, 2, 2, 8)
    assert manifest.head == (False, False, False, True)
    assert manifest.stats["dropped_ids"] == 2
    assert manifest.stats["dropped_images"] == 13
    assert manifest.stats["short_tail_ids"] == 0
    default = face_long_tail(records, head=1, tail_classes=5)
    assert default.class_counts == (4, 5, 2, 5, 1, 8)  # 5 images per tail class by default
    assert default.stats["short_tail_ids"] == 3


def test_exponential_profile() -> None:
    records = make_records()
    manifest = exponential_long_tail(records, imbalance_factor=8, head_threshold=3)
    check_consistent(manifest, records)
    # rank r keeps floor(8 * 8^(-r/5)) = 8, 5, 3, 2, 1, 1 (capped by what the class has)
    by_pid = dict(zip(manifest.pids, manifest.class_counts, strict=True))
    assert by_pid == {10: 8, 3: 5, 7: 3, 1: 2, 5: 1, 9: 1}
    assert dict(zip(manifest.pids, manifest.head, strict=True)) == {
        1: False,
        3: True,
        5: False,
        7: False,
        9: False,
        10: True,
    }
    capped = exponential_long_tail(records, imbalance_factor=1, max_images=2, head_threshold=1)
    assert capped.class_counts == (2, 2, 2, 2, 1, 2)
    with pytest.raises(DatasetError, match="head_threshold: every class keeps more than 0"):
        exponential_long_tail(records, imbalance_factor=1, head_threshold=0)
    with pytest.raises(DatasetError, match="imbalance_factor must be a finite number >= 1"):
        exponential_long_tail(records, imbalance_factor=0.5)


def test_full_training_set() -> None:
    manifest = full_training_set(make_records())
    assert manifest.class_counts == (4, 6, 2, 6, 1, 8)
    assert all(manifest.head)
    assert manifest.stats["dropped_images"] == 0


def test_sampling_is_seeded() -> None:
    records = make_records({pid: 20 for pid in range(1, 31)})
    cuts = [reid_long_tail(records, head=5, tail_samples=4, seed=s) for s in (0, 0, 1)]
    assert cuts[0] == cuts[1]
    assert cuts[0].records != cuts[2].records
    assert cuts[0].head == cuts[2].head  # all counts tie: heads are the 5 smallest pids
    assert cuts[0].head_labels == [0, 1, 2, 3, 4]


def test_random_head_selection() -> None:
    records = make_records({pid: 20 for pid in range(1, 41)})
    first = reid_long_tail(records, head=6, tail_samples=2, seed=7, head_selection="random")
    again = reid_long_tail(records, head=6, tail_samples=2, seed=7, head_selection="random")
    assert first.to_json() == again.to_json()
    assert sum(first.head) == 6
    heads = {
        frozenset(np.array(m.pids)[list(m.head)].tolist())
        for m in (
            reid_long_tail(records, head=6, seed=s, head_selection="random") for s in range(5)
        )
    }
    assert len(heads) == 5
    face = face_long_tail(records, head=4, tail_classes=10, seed=7, head_selection="random")
    assert face.num_classes == 14 and sum(face.head) == 4


def test_input_order_does_not_matter() -> None:
    records = make_records()
    shuffled = [records[i] for i in np.random.default_rng(0).permutation(len(records))]
    a = reid_long_tail(records, head=2, tail_samples=3, seed=3)
    b = reid_long_tail(shuffled, head=2, tail_samples=3, seed=3)
    assert a.to_json() == b.to_json()


def test_manifest_json_is_byte_identical_and_round_trips(tmp_path: Path) -> None:
    records = make_records()
    first = tmp_path / "a.json"
    second = tmp_path / "b.json"
    reid_long_tail(records, head=2, tail_samples=3, seed=11).save(first)
    reid_long_tail(records, head=2, tail_samples=3, seed=11).save(second)
    assert first.read_bytes() == second.read_bytes()
    loaded = LongTailManifest.load(first)
    assert loaded == reid_long_tail(records, head=2, tail_samples=3, seed=11)
    data = json.loads(first.read_text())
    assert data["classes"][1] == {"label": 1, "pid": 3, "count": 6, "head": True}
    assert data["seed"] == 11 and len(data["records"]) == 23


def test_manifest_load_errors(tmp_path: Path) -> None:
    manifest = reid_long_tail(make_records(), head=2, tail_samples=3)
    path = tmp_path / "m.json"
    path.write_text("{not json")
    with pytest.raises(DatasetError, match=r"m\.json: not valid JSON"):
        LongTailManifest.load(path)
    data = manifest.to_dict()
    data["classes"][0]["count"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=r"class_counts .* do not match records"):
        LongTailManifest.load(path)
    data = manifest.to_dict()
    data["format"] = "other"
    with pytest.raises(DatasetError, match="format must be 'leap-long-tail-manifest'"):
        LongTailManifest.from_dict(data)
    data = manifest.to_dict()
    del data["seed"]
    with pytest.raises(DatasetError, match="malformed manifest"):
        LongTailManifest.from_dict(data)
    with pytest.raises(DatasetError, match="manifest file not found"):
        LongTailManifest.load(tmp_path / "missing.json")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda r: reid_long_tail(r, head=6),
            r"head must be below the number of training "
            r"identities \(6\) so the tail is not empty, got 6",
        ),
        (lambda r: reid_long_tail(r, head=9), r"got 9"),
        (
            lambda r: reid_long_tail(r, head=2, tail_samples=0),
            r"tail_samples must be an integer "
            r">= 1, got 0",
        ),
        (lambda r: reid_long_tail(r, head=-1), r"head must be an integer >= 0, got -1"),
        (
            lambda r: face_long_tail(r, head=2, tail_classes=0),
            r"tail_classes must be an integer "
            r">= 1, got 0",
        ),
        (
            lambda r: face_long_tail(r, head=2, tail_classes=5),
            r"tail_classes: head \(2\) \+ "
            r"tail_classes \(5\) exceeds the 6",
        ),
        (lambda r: reid_long_tail(r, head=1, head_selection="size"), r"head_selection must be"),
        (lambda r: reid_long_tail([], head=1), r"records: the training listing is empty"),
        (lambda r: reid_long_tail(r, head=1, seed=-2), r"seed must be an integer >= 0, got -2"),
    ],
)
def test_bad_cut_parameters(call, message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        call(make_records())
