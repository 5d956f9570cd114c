"""kube-proxy's part on the local stack: each Service ClusterIP:port forwards to its ready pods.

The API server refuses loopback addresses in EndpointSlices, and kwok pods live in 127.1.0.0/16,
so the local stack keeps Services in a loopback range too (127.96.0.0/16) and serves them here:
a TCP listener per ClusterIP and port, choosing a ready pod that the Service selects per
connection, round robin. Traefik reaches backends through these ClusterIPs (`nativeLB`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("ballast.serviceproxy")


@dataclass(frozen=True)
class Endpoint:
    address: str
    port: int


@dataclass(frozen=True)
class ServicePort:
    namespace: str
    name: str
    cluster_ip: str
    port: int
    target_port: int | str
    selector: tuple[tuple[str, str], ...]


# (namespace, selector, target port) -> the ready endpoints, resolved by the caller's pod view.
EndpointLookup = Callable[[str, dict[str, str], int | str], list[Endpoint]]


class ServiceProxy:
    """Runs in its own event loop thread; `sync()` is called from any thread with the desired ports."""

    def __init__(self, lookup: EndpointLookup) -> None:
        self.lookup = lookup
        self.loop = asyncio.new_event_loop()
        self.servers: dict[ServicePort, asyncio.Server] = {}
        self.turns = itertools.count()

    def run_forever(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def sync(self, desired: set[ServicePort]) -> None:
        asyncio.run_coroutine_threadsafe(self._sync(desired), self.loop).result(timeout=10)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)

    async def _sync(self, desired: set[ServicePort]) -> None:
        for gone in set(self.servers) - desired:
            server = self.servers.pop(gone)
            server.close()
            log.info("stopped proxy for %s/%s on %s:%s", gone.namespace, gone.name, gone.cluster_ip, gone.port)
        for new in desired - set(self.servers):
            try:
                self.servers[new] = await asyncio.start_server(self._handler(new), new.cluster_ip, new.port)
            except OSError as error:
                log.warning(
                    "cannot listen on %s:%s for %s/%s: %s", new.cluster_ip, new.port, new.namespace, new.name, error
                )
                continue
            log.info("proxying %s/%s on %s:%s", new.namespace, new.name, new.cluster_ip, new.port)

    def _handler(
        self, port: ServicePort
    ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Coroutine[Any, Any, None]]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._forward(port, reader, writer)

        return handle

    async def _forward(self, port: ServicePort, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        endpoints = self.lookup(port.namespace, dict(port.selector), port.target_port)
        if not endpoints:
            writer.close()  # no ready pod: refuse, as kube-proxy rejects
            return
        first = next(self.turns)
        # Round robin; an endpoint that refuses is skipped for the next one, as a load balancer would.
        for offset in range(len(endpoints)):
            endpoint = endpoints[(first + offset) % len(endpoints)]
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(endpoint.address, endpoint.port)
            except OSError:
                continue
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
            return
        writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()
