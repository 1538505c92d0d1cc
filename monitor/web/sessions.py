"""
The live sockets of each login session, so that a session's end reaches
every connection it opened.

A WebSocket outlives the HTTP request that authenticated it; without this
registry a socket would keep receiving posts after its session ended.
L{Users} owns one and tells it when a session ends in this hub (logout, a
password set by the user or an admin, the user deleted, a role changed).
What this hub cannot see (an expiry, a session ended by another hub or by
C{--add-user} on the command line) is found by looking the sessions up
again: at each session's expiry time, and every C{interval} seconds for
all of them.
"""

from __future__ import annotations

from typing import Awaitable, Callable, Iterable, Optional

from twisted.application.service import Service
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import Attribute, Interface

from monitor.service import InFlight

__all__ = ["CLOSE_SESSION_ENDED", "CLOSE_FORBIDDEN", "ISessionSocket", "SessionRegistry"]

#: Close code of a socket whose session ended: the browser logs in again.
CLOSE_SESSION_ENDED = 4401
#: Close code of a socket whose user's role no longer allows it.
CLOSE_FORBIDDEN = 4403


class ISessionSocket(Interface):
    """
    A long-lived connection opened by a login session.
    """

    session = Attribute("The L{monitor.web.users.Session} that opened it; replaced when the session is re-read.")

    def end(why: str, code: int, reason: str) -> None:
        """
        Close the connection for C{why} (a short word, for the metrics),
        with a close C{code} and a C{reason} for the client.
        """


class SessionRegistry(Service):
    """
    Session key to the sockets it opened.

    @ivar lookup: C{await lookup(keys)} gives C{{key: Session}} for those
        of C{keys} that are still live (without refreshing them).
    @ivar role: the role a socket needs (C{viewer} for the live channel).
    """

    name = "sessions"
    log = Logger()

    def __init__(
        self,
        reactor,
        lookup: Callable[[list[str]], Awaitable[dict]],
        role: str = "viewer",
        interval: float = 60.0,
    ) -> None:
        self.reactor = reactor
        self.lookup = lookup
        self.role = role
        self.interval = interval
        self._sockets: dict[str, set] = {}
        self._timers: dict[str, object] = {}
        self._loop: Optional[LoopingCall] = None
        self._in_flight = InFlight()

    # -- service -------------------------------------------------------------

    def startService(self):
        super().startService()
        if self.interval:
            self._loop = LoopingCall(self._recheck_all)
            self._loop.clock = self.reactor
            self._loop.start(self.interval, now=False).addErrback(
                lambda f: self.log.failure("the session re-check loop stopped", f)
            )

    def stopService(self):
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        for key in list(self._timers):
            self._cancel_timer(key)
        return self.settled()

    def settled(self):
        """
        A Deferred that fires once no look-up started by a timer runs.
        """
        return self._in_flight.idle()

    # -- sockets -------------------------------------------------------------

    def attach(self, socket) -> None:
        """
        Register a socket under its session; it is ended with the session.
        """
        key = socket.session.key
        self._sockets.setdefault(key, set()).add(socket)
        self._schedule(key, socket.session.expires_at)

    def detach(self, socket) -> None:
        session = getattr(socket, "session", None)
        if session is None:
            return
        sockets = self._sockets.get(session.key)
        if sockets is None:
            return
        sockets.discard(socket)
        if not sockets:
            del self._sockets[session.key]
            self._cancel_timer(session.key)

    def sockets(self, key: str) -> frozenset:
        return frozenset(self._sockets.get(key, ()))

    def count_user(self, user_id: int) -> int:
        """
        How many sockets the sessions of one user hold.
        """
        return sum(len(s) for s in self._sockets.values() if next(iter(s)).session.user_id == user_id)

    # -- ending ----------------------------------------------------------------

    def end_session(self, key: str, why: str, reason: str = "your session has ended") -> None:
        """
        A session ended: close every socket it opened.
        """
        for socket in list(self._sockets.pop(key, ())):
            socket.end(why, CLOSE_SESSION_ENDED, reason)
        self._cancel_timer(key)

    def end_user(self, user_id: int, why: str, reason: str = "your session has ended") -> None:
        """
        Every session of a user ended (new password, user deleted).
        """
        for key in self._keys_of(user_id):
            self.end_session(key, why, reason)

    def recheck_user(self, user_id: int):
        """
        Re-read the sessions of a user whose role changed.
        """
        return ensureDeferred(self.recheck(self._keys_of(user_id)))

    def _keys_of(self, user_id: int) -> list[str]:
        return [k for k, sockets in self._sockets.items() if next(iter(sockets)).session.user_id == user_id]

    async def recheck(self, keys: Iterable[str]) -> None:
        """
        Look sessions up again: close the sockets of those that ended or
        whose role is no longer enough, give the others the fresh session
        (its new role) and a timer for its new expiry.
        """
        keys = [k for k in keys if k in self._sockets]
        if not keys:
            return
        live = await self.lookup(keys)
        for key in keys:
            session = live.get(key)
            if session is None:
                self.end_session(key, "session ended")
            elif not session.may(self.role):
                for socket in list(self._sockets.pop(key, ())):
                    socket.end("role", CLOSE_FORBIDDEN, f"this needs the {self.role} role")
                self._cancel_timer(key)
            else:
                for socket in self._sockets.get(key, ()):
                    socket.session = session
                self._schedule(key, session.expires_at, replace=True)

    def _recheck_all(self):
        d = ensureDeferred(self.recheck(list(self._sockets)))
        d.addErrback(lambda f: self.log.failure("could not re-check the live sessions", f))
        return self._in_flight.track(d)

    # -- expiry ----------------------------------------------------------------

    def _schedule(self, key: str, expires_at: float, replace: bool = False) -> None:
        if key in self._timers and not replace:
            return
        self._cancel_timer(key)
        if expires_at == float("inf"):
            return
        delay = max(0.0, expires_at - self.reactor.seconds())
        self._timers[key] = self.reactor.callLater(delay, self._expired, key)

    def _expired(self, key: str) -> None:
        self._timers.pop(key, None)
        d = ensureDeferred(self.recheck([key]))
        d.addErrback(lambda f: self.log.failure("could not re-check an expiring session", f))
        self._in_flight.track(d)

    def _cancel_timer(self, key: str) -> None:
        call = self._timers.pop(key, None)
        if call is not None and call.active():
            call.cancel()
