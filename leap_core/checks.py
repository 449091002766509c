"""Argument checks shared by the public API.

Every check raises ``ValueError`` naming the parameter and the value received, so a caller
sees at once which argument is wrong instead of a shape error deep inside an operation.
"""

from __future__ import annotations

import math

import torch


def positive_int(name: str, value: object) -> int:
    """Return ``value`` as an int, refusing bools, non-integers and values below 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def non_negative_int(name: str, value: object) -> int:
    """Return ``value`` as an int, refusing bools, non-integers and values below 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return value


def finite_float(
    name: str,
    value: object,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    strict_minimum: bool = False,
) -> float:
    """Return ``value`` as a finite float inside the given bounds."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if minimum is not None:
        too_small = number <= minimum if strict_minimum else number < minimum
        if too_small:
            relation = ">" if strict_minimum else ">="
            raise ValueError(f"{name} must be {relation} {minimum}, got {value!r}")
    if maximum is not None and number > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value!r}")
    return number


def features_tensor(name: str, tensor: object, dim: int) -> torch.Tensor:
    """Check a ``(B, dim)`` floating-point feature batch."""
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if not tensor.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {tensor.dtype}")
    if tensor.dim() != 2 or tensor.shape[1] != dim:
        raise ValueError(f"{name} must have shape (batch, {dim}), got {tuple(tensor.shape)}")
    if tensor.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one sample, got shape {tuple(tensor.shape)}")
    return tensor


def labels_tensor(name: str, labels: object, batch: int, num_classes: int) -> torch.Tensor:
    """Check a ``(batch,)`` integer label vector with every entry in ``[0, num_classes)``."""
    if not isinstance(labels, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(labels).__name__}")
    if labels.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise ValueError(f"{name} must be an integer tensor, got dtype {labels.dtype}")
    if labels.dim() != 1 or labels.shape[0] != batch:
        raise ValueError(f"{name} must have shape ({batch},), got {tuple(labels.shape)}")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        bad = low if low < 0 else high
        raise ValueError(f"{name} must lie in [0, {num_classes}), got label {bad}")
    return labels.long()
