"""Who sent a player beacon: the client address that per-address limits are keyed on.

The peer of the connection is the client, unless it is a trusted proxy (the edge cache, a
load balancer: `GOLIVE_TRUSTED_PROXIES`), in which case the client is the right-most
address of `X-Forwarded-For` that is not itself a trusted proxy. Anything left of that
was written by the client and proves nothing.

IPv6 addresses are grouped by their /64: one subscriber gets a whole /64 (often more), so
a bot can pick a fresh address per request inside it for free.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, MutableMapping
from functools import lru_cache
from typing import Any

from django.conf import settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# Beyond this many hops the header is garbage or an attack: stop reading it.
MAX_HOPS = 16


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """``["10.0.0.0/8", "::1"]`` → networks. Raises ValueError naming a bad entry."""
    networks = []
    for entry in entries:
        entry = entry.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or network") from None
    return tuple(networks)


@lru_cache(maxsize=4)
def _trusted(entries: tuple[str, ...]) -> tuple[Network, ...]:
    return parse_networks(entries)


def trusted_proxies() -> tuple[Network, ...]:
    return _trusted(tuple(settings.GOLIVE_TRUSTED_PROXIES))


def _parse(text: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_trusted(address: IPAddress, networks: tuple[Network, ...]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


def group(address: IPAddress) -> str:
    """The key a limit counts against: the IPv4 address, or the IPv6 /64."""
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((int(address) >> 64 << 64, 64)))
    return str(address)


def client_address(scope: MutableMapping[str, Any], networks: tuple[Network, ...] | None = None,
                   ) -> str:
    """The client's address group for an ASGI HTTP scope ("unknown" when neither the
    connection nor a trusted proxy says)."""
    networks = trusted_proxies() if networks is None else networks
    client = scope.get("client")
    peer = _parse(str(client[0])) if client else None
    # No peer address: a Unix socket, which only a local process (a proxy) can reach.
    if peer is not None and not _is_trusted(peer, networks):
        return group(peer)
    forwarded = b",".join(
        value for name, value in scope.get("headers", []) if name.lower() == b"x-forwarded-for"
    ).decode("latin-1")
    hops = [hop for hop in forwarded.split(",") if hop.strip()][-MAX_HOPS:]
    found = peer
    for hop in reversed(hops):
        address = _parse(hop)
        if address is None:
            break  # garbage: the last hop we could read is as far as we can trust
        found = address
        if not _is_trusted(address, networks):
            break
    return "unknown" if found is None else group(found)
