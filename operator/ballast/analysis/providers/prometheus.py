"""Prometheus through prometheus-api-client, called off the event loop with a timeout."""

from __future__ import annotations

import asyncio
import math
from typing import Any

from prometheus_api_client import PrometheusConnect

from ballast.analysis.providers.base import ProviderError, Sample


def parse_result(result: Any) -> list[Sample]:
    """Samples from the `data.result` of an instant query (vector or scalar)."""
    if isinstance(result, list) and len(result) == 2 and not isinstance(result[0], dict):
        return [Sample({}, _number(result[1]))]  # a scalar: [timestamp, "value"]
    return [Sample(dict(item.get("metric", {})), _number(item["value"][1])) for item in result or []]


def _number(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


class PrometheusProvider:
    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url
        self.timeout = timeout
        self.client = PrometheusConnect(url=url, disable_ssl=not url.startswith("https"))

    async def query(self, promql: str) -> list[Sample]:
        try:
            result = await asyncio.wait_for(asyncio.to_thread(self.client.custom_query, promql), self.timeout)
        except TimeoutError as error:
            raise ProviderError(f"Prometheus at {self.url} did not answer within {self.timeout:.0f}s") from error
        except Exception as error:  # the client raises requests' and its own errors
            raise ProviderError(f"Prometheus at {self.url}: {error}") from error
        return parse_result(result)

    async def online(self) -> bool:
        try:
            await self.query("vector(1)")
        except ProviderError:
            return False
        return True
