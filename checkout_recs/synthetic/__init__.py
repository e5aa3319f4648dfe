"""Synthetic inputs for benchmarks and tests: made-up catalogues, users, pairs, a tiny trained
ranker, prepared requests and decision rows, shaped as the real ones (``checkout_recs.contract``).

A leaf of the core: it builds on ``models`` and ``serving`` and nothing in the core imports it.
Benchmarks import it directly; the test fixtures (``tests/fixtures_serving*.py``) re-export it.
"""
