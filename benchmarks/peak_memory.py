"""Process memory readings for the benchmarks (Linux ``/proc``): resident set size and its peak."""

from __future__ import annotations

import os
from typing import Callable


def vm_kib(field: str) -> int:
    """A ``/proc/self/status`` field in KiB, e.g. ``"VmRSS:"`` (current) or ``"VmHWM:"`` (peak)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak() -> None:
    """Set the peak resident set size (VmHWM) to the current one."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def peak_rise_mib(fn: Callable[[], None]) -> float:
    """Rise of the peak resident set size (MiB) over one call of ``fn``; NaN where /proc has no clear_refs."""
    if not os.path.exists("/proc/self/clear_refs"):
        return float("nan")
    base = vm_kib("VmRSS:")
    reset_peak()
    fn()
    return (vm_kib("VmHWM:") - base) / 1024
