"""Argument checks for the evaluation package.

Evaluation inputs arrive as numpy arrays or tensors from many places (a trainer, a CLI, a
service). A wrong shape or a NaN deep inside a vectorised metric would otherwise surface as
an unrelated index error or, worse, a plausible-looking number. Every check here raises a
``ValueError`` that names the argument and the offending value.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def as_numpy(name: str, value: Any) -> np.ndarray:
    """Return ``value`` as a numpy array (tensors are detached and moved to the CPU)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as error:  # pragma: no cover - numpy accepts almost all
        raise ValueError(f"{name} cannot be read as an array: {error}") from error


def int_vector(name: str, value: Any, length: int | None = None) -> np.ndarray:
    """A 1-D integer array, optionally of a given length."""
    array = as_numpy(name, value)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {array.dtype}")
    if length is not None and array.shape[0] != length:
        raise ValueError(f"{name} must have length {length}, got {array.shape[0]}")
    return array.astype(np.int64, copy=False)


def bool_vector(name: str, value: Any, length: int | None = None) -> np.ndarray:
    """A 1-D boolean array (0/1 integers are accepted), optionally of a given length."""
    array = as_numpy(name, value)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    if array.dtype != np.bool_:
        if not np.issubdtype(array.dtype, np.integer) or not np.isin(array, (0, 1)).all():
            raise ValueError(f"{name} must be boolean or 0/1, got dtype {array.dtype}")
        array = array.astype(bool)
    if length is not None and array.shape[0] != length:
        raise ValueError(f"{name} must have length {length}, got {array.shape[0]}")
    return array


def float_vector(name: str, value: Any, length: int | None = None) -> np.ndarray:
    """A 1-D finite floating-point array, optionally of a given length."""
    array = as_numpy(name, value)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{name} must hold real numbers, got dtype {array.dtype}")
    if length is not None and array.shape[0] != length:
        raise ValueError(f"{name} must have length {length}, got {array.shape[0]}")
    array = array.astype(np.float64, copy=False)
    bad = ~np.isfinite(array)
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name} must be finite, got {float(array[index])!r} at index {index}")
    return array


def feature_matrix(
    name: str, value: Any, dim: int | None = None, allow_empty: bool = False
) -> torch.Tensor:
    """A 2-D finite floating-point feature matrix as a CPU tensor (float32 or float64)."""
    tensor = value if isinstance(value, torch.Tensor) else torch.from_numpy(as_numpy(name, value))
    tensor = tensor.detach().cpu()
    if tensor.dim() != 2:
        raise ValueError(f"{name} must have shape (n, dim), got {tuple(tensor.shape)}")
    if not tensor.is_floating_point():
        raise ValueError(f"{name} must be floating point, got dtype {tensor.dtype}")
    if tensor.dtype not in (torch.float32, torch.float64):
        tensor = tensor.float()
    if dim is not None and tensor.shape[1] != dim:
        raise ValueError(f"{name} must have {dim} columns, got {tensor.shape[1]}")
    if tensor.shape[0] == 0 and not allow_empty:
        raise ValueError(f"{name} must hold at least one row, got shape {tuple(tensor.shape)}")
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} must be finite, found NaN or inf")
    return tensor


def positive_int(name: str, value: Any) -> int:
    """An int >= 1 (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)
