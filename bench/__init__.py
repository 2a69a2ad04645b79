"""Speed benchmarks; run each as python -m bench.NAME."""
