"""Benchmarks inside the library: ``strategies`` (the brute-force tile kernel compiled four
ways), ``measure`` (``pj.bench``: compile time against run time) and ``report`` (its tables
and JSON)."""
