"""Studies beyond the required figures; run each as python -m experiments.NAME."""
