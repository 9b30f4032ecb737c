"""Benchmarks that print their figures (``make bench``); heavy measurements live here, not in the tests."""

import resource


def peak_rss_gb() -> float:
    """This process's peak resident memory so far, in GB (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
