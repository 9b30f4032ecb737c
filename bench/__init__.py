"""Benchmarks that print their figures (``make bench``); heavy measurements live here, not in the tests."""

import resource
from pathlib import Path


def peak_rss_gb() -> float:
    """This process's peak resident memory so far, in GB (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def reset_peak_rss() -> bool:
    """Start :func:`peak_rss_gb` again from the current resident memory, so one step's peak can be told apart from
    an earlier step's (writing 5 to ``/proc/self/clear_refs`` resets the kernel's high-water mark, Linux 4.0+).

    Returns False where that is not possible; the peak then stays the process's since its start.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True
