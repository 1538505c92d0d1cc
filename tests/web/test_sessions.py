"""
The session registry: the live sockets of a session end with it, whatever
ends it; users and sessions in a real SQLite store, time from a Clock.
"""

import time

import pytest_twisted
from twisted.internet.task import Clock
from zope.interface import implementer
from zope.interface.verify import verifyObject

from monitor.store.sqlite import SQLiteStore
from monitor.store.sqlite_accounts import SQLiteAccounts
from monitor.web.push import PushProtocol
from monitor.web.sessions import ISessionSocket
from monitor.web.users import Users


@implementer(ISessionSocket)
class Socket:
    """Records how it was ended; detaches itself like the live channel's sockets."""

    def __init__(self, registry, session):
        self.registry = registry
        self.session = session
        self.ended = None

    def end(self, why, code, reason):
        self.ended = (why, code)
        self.registry.detach(self)


def test_live_channel_sockets_provide_the_interface():
    """The live channel's protocol is what the registry ends."""
    assert ISessionSocket.implementedBy(PushProtocol)


@pytest_twisted.async_yield_fixture
async def world(reactor, tmp_path):
    """Users in a real store, on a Clock that threads can still call back into."""
    store = SQLiteStore(tmp_path / "m.sqlite", reactor=reactor)
    await store.startService()
    clock = Clock()
    clock.advance(time.time())
    clock.getThreadPool = reactor.getThreadPool
    clock.callFromThread = reactor.callFromThread
    users = Users(SQLiteAccounts(store), clock, idle=600)
    users.startService()
    await users.add_user("ann", "editor", "a good password")
    await users.add_user("root", "admin", "a good password")
    yield users, clock
    users.stopService()
    await store.stopService()


async def connect(users, name):
    user_id, _, _ = await users.authenticate(name, "a good password")
    token, _ = await users.open_session(user_id)
    session = await users.session(token)
    socket = Socket(users.sockets, session)
    verifyObject(ISessionSocket, socket)
    users.sockets.attach(socket)
    return socket, token


@pytest_twisted.ensureDeferred
async def test_logout_password_and_delete_end_the_sockets(world):
    """Logout ends that session's sockets; a new password or deleting the user ends all of theirs."""
    users, clock = world
    one, token = await connect(users, "ann")
    two, _ = await connect(users, "ann")
    other, _ = await connect(users, "root")
    await users.close_session(one.session.key)
    assert one.ended == ("logged out", 4401) and two.ended is None
    await users.set_password("ann", "a new password")
    assert two.ended == ("password changed", 4401) and other.ended is None
    three, _ = await connect(users, "root")
    await users.add_user("spare", "admin", "a good password")
    await users.delete_user("root")
    assert other.ended == ("user deleted", 4401) and three.ended[1] == 4401
    assert users.sockets.count_user(one.session.user_id) == 0


@pytest_twisted.ensureDeferred
async def test_expiry_closes_the_socket(reactor, world):
    """A session that expires while its socket is open ends the socket, by a timer on the injected clock."""
    users, clock = world
    socket, token = await connect(users, "ann")
    clock.advance(599)
    await users.sockets.settled()
    assert socket.ended is None
    clock.advance(1)
    await users.sockets.settled()
    assert socket.ended == ("session ended", 4401)


@pytest_twisted.ensureDeferred
async def test_use_of_the_session_moves_the_expiry(reactor, world):
    """A session used again (by a page) keeps its socket open past the first expiry time."""
    users, clock = world
    socket, token = await connect(users, "ann")
    clock.advance(300)
    assert await users.session(token) is not None  # refreshes last_seen
    await users.accounts.store.run_write(lambda t: None)  # the one writer thread has done the refresh
    clock.advance(300)
    await users.sockets.settled()
    assert socket.ended is None
    clock.advance(300)
    await users.sockets.settled()
    assert socket.ended == ("session ended", 4401)


@pytest_twisted.ensureDeferred
async def test_role_change_is_rechecked(world):
    """A role change gives the open sockets the new role (the session is read again)."""
    users, clock = world
    socket, _ = await connect(users, "ann")
    await users.set_role("ann", "viewer")
    assert socket.ended is None and socket.session.role == "viewer"


@pytest_twisted.ensureDeferred
async def test_role_too_weak_ends_the_socket(world):
    """A socket that needs a role its user lost is closed with 4403."""
    users, clock = world
    users.sockets.role = "editor"
    socket, _ = await connect(users, "ann")
    await users.set_role("ann", "viewer")
    assert socket.ended == ("role", 4403)


@pytest_twisted.ensureDeferred
async def test_session_ended_elsewhere_is_found_by_the_periodic_check(reactor, world):
    """A session deleted behind the hub's back (another hub, --add-user) ends its socket at the next check."""
    users, clock = world
    socket, _ = await connect(users, "ann")
    await users.accounts.store.run_write(lambda t: t.execute("DELETE FROM sessions"))
    assert socket.ended is None
    clock.advance(users.sockets.interval)
    await users.sockets.settled()
    assert socket.ended == ("session ended", 4401)
