"""Prometheus's HTTP API over httpx, on the event loop: every call is bounded, and no thread ever waits on it.

A Prometheus that accepts connections and never answers (or answers a byte at a time) costs a
check at most `timeout` seconds and nothing else: the request is abandoned with its connection,
where a blocking client in a worker thread would keep the thread until the socket closes.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import httpx

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
        # Each phase (connecting, waiting for a pooled connection, writing, every read) is bounded by httpx;
        # the deadline in `query` bounds them all together.
        self.http = httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(timeout))

    async def query(self, promql: str) -> list[Sample]:
        try:
            async with asyncio.timeout(self.timeout):
                response = await self.http.post("/api/v1/query", data={"query": promql})
        except (TimeoutError, httpx.TimeoutException) as error:
            raise ProviderError(f"Prometheus at {self.url} did not answer within {self.timeout:g}s") from error
        except httpx.HTTPError as error:
            raise ProviderError(f"Prometheus at {self.url}: {error}") from error
        return parse_result(self._data(response).get("result"))

    def _data(self, response: httpx.Response) -> dict[str, Any]:
        """The `data` of an answer; Prometheus's own error type and message otherwise."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ProviderError(f"Prometheus at {self.url} answered HTTP {response.status_code} without a JSON body")
        if body.get("status") != "success":
            kind, message = body.get("errorType", f"HTTP {response.status_code}"), body.get("error", "")
            raise ProviderError(f"Prometheus at {self.url} refused the query: {kind}: {message}")
        data: dict[str, Any] = body.get("data") or {}
        return data

    async def online(self) -> bool:
        try:
            await self.query("vector(1)")
        except ProviderError:
            return False
        return True

    async def close(self) -> None:
        await self.http.aclose()
