"""Operator-wide settings, how kopf logs in, and the liveness probe."""

from __future__ import annotations

from typing import Any

import kopf
from kubernetes.config import ConfigException

from ballast import __version__
from ballast.kube.client import in_cluster_configuration, service_account_dir


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Calls to the API server never hang the operator; watches reconnect well before proxies cut them.
    settings.networking.request_timeout = 30
    settings.watching.server_timeout = 270
    settings.watching.client_timeout = 300


@kopf.on.probe(id="version")
def version(**_: Any) -> str:
    return __version__


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In a pod, the service account from the same files Ballast's own client reads (`service_account_dir()`), so
    kopf's watches and Ballast's writes run as one identity wherever the volume is; elsewhere the kubeconfig, as
    kopf's default login would. kopf logs in again on a 401, reading the rotated token."""
    try:
        configuration = in_cluster_configuration()
    except ConfigException:
        return kopf.login_via_client(**kwargs)
    folder = service_account_dir()
    namespace = folder / "namespace"
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        token=(folder / "token").read_text().strip(),
        default_namespace=namespace.read_text().strip() if namespace.exists() else None,
    )
