"""Where a webhook may go. A URL's host is resolved first and every
address it resolves to is checked: loopback, private, link-local (cloud
metadata services live there), shared (CGNAT), multicast, reserved and
unspecified addresses are refused, unless `LOOM_WEBHOOK_ALLOW` names the
host or a network holding the address. The caller then connects to the
checked address itself, so a second lookup cannot lead elsewhere."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Refused(Exception):
    """The address may not be reached."""


@dataclass(frozen=True)
class Allow:
    hosts: frozenset[str]
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

    @classmethod
    def parse(cls, text: str) -> "Allow":
        hosts, networks = set(), []
        for item in (part.strip() for part in (text or "").split(",")):
            if not item:
                continue
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                hosts.add(item.lower().rstrip("."))
        return cls(frozenset(hosts), tuple(networks))

    def admits(self, host: str, address: IPAddress) -> bool:
        return host.lower().rstrip(".") in self.hosts or any(address in net for net in self.networks
                                                                if net.version == address.version)


def public(address: IPAddress) -> bool:
    """Whether an address is on the public internet (an IPv4 address
    wrapped in IPv6 — mapped, 6to4 — is judged as itself)."""
    for wrapped in (getattr(address, "ipv4_mapped", None), getattr(address, "sixtofour", None)):
        if wrapped is not None and not public(wrapped):
            return False
    if getattr(address, "is_site_local", False):
        return False
    return address.is_global and not (address.is_multicast or address.is_unspecified or address.is_reserved)


def resolve(host: str, port: int, allow: Allow) -> IPAddress:
    """The address to connect to for `host`; Refused when any address it
    resolves to may not be reached."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise Refused(f"{host} cannot be resolved: {exc}") from None
    addresses = []
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if not public(address) and not allow.admits(host, address):
            raise Refused(f"{host} resolves to {address}, which webhooks may not reach "
                          "(a loopback, private, link-local or otherwise internal address; see LOOM_WEBHOOK_ALLOW)")
        addresses.append(address)
    if not addresses:
        raise Refused(f"{host} resolves to no address")
    return addresses[0]
