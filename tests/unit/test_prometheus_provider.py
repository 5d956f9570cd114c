"""The Prometheus provider against loopback servers: answers, refusals, and servers that never answer."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from ballast.analysis.providers.base import ProviderError, Sample
from ballast.analysis.providers.prometheus import PrometheusProvider

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, asyncio.Event], Awaitable[None]]


@contextlib.asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[str]:
    """A loopback server for the test's lifetime; its handlers are told to stop when the test ends."""
    stop = asyncio.Event()
    handlers: set[asyncio.Task[None]] = set()

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await handler(reader, writer, stop)
        finally:
            writer.close()

    server = await asyncio.start_server(connected, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        server.close()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stop: asyncio.Event) -> None:
    """Accepts, reads the request, never answers."""
    await reader.read(65536)
    await stop.wait()


async def _trickling(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stop: asyncio.Event) -> None:
    """Answers one byte at a time, never finishing: no single read waits long, the whole never ends."""
    await reader.read(65536)
    writer.write(b"HTTP/1.1 200 OK\r\n")
    while not stop.is_set():
        writer.write(b"X")
        await writer.drain()
        await asyncio.sleep(0.05)


def answering(status: int, body: dict[str, object]) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: asyncio.Event) -> None:
        await reader.readuntil(b"\r\n\r\n")
        payload = json.dumps(body).encode()
        head = f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        writer.write(head.encode() + payload)
        await writer.drain()

    return handler


@pytest.mark.parametrize("handler", [_silent, _trickling], ids=["silent", "trickling"])
async def test_a_prometheus_that_never_answers_is_an_error_within_the_timeout_and_holds_no_thread(
    handler: Handler,
) -> None:
    async with serving(handler) as url:
        provider = PrometheusProvider(url, timeout=0.5)
        threads = threading.active_count()
        started = time.monotonic()
        for _ in range(3):
            with pytest.raises(ProviderError, match="did not answer within"):
                await provider.query("up")
        elapsed = time.monotonic() - started
        # Nothing is left waiting on the socket: no thread, however long the server stays silent.
        assert threading.active_count() == threads
        assert elapsed < 3 * 0.5 + 1.0
        await provider.close()


async def test_an_answer_is_parsed_into_samples() -> None:
    body = {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"revision": "c"}, "value": [1764000000.0, "0.25"]}]}}  # fmt: skip
    async with serving(answering(200, body)) as url:
        provider = PrometheusProvider(url, timeout=2)
        try:
            assert await provider.query("sum by (revision) (x)") == [Sample({"revision": "c"}, 0.25)]
        finally:
            await provider.close()


async def test_a_refused_query_names_prometheus_own_reason() -> None:
    body = {"status": "error", "errorType": "bad_data", "error": 'parse error: unexpected "]"'}
    async with serving(answering(400, body)) as url:
        provider = PrometheusProvider(url, timeout=2)
        try:
            with pytest.raises(ProviderError, match='bad_data: parse error: unexpected "]"'):
                await provider.query("x[")
        finally:
            await provider.close()


async def test_a_closed_port_is_an_error_not_a_hang() -> None:
    async with serving(_silent) as url:
        closed = url
    provider = PrometheusProvider(closed, timeout=2)
    try:
        with pytest.raises(ProviderError, match=f"Prometheus at {closed}"):
            await provider.query("up")
    finally:
        await provider.close()
