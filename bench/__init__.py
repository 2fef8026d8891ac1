"""The project's benchmarks, run as modules from the repository root:
`python -m bench.quality`, `python -m bench.composition`, … (docs/benchmarks.md)."""
