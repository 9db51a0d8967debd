"""Benchmarks for `make bench`: each module's `main()` prints one JSON object per figure.

They measure the bot against a baseline taken in the same run on the same machine (timings
here are noisy), touch only loopback, and are bounded in requests and time. They are not
tests: no thresholds are asserted; each figure says its target and whether it was met.
"""
