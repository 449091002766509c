"""A trained model as a function from image files to embeddings.

The network and the deterministic test transform are rebuilt from the spec saved in the
checkpoint, so a checkpoint is all that is needed: the same resize and normalisation as
evaluation, the BN-neck output, L2-normalised (cosine similarity is then a dot product,
as in the re-ID and face protocols).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from leap_core.config import JobSpec
from leap_core.data.datasets import load_image
from leap_core.data.transforms import test_transform
from leap_core.models.embedding import EmbeddingModel, model_for
from leap_core.training.checkpoint_store import open_checkpoint

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})


def image_files(path: str | os.PathLike[str]) -> list[Path]:
    """``path`` itself when it is an image, else every image under it, sorted."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is neither an image nor a folder")
    found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not found:
        raise ValueError(f"{path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return found


@dataclass
class Embedder:
    """The network of a checkpoint, in evaluation mode, with its test transform."""

    spec: JobSpec
    model: EmbeddingModel
    checkpoint: Path

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str]) -> Embedder:
        payload = open_checkpoint(path).common  # the backbone: no class's rows are read
        spec = JobSpec.model_validate(payload["spec"])
        model = model_for(spec, pretrained=False)
        model.load_state_dict(payload["model"])
        return cls(spec, model.eval(), Path(path).resolve())

    @property
    def image_size(self) -> tuple[int, int]:
        height, width = self.spec.dataset.image_size
        return height, width

    @torch.no_grad()
    def embed(
        self,
        files: Sequence[Path],
        batch_size: int = 64,
        progress: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """``(len(files), D)`` float32 L2-normalised embeddings, in the order of ``files``."""
        transform = test_transform(self.spec)
        chunks = []
        for start in range(0, len(files), batch_size):
            batch = files[start : start + batch_size]
            images = torch.stack([transform(load_image(str(path))) for path in batch])
            chunks.append(torch.nn.functional.normalize(self.model(images), dim=1))
            if progress is not None:
                progress(start + len(batch), len(files))
        return torch.cat(chunks).numpy().astype(np.float32)
