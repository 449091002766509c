"""Cosine distances between query and gallery features, computed in row chunks.

Re-ID and face evaluation compare L2-normalised embeddings (spec §8: cosine similarity for
retrieval). A Market-1501 distance matrix is 3,368 × 15,913 and a MegaFace score matrix would
be probes × 10^6, so the work is done a block of query rows at a time: the temporaries of
one block are all that is alive besides the result (or, with :func:`iter_cosine_distance`,
besides the caller's current block).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from leap_core.evaluation._validation import feature_matrix, positive_int

#: Default number of query rows per block: 256 rows × 16k gallery × 4 bytes = 16 MB.
DEFAULT_CHUNK_ROWS = 256


def normalize(features: Any, name: str = "features") -> torch.Tensor:
    """L2-normalised float rows; a zero row stays zero instead of becoming NaN."""
    tensor = feature_matrix(name, features, allow_empty=True)
    return F.normalize(tensor, dim=1, eps=1e-12)


def iter_cosine_distance(
    query: Any, gallery: Any, chunk_size: int = DEFAULT_CHUNK_ROWS
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(first_row, block)`` with ``block = 1 - q̂ ĝᵀ`` for consecutive query rows.

    The distance is in ``[0, 2]``; the block has the dtype of the features (float32 unless
    either input is float64). Callers that only reduce each block (ranking, maxima) never
    hold more than one block at a time.
    """
    chunk_size = positive_int("chunk_size", chunk_size)
    q = normalize(query, "query")
    g = normalize(gallery, "gallery")
    if q.shape[1] != g.shape[1]:
        raise ValueError(
            f"query and gallery must have the same feature dimension, got {q.shape[1]} "
            f"and {g.shape[1]}"
        )
    dtype = torch.float64 if torch.float64 in (q.dtype, g.dtype) else torch.float32
    q, g = q.to(dtype), g.to(dtype)
    g_t = g.t().contiguous()
    for start in range(0, q.shape[0], chunk_size):
        block = q[start : start + chunk_size] @ g_t
        yield start, block.neg_().add_(1.0)


def cosine_distance(query: Any, gallery: Any, chunk_size: int = DEFAULT_CHUNK_ROWS) -> np.ndarray:
    """The full ``(num_query, num_gallery)`` cosine distance matrix as a numpy array.

    Identical, block by block, to :func:`iter_cosine_distance`; use that one when the matrix
    itself need not be kept.
    """
    q = feature_matrix("query", query, allow_empty=True)
    g = feature_matrix("gallery", gallery, allow_empty=True)
    dtype = np.float64 if torch.float64 in (q.dtype, g.dtype) else np.float32
    out = np.empty((q.shape[0], g.shape[0]), dtype=dtype)
    for start, block in iter_cosine_distance(q, g, chunk_size):
        out[start : start + block.shape[0]] = block.numpy()
    return out
