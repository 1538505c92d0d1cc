"""
Where a Redis is, as the configuration writes it (C{[queue] url}): read
here for the queue, the cluster and the configuration's check alike,
without importing a Redis client.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


def parse_redis_url(url: str) -> dict[str, Any]:
    """
    C{redis://[:password@]host[:port][/db]} or C{unix:///path/to/socket[?db=N]}
    as connection arguments.  Raises C{ValueError} saying what is wrong.
    """
    parts = urlsplit(url)
    password = unquote(parts.password) if parts.password else None
    if parts.scheme == "redis":
        if not parts.hostname:
            raise ValueError("a redis:// URL needs a host")
        path = parts.path.strip("/")
        if path and not path.isdigit():
            raise ValueError(f"the database must be a number, not {path!r}")
        return {"host": parts.hostname, "port": parts.port or 6379, "db": int(path or 0), "password": password}
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError("a unix:// URL needs the socket's path")
        db = parse_qs(parts.query).get("db", ["0"])[0]
        if not db.isdigit():
            raise ValueError(f"db must be a number, not {db!r}")
        return {"path": parts.path, "db": int(db), "password": password}
    raise ValueError(f"must start with redis:// or unix://, not {url!r}")


__all__ = ["parse_redis_url"]
