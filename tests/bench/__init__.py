"""Benchmarks: ``make bench`` (``python -m tests.bench``). They print figures and never fail on speed."""
