"""Ballast: a Kubernetes operator that keeps AI model deployments steady."""

__version__ = "0.1.0"
GROUP = "ballast.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
