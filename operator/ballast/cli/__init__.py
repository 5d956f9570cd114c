"""Command-line entry points: `ballast` and the kubectl plugin."""
