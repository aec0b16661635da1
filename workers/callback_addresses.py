"""Which addresses a callback may reach by default: public ones, IPv4 hidden inside IPv6 included.

Python's `is_global` calls several IPv6 forms global that carry an IPv4 address a network may route
to it: NAT64 (`64:ff9b::a9fe:a9fe` is 169.254.169.254 through a NAT64 gateway), 6to4 (`2002::/16`),
IPv4-compatible (`::a.b.c.d`) and IPv4-translated (`::ffff:0:a.b.c.d`) addresses; and deprecated
site-local `fec0::/10`. The well-known NAT64 prefix is judged by the IPv4 address it carries (an
IPv6-only network reaches public IPv4 receivers through it); the other forms are deprecated or local
and refused outright, as are the local-use NAT64 prefix and the IETF block 192.0.0.0/24 (some of whose
addresses Python calls global). BAYOU_CALLBACK_ALLOWED_NETWORKS admits any of them explicitly.
"""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")
REFUSED_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in (
        "192.0.0.0/24",  # IETF protocol assignments (DS-Lite, NAT64 discovery, ...)
        "::/96",  # IPv4-compatible (deprecated)
        "::ffff:0:0:0/96",  # IPv4-translated (SIIT)
        "64:ff9b:1::/48",  # local-use NAT64
        "2002::/16",  # 6to4
        "2001::/32",  # Teredo
        "fec0::/10",  # site-local (deprecated)
    )
)


def is_public(ip: IPAddress) -> bool:
    """True for an address a callback may reach without being allowed explicitly."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return is_public(ip.ipv4_mapped)
        if ip in NAT64_WELL_KNOWN:
            return is_public(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if any(ip in network for network in REFUSED_NETWORKS if network.version == ip.version):
        return False
    return ip.is_global and not ip.is_multicast
