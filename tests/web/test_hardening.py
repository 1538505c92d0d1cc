"""
What attacking a real hub found (issue 9), kept fixed: each test drives a
real C{twistd monitor} over loopback the way an attacker or a careless
client would.
"""

import http.client
import re
import tempfile
import threading
from http.cookies import SimpleCookie
from urllib.parse import urlencode, urlsplit

import pytest
import pytest_twisted
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

from tests.web.conftest import PASSWORDS, TOKEN, HubProcess
from tests.web.wsclient import RawClient

BURST_PASSWORD = "burst password 1"


@pytest.fixture(scope="module")
def hub():
    directory = tempfile.mkdtemp(prefix="monitor-hardening-")
    hub = HubProcess(directory)
    hub.add_user("admin", "admin", PASSWORDS["admin"])
    hub.add_user("vi", "viewer", PASSWORDS["vi"])
    hub.add_user("burst", "viewer", BURST_PASSWORD)
    hub.start()
    yield hub
    hub.stop()


class Browser:
    """
    One client of the hub from a loopback address of its own (Linux routes
    all of 127/8 to lo), so the per-address throttle of one test does not
    touch the others.
    """

    def __init__(self, hub, address):
        parts = urlsplit(hub.base)
        self.host, self.port, self.address = parts.hostname, parts.port, address
        self.cookies = {}

    def request(self, method, path, form=None, headers=None):
        connection = http.client.HTTPConnection(self.host, self.port, timeout=60, source_address=(self.address, 0))
        try:
            head = dict(headers or {})
            if self.cookies:
                head["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
            body = None
            if form is not None:
                body = urlencode(form).encode()
                head["Content-Type"] = "application/x-www-form-urlencoded"
            connection.request(method, path, body=body, headers=head)
            response = connection.getresponse()
            data = response.read()
            for value in response.headers.get_all("Set-Cookie") or ():
                for name, morsel in SimpleCookie(value).items():
                    if morsel["max-age"] == "0":
                        self.cookies.pop(name, None)
                    else:
                        self.cookies[name] = morsel.value
            return response.status, response.headers, data
        finally:
            connection.close()

    def login_form(self):
        """A fresh login form's CSRF token (and its cookie, kept)."""
        status, _, body = self.request("GET", "/login")
        assert status == 200
        return re.search(rb'name="csrf" value="([^"]+)"', body).group(1).decode()

    def login(self, name, password, csrf=None):
        csrf = csrf or self.login_form()
        return self.request("POST", "/login", {"csrf": csrf, "name": name, "password": password, "next": "/live"})[0]


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
