"""A trained model as a function from image files to embeddings.

The network and the deterministic test transform are rebuilt from the spec saved in the
checkpoint (or logged with a registered model's run), so a checkpoint, or a ``models:/``
URI, is all that is needed: the same resize and normalisation as
evaluation, the BN-neck output, L2-normalised (cosine similarity is then a dot product,
as in the re-ID and face protocols).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from leap_core.config import JobSpec
from leap_core.data.datasets import load_image
from leap_core.data.transforms import test_transform
from leap_core.models.embedding import EmbeddingModel, model_for
from leap_core.training.checkpoint_store import open_checkpoint

#: How a registered model is named instead of a checkpoint.
MODELS_SCHEME = "models:/"
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
        """A checkpoint of either form (or its run folder), or a registered model's
        ``models:/NAME@ALIAS`` / ``models:/NAME/VERSION`` URI."""
        if str(path).startswith(MODELS_SCHEME):
            return cls.from_registry(str(path))
        payload = open_checkpoint(path).common  # the backbone: no class's rows are read
        spec = JobSpec.model_validate(payload["spec"])
        model = model_for(spec, pretrained=False)
        model.load_state_dict(payload["model"])
        return cls(spec, model.eval(), Path(path).resolve())

    @classmethod
    def from_registry(cls, uri: str, tracking_uri: str | None = None) -> Embedder:
        """A version of a registered model (``tracking.register_model``) in the tracking
        store (``MLFLOW_TRACKING_URI``, else the local one): the network rebuilt from the
        spec its run logged, with the registered weights. The alias is resolved once, so
        spec and weights are of the same version even if the alias moves meanwhile."""
        import mlflow.pytorch
        from mlflow.exceptions import MlflowException

        from leap_core.tracking import store

        tracking_uri = tracking_uri or store.default_tracking_uri()
        client = store.open_client(tracking_uri)
        try:
            version = _resolve_version(client, uri)
            with tempfile.TemporaryDirectory() as folder:
                saved = client.download_artifacts(version.run_id, "spec.json", folder)
                spec = JobSpec.model_validate(json.loads(Path(saved).read_text()))
            mlflow.set_tracking_uri(tracking_uri)
            loaded = mlflow.pytorch.load_model(f"{MODELS_SCHEME}{version.name}/{version.version}")
        except MlflowException as error:
            raise ValueError(f"{uri}: {error.message} (tracking store {tracking_uri})") from None
        model = model_for(spec, pretrained=False)
        model.load_state_dict(loaded.state_dict())
        return cls(spec, model.eval(), Path(uri))

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


def _resolve_version(client: Any, uri: str) -> Any:
    """The model version ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or
    ``models:/NAME/latest`` names."""
    reference = uri[len(MODELS_SCHEME) :]
    if "@" in reference:
        name, alias = reference.rsplit("@", 1)
        return client.get_model_version_by_alias(name, alias)
    name, _, number = reference.rpartition("/")
    if not name:
        raise ValueError(f"{uri}: give models:/NAME@ALIAS or models:/NAME/VERSION")
    if number.lower() == "latest":
        versions = client.search_model_versions(f"name = '{name}'")
        if not versions:
            raise ValueError(f"{uri}: the registered model {name!r} has no version")
        return max(versions, key=lambda version: int(version.version))
    return client.get_model_version(name, number)
