"""
Which names the hub answers to: the C{Host} header of every request (pages,
API, C{/ws}, static files) must be one of them.

This is the defence against DNS rebinding: a page on C{evil.example} whose
name is made to resolve to 127.0.0.1 can reach a hub on loopback with the
browser's own requests, and its Origin then matches its Host, so the Origin
and CSRF checks alone do not stop it; the Host it sends, C{evil.example},
does.  An IP address or C{localhost} cannot be rebound, so those are always
accepted (as is the machine's own name, which the start line prints for a
hub bound to every interface); any other name must be listed in C{[web]
hosts}, e.g. the name a TLS proxy in front forwards.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Iterable, Optional
from urllib.parse import urlsplit

__all__ = ["HostCheck", "parse_host"]

_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?)*\.?")


def parse_host(text: str) -> Optional[tuple[str, Optional[int]]]:
    """
    C{(host, port)} of a C{Host} value (C{name}, C{name:port}, C{[v6]},
    C{[v6]:port}), the host lower-cased and without brackets, the port
    C{None} if absent; C{None} if it is not one.
    """
    if not text or len(text) > 300 or any(c in text for c in "/?#@\\ \t"):
        return None
    try:
        parts = urlsplit("//" + text)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host:
        return None
    if text.startswith("["):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return None
    elif not _NAME.fullmatch(host):
        return None
    return host.rstrip("."), port


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class HostCheck:
    """
    The names of C{[web] hosts} plus those that cannot be rebound.  An
    entry without a port allows any port; with one, only that port (a Host
    without a port means 80, or 443 over TLS).  C{"*"} allows every name.
    """

    def __init__(self, configured: Iterable[str] = ()) -> None:
        self.any = False
        # gethostname needs no lookup (getfqdn may wait on DNS at start).
        self.names: set[str] = {"localhost", socket.gethostname().lower()}
        self.ports: set[tuple[str, int]] = set()
        for entry in configured or ():
            if entry == "*":
                self.any = True
                continue
            parsed = parse_host(entry)
            if parsed is None:
                raise ValueError(f"{entry!r} is not a host")
            host, port = parsed
            if port is None:
                self.names.add(host)
            else:
                self.ports.add((host, port))

    def allows(self, header: Optional[bytes], secure: bool = False) -> bool:
        """
        Whether a request with this C{Host} header is for this hub.  A
        request without one (HTTP/1.0, some scripts) is allowed: browsers,
        which rebinding needs, always send it.
        """
        if header is None or self.any:
            return True
        parsed = parse_host(header.decode("latin-1"))
        if parsed is None:
            return False
        host, port = parsed
        if host in self.names or _is_address(host) or host.endswith(".localhost"):
            return True
        return (host, port or (443 if secure else 80)) in self.ports
