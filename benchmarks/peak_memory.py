"""A process's resident-set high-water mark, resettable, for benchmarks run in a child.

Torch allocations are invisible to ``tracemalloc``, so memory is read from the kernel:
``/proc/self/status`` gives the current resident set (``VmRSS``) and its peak (``VmHWM``),
and writing ``5`` to ``/proc/self/clear_refs`` resets the peak to the current set, so what
a call adds can be measured after its inputs are built.
"""

from __future__ import annotations


def status_kb(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (Linux), or None elsewhere."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak() -> bool:
    """Reset the resident high-water mark (Linux ``clear_refs``); False where refused."""
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
    except OSError:
        return False
    return status_kb("VmHWM") is not None
