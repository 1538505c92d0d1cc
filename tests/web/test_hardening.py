"""
What attacking a real hub found (issue 9), kept fixed: each test drives a
real C{twistd monitor} over loopback the way an attacker or a careless
client would.
"""

import re
import tempfile
import threading
from urllib.parse import urlsplit

import pytest
import pytest_twisted
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

from tests.web import conftest
from tests.web.conftest import TOKEN, Browser, HubProcess
from tests.web.wsclient import RawClient

BURST_PASSWORD = "burst password 1"
#: The conftest users' passwords, and those the tests here give their own users.
PASSWORDS = dict(conftest.PASSWORDS)


@pytest.fixture(scope="module")
def hub():
    directory = tempfile.mkdtemp(prefix="monitor-hardening-")
    hub = HubProcess(directory)
    with open(hub.config, encoding="utf-8") as f:
        config = f.read().replace("ws_interval = 0.1", "ws_interval = 0.1\nws_per_user = 3")
    with open(hub.config, "w", encoding="utf-8") as f:
        f.write(config)
    hub.add_user("admin", "admin", PASSWORDS["admin"])
    hub.add_user("vi", "viewer", PASSWORDS["vi"])
    hub.add_user("burst", "viewer", BURST_PASSWORD)
    hub.start()
    yield hub
    hub.stop()


def test_login_burst_is_throttled_before_hashing(hub):
    """Thirty wrong passwords at once get 429s, and the right one after the burst does not log in."""
    browsers = [Browser(hub, "127.0.0.2") for _ in range(31)]
    tokens = [b.login_form() for b in browsers]
    start = threading.Barrier(30)
    statuses = [None] * 30

    def attempt(i):
        start.wait()
        statuses[i] = browsers[i].login("burst", f"wrong password {i}", tokens[i])

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert statuses.count(429) >= 20, statuses
    assert set(statuses) <= {401, 429}, statuses
    assert browsers[30].login("burst", BURST_PASSWORD, tokens[30]) == 429
    # The account is blocked from any address while the burst is counted...
    assert Browser(hub, "127.0.0.3").login("burst", BURST_PASSWORD) == 429
    # ...and another account from another address is not.
    assert Browser(hub, "127.0.0.3").login("vi", PASSWORDS["vi"]) == 303


def session_cookie(hub, name, address):
    browser = Browser(hub, address)
    assert browser.login(name, PASSWORDS[name]) == 303
    return browser, "monitor_session=" + browser.cookies["monitor_session"]


async def open_ws(reactor, hub, cookie):
    parts = urlsplit(hub.base)
    client = RawClient(parts.netloc, hub.base, cookie)
    await connectProtocol(TCP4ClientEndpoint(reactor, parts.hostname, parts.port), client)
    assert await client.handshake.addTimeout(10, reactor) == 101
    await client.wait_for(lambda es: any(e["type"] == "hello" for e in es)).addTimeout(10, reactor)
    return client


def metric(hub, name):
    status, _, body = hub.request("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith(name):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest_twisted.ensureDeferred
async def test_ws_subscribe_flood_ends_the_connection(reactor, hub):
    """A viewer sending subscriptions as fast as it can is cut off with 1008, counted, instead of growing the hub."""
    _, cookie = session_cookie(hub, "vi", "127.0.0.4")
    before = metric(hub, 'monitor_ws_disconnects_total{reason="flood"}')
    client = await open_ws(reactor, hub, cookie)
    big = {"type": "subscribe", "topics": ["t" * 150] * 90}
    for _ in range(500):
        client.send_json(big)
    await client.closed.addTimeout(10, reactor)
    assert client.close_code == 1008
    replies = [e for e in client.envelopes if e["type"] == "subscribed"]
    assert len(replies) <= 21
    assert metric(hub, 'monitor_ws_disconnects_total{reason="flood"}') == before + 1


@pytest_twisted.ensureDeferred
async def test_ws_oversized_message_ends_the_connection(reactor, hub):
    """A control message over ws_max_message, or over the frame budget, ends the connection with 1009, counted."""
    _, cookie = session_cookie(hub, "vi", "127.0.0.4")
    before = metric(hub, 'monitor_ws_disconnects_total{reason="oversized"}')
    for size in (20_000, 200_000):
        client = await open_ws(reactor, hub, cookie)
        client.send_text('{"type": "subscribe", "topics": ["' + "x" * size + '"]}')
        await client.closed.addTimeout(10, reactor)
        assert client.close_code == 1009, size
        assert not any(e["type"] in ("subscribed", "error") for e in client.envelopes)
    assert metric(hub, 'monitor_ws_disconnects_total{reason="oversized"}') == before + 2


def admin_post(hub, path, form):
    opener, csrf = hub.login("admin")
    status, _, body = hub.request(path, {**form, "csrf": csrf}, opener=opener)
    assert status == 303, (status, body[:500])


def add_user(hub, name, role="viewer"):
    admin_post(hub, "/admin/users", {"name": name, "role": role, "password": f"{name} password 1"})
    PASSWORDS[name] = f"{name} password 1"


async def closed_with(reactor, client):
    await client.closed.addTimeout(10, reactor)
    return client.close_code


@pytest_twisted.ensureDeferred
async def test_sockets_end_with_their_session(reactor, hub):
    """Logout, a password change by the user, an admin's reset and deleting the user each close the user's /ws (4401)."""
    add_user(hub, "sock")
    # Logout ends only the socket of that session.
    browser, cookie = session_cookie(hub, "sock", "127.0.0.5")
    _, other_cookie = session_cookie(hub, "sock", "127.0.0.5")
    client, other = await open_ws(reactor, hub, cookie), await open_ws(reactor, hub, other_cookie)
    status, _, body = browser.request("GET", "/account")
    csrf = re.search(rb'data-csrf="([^"]+)"', body).group(1).decode()
    assert browser.request("POST", "/logout", {"csrf": csrf})[0] == 303
    assert await closed_with(reactor, client) == 4401
    assert other.close_code is None and not other.closed.called
    # The user changes their own password: every session ends.
    browser, cookie = session_cookie(hub, "sock", "127.0.0.5")
    client = await open_ws(reactor, hub, cookie)
    status, _, body = browser.request("GET", "/account")
    csrf = re.search(rb'data-csrf="([^"]+)"', body).group(1).decode()
    form = {"csrf": csrf, "current": PASSWORDS["sock"], "new": "sock password 2", "again": "sock password 2"}
    assert browser.request("POST", "/account/password", form)[0] == 303
    PASSWORDS["sock"] = "sock password 2"
    assert await closed_with(reactor, client) == 4401
    assert await closed_with(reactor, other) == 4401
    # An admin resets the password.
    _, cookie = session_cookie(hub, "sock", "127.0.0.5")
    client = await open_ws(reactor, hub, cookie)
    admin_post(hub, "/admin/users/password", {"name": "sock", "password": "sock password 3"})
    PASSWORDS["sock"] = "sock password 3"
    assert await closed_with(reactor, client) == 4401
    # An admin deletes the user.
    _, cookie = session_cookie(hub, "sock", "127.0.0.5")
    client = await open_ws(reactor, hub, cookie)
    admin_post(hub, "/admin/users/delete", {"name": "sock"})
    assert await closed_with(reactor, client) == 4401


@pytest_twisted.ensureDeferred
async def test_role_change_keeps_a_socket_that_is_still_allowed(reactor, hub):
    """A role change re-reads the session: a viewer made editor keeps receiving posts."""
    add_user(hub, "promoted")
    _, cookie = session_cookie(hub, "promoted", "127.0.0.6")
    client = await open_ws(reactor, hub, cookie)
    client.send_json({"type": "subscribe", "kinds": ["post"]})
    await client.wait_for(lambda es: any(e["type"] == "subscribed" for e in es)).addTimeout(10, reactor)
    admin_post(hub, "/admin/users/role", {"name": "promoted", "role": "editor"})
    hub.append({"text": "acme after the role change"})
    got = await client.wait_for(lambda es: any(e["type"] == "post" for e in es)).addTimeout(20, reactor)
    assert any(e["data"]["text"] == "acme after the role change" for e in got if e["type"] == "post")
    assert client.close_code is None
    client.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_one_user_cannot_hold_every_live_slot(reactor, hub):
    """Past ws_per_user sockets a user's handshakes get 429, from any of their sessions; other users still get in."""
    _, cookie = session_cookie(hub, "vi", "127.0.0.7")
    held = [await open_ws(reactor, hub, cookie) for _ in range(3)]
    parts = urlsplit(hub.base)
    refused = RawClient(parts.netloc, hub.base, cookie)
    await connectProtocol(TCP4ClientEndpoint(reactor, parts.hostname, parts.port), refused)
    assert await refused.handshake.addTimeout(10, reactor) == 429
    # The cap is the user's, across sessions: a second login does not lift it.
    _, second = session_cookie(hub, "vi", "127.0.0.8")
    also_refused = RawClient(parts.netloc, hub.base, second)
    await connectProtocol(TCP4ClientEndpoint(reactor, parts.hostname, parts.port), also_refused)
    assert await also_refused.handshake.addTimeout(10, reactor) == 429
    _, admin_cookie = session_cookie(hub, "admin", "127.0.0.7")
    other = await open_ws(reactor, hub, admin_cookie)
    for c in (*held, other):
        c.transport.loseConnection()
