"""An embedded image set on disk, and nearest-neighbour search in it.

A gallery file is a NumPy ``.npz``: ``embeddings`` (N×D float32, L2-normalised), ``files``
(the image paths, relative to ``root``), ``root`` and ``checkpoint`` (the model that made
them, so a search embeds its queries with the same model). Scores are cosine
similarities, higher is closer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Gallery:
    embeddings: np.ndarray
    files: list[str]
    root: Path
    checkpoint: Path

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the gallery (``.npz`` is added when missing); returns the file written."""
        target = Path(path)
        if target.suffix != ".npz":
            target = target.with_name(target.name + ".npz")
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial.npz")
        np.savez(
            partial,
            embeddings=self.embeddings.astype(np.float32),
            files=np.array(self.files),
            root=np.array(str(self.root)),
            checkpoint=np.array(str(self.checkpoint)),
        )
        partial.replace(target)  # never a half-written gallery under the real name
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Gallery:
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls(
                    data["embeddings"],
                    [str(name) for name in data["files"]],
                    Path(str(data["root"])),
                    Path(str(data["checkpoint"])),
                )
        except (OSError, KeyError, ValueError) as error:
            raise ValueError(f"{path} is not a gallery written by leap embed: {error}") from None


@dataclass(frozen=True)
class Match:
    file: str
    score: float


def search(gallery: Gallery, queries: np.ndarray, k: int) -> list[list[Match]]:
    """For each query embedding, the ``k`` gallery images with the highest cosine
    similarity, best first (ties keep gallery order)."""
    if queries.shape[1] != gallery.embeddings.shape[1]:
        raise ValueError(
            f"queries have {queries.shape[1]} dimensions, the gallery "
            f"{gallery.embeddings.shape[1]}: embed them with the gallery's model"
        )
    scores = queries @ gallery.embeddings.T
    k = min(k, len(gallery.files))
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return [
        [Match(gallery.files[j], float(row[j])) for j in ranked]
        for row, ranked in zip(scores, order, strict=True)
    ]
