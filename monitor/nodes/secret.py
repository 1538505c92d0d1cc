"""
The secret the hub and its analysis nodes share.

It is read from a file or from C{MONITOR_NODE_SECRET}, never from the
configuration file, which is often checked in or shown around.  It never
crosses the wire either: each side proves it knows the secret by an HMAC of
a fresh nonce chosen by the other (see L{monitor.nodes.wire}).
"""

from __future__ import annotations

import os
import stat
from typing import Mapping, Optional

from twisted.logger import Logger

__all__ = ["MIN_SECRET_LENGTH", "SECRET_ENV", "SecretError", "read_secret", "secret_problem"]

#: The environment variable that may hold the secret.
SECRET_ENV = "MONITOR_NODE_SECRET"

#: Shorter secrets are refused: the listener is often on a public network.
MIN_SECRET_LENGTH = 16

log = Logger()


class SecretError(ValueError):
    """
    The secret is missing, unreadable or too short; the message says which.
    """


def _checked(secret: bytes, where: str) -> bytes:
    secret = secret.strip()
    if len(secret) < MIN_SECRET_LENGTH:
        raise SecretError(
            f"the node secret in {where} is shorter than {MIN_SECRET_LENGTH} characters "
            f"(make one with: openssl rand -hex 32)"
        )
    return secret


def read_secret(path: Optional[str], environ: Mapping[str, str] = os.environ, prefer_file: bool = False) -> bytes:
    """
    The shared secret: from C{path} or from C{MONITOR_NODE_SECRET}.  The hub
    lets the environment win (like its API token); a node's explicit
    C{--secret-file} wins over the environment (C{prefer_file}).

    @raise SecretError: neither is given, the file cannot be read, or the
        secret is too short.
    """
    from_env = environ.get(SECRET_ENV, "")
    if from_env.strip() and not (prefer_file and path):
        return _checked(from_env.encode("utf-8"), SECRET_ENV)
    if not path:
        raise SecretError(f"no node secret: give a secret file or set {SECRET_ENV}")
    try:
        with open(path, "rb") as f:
            secret = f.read()
        mode = os.stat(path).st_mode
    except OSError as e:
        raise SecretError(f"cannot read the node secret file {path}: {e.strerror}")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warn("the node secret file {path} is readable by others; chmod 600 it", path=path)
    return _checked(secret, path)


def secret_problem(nodes: Mapping, environ: Mapping[str, str]) -> Optional[tuple[str, str]]:
    """
    For the configuration check: C{(key, problem)} if the hub listens for
    nodes but has no usable secret, else C{None}.
    """
    if not nodes.get("endpoint"):
        return None
    try:
        read_secret(nodes.get("secret_file"), environ)
    except SecretError as e:
        return ("nodes.secret_file", str(e))
    return None
