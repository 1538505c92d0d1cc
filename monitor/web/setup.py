"""
The first run: while the store has no user, the hub offers a one-time setup
link, C{http://HOST:PORT/setup/TOKEN}, where the first admin is created in
the browser (as Grafana, Jenkins and Gitea do).  The token is logged and
kept in a file only its owner may read, next to the API token, so only
someone who can read the hub's log or its files can use it.  Once an admin
exists the link stops working and the file is removed.
"""

from __future__ import annotations

import hmac
import os
import secrets
from typing import Optional

from twisted.internet.defer import DeferredLock
from twisted.logger import Logger

__all__ = ["SetupLink", "setup_token_path", "write_owner_only"]


def write_owner_only(path: str, text: str) -> None:
    """
    Write a secret to C{path}, readable by its owner only, making its
    directory if needed (the API token, the setup token).
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text + "\n")


def setup_token_path(token_file: str) -> str:
    """
    Where the setup token is kept: beside the API token (C{[web]
    token_file}), so both live in the hub's private directory.
    """
    return os.path.join(os.path.dirname(token_file) or ".", "setup-token")


class SetupLink:
    """
    The one-time setup token of a hub without users.

    @ivar token: the token while setup is open, else C{None}.
    """

    log = Logger()

    def __init__(self, users, path: str) -> None:
        self.users = users
        self.path = path
        self.token: Optional[str] = None
        #: Setup forms are handled one at a time (L{DeferredLock}).
        self.lock = DeferredLock()

    async def open_if_needed(self) -> Optional[str]:
        """
        Make (or reuse, across restarts) the token if there is no user yet;
        return it, or C{None} when setup is not needed.
        """
        if await self.users.count_users() > 0:
            self._remove_file()
            return None
        self.token = self._read() or self._write(secrets.token_urlsafe(24))
        return self.token

    async def valid(self, given: str) -> bool:
        """
        Whether C{given} opens the setup page: the right token, and still no
        admin (one may have been made with C{--add-user} meanwhile).
        """
        if self.token is None or not hmac.compare_digest(given.encode("utf-8"), self.token.encode("utf-8")):
            return False
        if await self.users.has_admin():
            self.close()
            return False
        return True

    def close(self) -> None:
        """
        An admin exists: the link stops working and its file goes.
        """
        if self.token is not None:
            self.log.info("setup done: the setup link no longer works")
        self.token = None
        self._remove_file()

    def _read(self) -> Optional[str]:
        try:
            with open(self.path, encoding="utf-8") as f:
                token = f.read().strip()
        except FileNotFoundError:
            return None
        os.chmod(self.path, 0o600)
        return token or None

    def _write(self, token: str) -> str:
        write_owner_only(self.path, token)
        return token

    def _remove_file(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
