"""A trained network exported for serving, as fast-reid and insightface ship it.

Both formats take a float batch ``(N, 3, H, W)`` at the spec's image size, already
transformed as for evaluation (resize, normalisation), with any N, and return the
network's embeddings ``(N, D)`` before L2 normalisation (``leap embed`` normalises).
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable
from pathlib import Path

import torch

from leap_core.inference.embedder import Embedder


def _torchscript(embedder: Embedder, example: torch.Tensor, out: Path) -> None:
    traced = torch.jit.trace(embedder.model, example)
    traced.save(str(out))


def _onnx(embedder: Embedder, example: torch.Tensor, out: Path) -> None:
    try:
        import onnx  # noqa: F401  (the exporter needs both)
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise RuntimeError(
            f"--format onnx needs the onnx and onnxscript packages ({error.name} is missing)"
        ) from None
    # The exporter reports each of its passes on stdout; the caller shows its own progress.
    with contextlib.redirect_stdout(io.StringIO()):
        torch.onnx.export(
            embedder.model,
            (example,),
            str(out),
            input_names=["images"],
            output_names=["embeddings"],
            dynamic_shapes={"images": {0: torch.export.Dim("batch")}},
            dynamo=True,
        )


#: ``--format`` → exporter.
EXPORTERS: dict[str, Callable[[Embedder, torch.Tensor, Path], None]] = {
    "onnx": _onnx,
    "torchscript": _torchscript,
}
#: Default file endings; a TorchScript file never takes a checkpoint's own name (last.pt).
SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}


def export(checkpoint: str | os.PathLike[str], format: str, out: str | os.PathLike[str]) -> Path:
    """Write the checkpoint's network in ``format`` to ``out``; returns the path."""
    if format not in EXPORTERS:
        raise ValueError(f"format must be one of {', '.join(EXPORTERS)}, got {format!r}")
    embedder = Embedder.from_checkpoint(checkpoint)
    height, width = embedder.image_size
    example = torch.zeros(2, 3, height, width)
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    EXPORTERS[format](embedder, example, target)
    return target
