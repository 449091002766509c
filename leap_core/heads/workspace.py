"""Reusable scratch tensors for the training step's large temporaries.

A face-scale head's step makes several ``(batch, classes)`` temporaries: at 100,000 classes
each is 100 MB. Allocating them afresh every step costs more than the arithmetic done in
them, because the allocator hands such blocks back to the operating system and every page of
a new one faults on first touch (an out-of-place multiplication at that size is about ten
times slower than the same multiplication in place). A :class:`Workspace` keeps one tensor
per role between steps and lends it out again.

Lending is explicit so that a buffer can never be written while something still reads it:
:meth:`Workspace.take` removes the buffer from the pool, and only :meth:`Workspace.give_back`
returns it. A buffer that is never given back (a step whose backward pass never ran) is
simply garbage-collected, and the next step allocates a new one: the pool remembers what it
lent only by weak reference.
"""

from __future__ import annotations

import weakref

import torch


class Workspace:
    """A pool holding at most one free tensor per role name."""

    def __init__(self) -> None:
        self._free: dict[str, torch.Tensor] = {}
        self._lent: dict[int, tuple[str, weakref.ref[torch.Tensor]]] = {}

    def take(
        self, role: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        """An uninitialised tensor of ``shape``: the pooled one for ``role`` when it is big
        enough and of the same kind (a view of its first elements), otherwise a new one."""
        numel = 1
        for size in shape:
            numel *= size
        pooled = self._free.pop(role, None)
        if (
            pooled is None
            or pooled.dtype != dtype
            or pooled.device != device
            or pooled.numel() < numel
        ):
            pooled = torch.empty(numel, dtype=dtype, device=device)
        self._forget_dead()
        self._lent[pooled.data_ptr()] = (role, weakref.ref(pooled))
        return pooled[:numel].view(shape)

    def give_back(self, *tensors: torch.Tensor) -> None:
        """Return buffers lent by :meth:`take`; other tensors are ignored."""
        for tensor in tensors:
            lent = self._lent.pop(tensor.data_ptr(), None)
            pooled = None if lent is None else lent[1]()
            if lent is not None and pooled is not None:
                self._free[lent[0]] = pooled

    def _forget_dead(self) -> None:
        dead = [key for key, (_, ref) in self._lent.items() if ref() is None]
        for key in dead:
            del self._lent[key]

    def nbytes(self) -> int:
        """Bytes held by the free buffers."""
        return sum(t.numel() * t.element_size() for t in self._free.values())
