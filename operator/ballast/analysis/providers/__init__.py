"""Metrics providers: one file per backend behind the MetricsProvider protocol."""
