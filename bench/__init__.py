"""Benchmarks that print their figures (``make bench``); heavy measurements live here, not in the tests."""
