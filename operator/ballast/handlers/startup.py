"""Operator-wide settings and the liveness probe."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from ballast import GROUP, __version__


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Events at INFO and above: every automatic decision is an Event a person can read.
    settings.posting.level = logging.INFO
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    # Calls to the API server never hang the operator; watches reconnect well before proxies cut them.
    settings.networking.request_timeout = 30
    settings.watching.server_timeout = 270
    settings.watching.client_timeout = 300


@kopf.on.probe(id="version")
def version(**_: Any) -> str:
    return __version__
