"""Performance measurements of the harness itself (benchmarks, not tests): ``make perf``."""
