"""Which address a beacon counts against: the peer, or what a trusted proxy forwarded;
IPv6 by /64."""

from __future__ import annotations

import pytest

from golive import checks
from viewers.addresses import client_address, parse_networks

EDGE = parse_networks(["127.0.0.0/8", "::1", "10.1.0.0/16"])


def scope(peer: str | None, forwarded: str | None = None) -> dict:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded is not None else []
    return {"type": "http", "client": (peer, 1234) if peer else None, "headers": headers}


@pytest.mark.parametrize(("peer", "forwarded", "address"), [
    ("198.51.100.7", None, "198.51.100.7"),
    # An untrusted peer's header is the client's own words: ignored.
    ("198.51.100.7", "192.0.2.1", "198.51.100.7"),
    ("10.1.2.3", "198.51.100.7", "198.51.100.7"),
    # Hops the edge appended are read from the right; what the client wrote is not.
    ("10.1.2.3", "192.0.2.1, 198.51.100.7", "198.51.100.7"),
    ("10.1.2.3", "192.0.2.1, 198.51.100.7, 10.1.9.9", "198.51.100.7"),
    # No header (or only proxies in it): the last proxy we know of.
    ("127.0.0.1", None, "127.0.0.1"),
    ("10.1.2.3", "10.1.0.5", "10.1.0.5"),
    # Garbage stops the walk at the last hop that could be read.
    ("10.1.2.3", "198.51.100.7, not-an-address", "10.1.2.3"),
    # IPv6 counts per /64, IPv4-mapped IPv6 as IPv4.
    ("2001:db8:1:2:aaaa::1", None, "2001:db8:1:2::/64"),
    ("2001:db8:1:2:bbbb::9", None, "2001:db8:1:2::/64"),
    ("::1", "2001:db8:1:3::5", "2001:db8:1:3::/64"),
    ("::ffff:198.51.100.7", None, "198.51.100.7"),
    # No peer (a Unix socket: only a local proxy reaches it): what it forwarded.
    (None, "192.0.2.1, 198.51.100.7", "198.51.100.7"),
    (None, None, "unknown"),
])
def test_the_client_address_is_the_peer_or_what_a_trusted_proxy_forwarded(
    peer, forwarded, address,
) -> None:
    assert client_address(scope(peer, forwarded), EDGE) == address


def test_every_forwarded_for_header_is_read_in_order() -> None:
    both = {"client": ("10.1.2.3", 1), "headers": [
        (b"x-forwarded-for", b"192.0.2.1"), (b"X-Forwarded-For", b"198.51.100.7")]}
    assert client_address(both, EDGE) == "198.51.100.7"


def test_trusted_proxies_come_from_the_setting(settings) -> None:
    settings.GOLIVE_TRUSTED_PROXIES = ["192.0.2.0/24"]
    assert client_address(scope("192.0.2.10", "198.51.100.7")) == "198.51.100.7"
    assert client_address(scope("127.0.0.1", "198.51.100.7")) == "127.0.0.1"


def test_a_bad_trusted_proxy_entry_is_reported_at_start_up(settings) -> None:
    settings.GOLIVE_TRUSTED_PROXIES = ["10.0.0.0/8", "edge.internal"]
    problems = checks.check_trusted_proxies()
    assert [problem.id for problem in problems] == ["golive.E005"]
    assert "'edge.internal' is not an IP address" in problems[0].msg
    settings.GOLIVE_TRUSTED_PROXIES = ["10.0.0.0/8", "fd00::/8"]
    assert checks.check_trusted_proxies() == []
