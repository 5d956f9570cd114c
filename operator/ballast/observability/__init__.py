"""The operator's own metrics, Kubernetes Events and decision log lines."""
