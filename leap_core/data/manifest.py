"""The long-tailed training set as a file: records, labels, head/tail flags, counts, provenance.

A manifest is what a training job actually trains on. It fixes the contiguous label order
``0..C-1`` (ascending pid) that the classifier rows, the class counts ``K_i`` and the feature
cloud all index by, and it records the seed and a hash of the input listing so a result can be
traced to its exact data. Serialisation is canonical (sorted keys, fixed separators, records in
label then path order), so two builds from the same input and seed are byte-identical.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leap_core.data.records import DatasetError, Record

MANIFEST_FORMAT = "leap-long-tail-manifest"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class LongTailManifest:
    """A long-tailed training set; label ``i`` is pid ``pids[i]`` with ``class_counts[i]`` images.

    ``records[j]`` has training label ``labels[j]``; ``head[i]`` says whether class ``i`` is a
    head class of the cut. ``profile`` holds the cut's parameters, ``stats`` its counts
    (including identities left out and tail identities that had fewer images than asked).
    """

    profile: dict[str, Any]
    seed: int
    source_hash: str
    pids: tuple[int, ...]
    class_counts: tuple[int, ...]
    head: tuple[bool, ...]
    records: tuple[Record, ...]
    labels: tuple[int, ...]
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        """Number of training classes C."""
        return len(self.pids)

    @property
    def head_labels(self) -> list[int]:
        """Labels of the head classes."""
        return [i for i, is_head in enumerate(self.head) if is_head]

    @property
    def tail_labels(self) -> list[int]:
        """Labels of the tail classes."""
        return [i for i, is_head in enumerate(self.head) if not is_head]

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form (see ``to_json``)."""
        return {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "profile": self.profile,
            "seed": self.seed,
            "source_hash": self.source_hash,
            "classes": [
                {"label": i, "pid": pid, "count": count, "head": is_head}
                for i, (pid, count, is_head) in enumerate(
                    zip(self.pids, self.class_counts, self.head, strict=True)
                )
            ],
            "records": [
                [r.path, r.pid, r.camid, label]
                for r, label in zip(self.records, self.labels, strict=True)
            ],
            "stats": self.stats,
        }

    def to_json(self) -> str:
        """Canonical JSON text: one record per line, sorted keys, trailing newline."""
        data = self.to_dict()
        records = data.pop("records")
        head = json.dumps(data, sort_keys=True, separators=(",", ":"))
        lines = ",\n".join(json.dumps(r, separators=(",", ":")) for r in records)
        return f'{head[:-1]},"records":[\n{lines}\n]}}\n'

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write ``to_json()`` to ``path``."""
        Path(path).write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "manifest") -> LongTailManifest:
        """Rebuild and validate a manifest from ``to_dict()`` output."""
        try:
            if data.get("format") != MANIFEST_FORMAT:
                raise DatasetError(
                    f"{where}: format must be {MANIFEST_FORMAT!r}, got {data.get('format')!r}"
                )
            if data.get("version") != MANIFEST_VERSION:
                raise DatasetError(
                    f"{where}: version must be {MANIFEST_VERSION}, got {data.get('version')!r}"
                )
            classes = data["classes"]
            records = tuple(
                Record(str(p), int(pid), int(cam)) for p, pid, cam, _ in data["records"]
            )
            labels = tuple(int(row[3]) for row in data["records"])
            manifest = cls(
                profile=dict(data["profile"]),
                seed=int(data["seed"]),
                source_hash=str(data["source_hash"]),
                pids=tuple(int(c["pid"]) for c in classes),
                class_counts=tuple(int(c["count"]) for c in classes),
                head=tuple(bool(c["head"]) for c in classes),
                records=records,
                labels=labels,
                stats={str(k): int(v) for k, v in data.get("stats", {}).items()},
            )
        except (KeyError, TypeError, ValueError) as error:
            if isinstance(error, DatasetError):
                raise
            raise DatasetError(f"{where}: malformed manifest ({error!r})") from None
        manifest.validate(where)
        return manifest

    def validate(self, where: str = "manifest") -> None:
        """Check labels, pids and counts agree; raise ``DatasetError`` naming the field."""
        if list(range(self.num_classes)) != sorted(set(self.labels)):
            raise DatasetError(f"{where}: labels must cover 0..{self.num_classes - 1} exactly")
        counts = [0] * self.num_classes
        for record, label in zip(self.records, self.labels, strict=True):
            if record.pid != self.pids[label]:
                raise DatasetError(
                    f"{where}: record {record.path} has pid {record.pid} but label {label} "
                    f"is pid {self.pids[label]}"
                )
            counts[label] += 1
        if tuple(counts) != self.class_counts:
            raise DatasetError(f"{where}: class_counts {self.class_counts} do not match records")

    @classmethod
    def from_json(cls, text: str, where: str = "manifest") -> LongTailManifest:
        """Parse ``to_json()`` output."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise DatasetError(
                f"{where}: not valid JSON ({error.msg} at line {error.lineno})"
            ) from None
        if not isinstance(data, dict):
            raise DatasetError(f"{where}: expected a JSON object")
        return cls.from_dict(data, where)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LongTailManifest:
        """Read a manifest written by ``save``."""
        source = Path(path)
        if not source.is_file():
            raise DatasetError(f"{source}: manifest file not found")
        return cls.from_json(source.read_text(encoding="utf-8"), str(source))
