"""The choice of router by name: the one module that knows every implementation.

A new router is one file beside `gateway_api.py` and one line here; nothing else changes.
"""

from __future__ import annotations

from ballast.traffic.gateway_api import GatewayApiRouter
from ballast.traffic.router import Router
from ballast.traffic.service import ServiceRouter

ROUTERS: dict[str, Router] = {"gateway-api": GatewayApiRouter(), "service": ServiceRouter()}


def router_for(name: str) -> Router:
    return ROUTERS[name]
