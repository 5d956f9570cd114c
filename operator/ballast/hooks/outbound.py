"""Outbound safety at connect time: a webhook's host is resolved once, every address checked, and the
connection goes to the address that was checked (no second lookup a rebinding DNS server could answer).

Admission already refuses literal loopback, link-local and unspecified addresses in webhook URLs; a host
name can still resolve to one, so the check runs on every call. An operator-wide allowlist of host names
(`ballast run --webhook-allow-host`) lets a named host reach such a range, for a receiver on the node.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from ballast.api.network import FORBIDDEN_CIDRS

Resolver = Callable[[str, int], Awaitable[list[str]]]
_FORBIDDEN = tuple(ipaddress.ip_network(c) for c in FORBIDDEN_CIDRS)


class OutboundRefused(Exception):
    """No connection is made: the URL's scheme or an address its host resolves to is refused."""


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def refused_range(address: str) -> str | None:
    """Why a connection to `address` is refused, or None when it may be made."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local (cloud metadata)"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_multicast:
        return "multicast"
    if any(ip.version == net.version and ip in net for net in _FORBIDDEN):
        return "cloud metadata"
    return None


@dataclass(frozen=True)
class OutboundPolicy:
    resolver: Resolver = system_resolver
    allowed_hosts: frozenset[str] = frozenset()

    @classmethod
    def allowing(cls, hosts: Iterable[str], resolver: Resolver = system_resolver) -> OutboundPolicy:
        return cls(resolver, frozenset(h.strip().lower().rstrip(".") for h in hosts if h.strip()))

    async def checked_address(self, scheme: str, host: str, port: int) -> str:
        """The one address to connect to; raises OutboundRefused (before any connection) when it is refused."""
        if scheme not in ("http", "https"):
            raise OutboundRefused(f"scheme {scheme!r} is refused: only http and https")
        try:
            addresses = await self.resolver(host, port)
        except OSError as error:
            raise OutboundRefused(f"host {host} does not resolve: {error}") from error
        if not addresses:
            raise OutboundRefused(f"host {host} resolves to no address")
        if host.lower().rstrip(".") not in self.allowed_hosts:
            # Every address is checked, not just the first: a resolver's order must not decide what is reached.
            for address in addresses:
                why = refused_range(address)
                if why is not None:
                    raise OutboundRefused(
                        f"host {host} resolves to {address}, a {why} address; refused unless the operator allows "
                        f"the host name (--webhook-allow-host)"
                    )
        return addresses[0]
