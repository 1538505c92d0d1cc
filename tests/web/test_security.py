"""
The lesser findings of issue 9 (item 8), kept fixed: owner-only database
files, scrypt at OWASP's minimum with rehashing and a global cap, the login
form's server-side pre-session, CSRF tokens never from the query string, and
the Host check against DNS rebinding.
"""

import os
import re
import stat
import tempfile
import time
from urllib.parse import urlsplit

import pytest
import pytest_twisted
from twisted.internet.defer import gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import Clock

from monitor.store.sqlite import SQLiteStore
from monitor.store.sqlite_accounts import SQLiteAccounts
from monitor.web.hosts import HostCheck, parse_host
from monitor.web.users import (
    HASHES_AT_ONCE,
    LOGIN_FORM_TTL,
    SCRYPT_N,
    Hashing,
    HashingBusy,
    Users,
    check_password,
    hash_password,
    needs_rehash,
)
from tests.web.conftest import CONFIG, PASSWORDS, Browser, HubProcess
from tests.web.wsclient import RawClient

# -- file permissions --------------------------------------------------------------


def test_database_files_are_owner_only_after_a_real_start():
    """A new database and its -wal/-shm are 0600; an existing world-readable one is tightened and logged."""
    directory = tempfile.mkdtemp(prefix="monitor-perms-")
    hub = HubProcess(directory, CONFIG)
    hub.add_user("admin", "admin", PASSWORDS["admin"])
    db = os.path.join(directory, "monitor.sqlite")
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600
    os.chmod(db, 0o644)
    hub.start()
    try:
        hub.wait_for(r"monitor\.sqlite could be read by other users; it is now owner-only")
        status, _, _ = hub.request("/login")  # a write: the WAL and SHM files exist now
        assert status == 200
        for name in (db, db + "-wal", db + "-shm"):
            assert stat.S_IMODE(os.stat(name).st_mode) == 0o600, name
    finally:
        hub.stop()


# -- password hashing -----------------------------------------------------------------


def test_default_cost_is_owasp_minimum_and_kept_in_the_hash():
    """At the real cost: N = 2**17, r = 8, p = 1, written into the hash, which verifies."""
    hashed = hash_password("correct horse")
    assert hashed.split("$")[1:4] == ["131072", "8", "1"]
    assert SCRYPT_N == 2**17
    assert check_password("correct horse", hashed) and not check_password("correct horsE", hashed)
    assert not needs_rehash(hashed)


def test_old_and_odd_hashes():
    """An N = 2**15 hash still verifies (and wants a rehash); silly parameters match nothing."""
    old = hash_password("old password", n=2**15)
    assert check_password("old password", old) and needs_rehash(old)
    salt, digest = old.split("$")[4:]
    for n, r, p in ((2**30, 8, 1), (1000, 8, 1), (2**10, 0, 1), (2**10, 8, 99)):
        assert not check_password("old password", f"scrypt${n}${r}${p}${salt}${digest}")


@pytest_twisted.async_yield_fixture
async def store(reactor, tmp_path):
    store = SQLiteStore(tmp_path / "m.sqlite", reactor=reactor)
    await store.startService()
    yield store
    await store.stopService()


@pytest_twisted.ensureDeferred
async def test_an_old_hash_is_redone_at_the_next_login(reactor, store):
    """A user hashed at N = 2**15 logs in and is stored at the hub's cost; a wrong password changes nothing."""
    users = Users(SQLiteAccounts(store), reactor, scrypt_n=2**12)
    old = hash_password("a good password", n=2**15)
    await store.run_write(
        lambda t: t.execute(
            "INSERT INTO users (name, role, password_hash, created_at) VALUES ('ann', 'viewer', ?, 0)", (old,)
        )
    )

    def stored():
        return store.run_read(lambda t: t.execute("SELECT password_hash FROM users WHERE name = 'ann'").fetchone()[0])

    assert await users.authenticate("ann", "wrong password") is None
    assert await stored() == old
    assert (await users.authenticate("ann", "a good password"))[1] == "ann"
    new = await stored()
    assert new.split("$")[1] == str(2**12) and check_password("a good password", new)
    assert await users.authenticate("ann", "a good password") is not None
    assert await stored() == new


@pytest_twisted.ensureDeferred
async def test_hashes_run_off_the_reactor_with_a_global_cap(reactor):
    """However many logins arrive, at most HASHES_AT_ONCE hashes run, in threads; past the queue, busy."""
    import threading

    hashing = Hashing(reactor, waiting=6)
    main = threading.get_ident()
    threads = []

    def work(i):
        threads.append(threading.get_ident())
        return hash_password(f"password {i}", n=2**14)

    running = [hashing.run(work, i) for i in range(HASHES_AT_ONCE + 6)]
    with pytest.raises(HashingBusy):
        await hashing.run(work, 99)
    results = await gatherResults(running)
    assert len(results) == HASHES_AT_ONCE + 6
    assert hashing.peak == HASHES_AT_ONCE
    assert main not in threads


# -- the login form's pre-session ----------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_login_forms_are_single_use_expire_and_are_capped(reactor, store):
    """A pre-session gives its token once, not after its hour, and anonymous GETs keep at most the cap."""
    clock = Clock()
    clock.advance(time.time())
    users = Users(SQLiteAccounts(store), clock, login_forms_max=5)
    cookie, csrf = await users.open_login_form()
    assert await users.take_login_form(cookie) == csrf
    assert await users.take_login_form(cookie) is None
    assert await users.take_login_form("") is None and await users.take_login_form("x" * 300) is None
    late, _ = await users.open_login_form()
    clock.advance(LOGIN_FORM_TTL + 1)
    assert await users.take_login_form(late) is None
    opened = [await users.open_login_form() for _ in range(20)]
    assert await users.count_login_forms() == 5
    assert await users.take_login_form(opened[0][0]) is None  # the oldest went first
    assert await users.take_login_form(opened[-1][0]) == opened[-1][1]
    clock.advance(LOGIN_FORM_TTL + 1)
    await users.open_login_form()
    assert await users.count_login_forms() == 1


class Client(Browser):
    """A browser whose requests may carry a Host header of our choosing."""

    def __init__(self, hub, host=None):
        super().__init__(hub)
        self.forced_host = host

    def request(self, method, path, form=None, headers=None):
        headers = dict(headers or {}, **({"Host": self.forced_host} if self.forced_host else {}))
        return super().request(method, path, form, headers)

    def login(self, name, csrf):
        return self.request("POST", "/login", {"csrf": csrf, "name": name, "password": PASSWORDS[name]})[0]


def test_login_needs_the_pre_session_of_its_form(hub):
    """Double-submit alone no longer logs in: the token must be the one the server gave this cookie, once."""
    forger = Client(hub)
    forger.cookies["monitor_login"] = "chosen-by-the-attacker"
    assert forger.login("vi", "chosen-by-the-attacker") == 403
    a, b = Client(hub), Client(hub)
    token_a, token_b = a.login_form(), b.login_form()
    assert a.login("vi", token_b) == 403  # another form's token
    assert a.login("vi", token_a) == 403  # a's pre-session ended with the refused POST
    token_b2 = b.login_form()
    assert b.login("vi", token_b2) == 303
    replay = Client(hub)
    token = replay.login_form()
    cookie = dict(replay.cookies)
    assert replay.login("vi", token) == 303
    replay.cookies = cookie
    assert replay.login("vi", token) == 403  # a form is sent once
    other = Client(hub)
    token = other.login_form()
    assert other.request("POST", "/login", {"csrf": token, "name": "vi", "password": PASSWORDS["vi"]},
                         headers={"Origin": "http://evil.example"})[0] == 403  # fmt: skip


def test_csrf_token_is_never_taken_from_the_query_string(hub):
    """The session's token in the URL is refused; the same token in the body or the header is accepted."""
    client = Client(hub)
    assert client.login("ed", client.login_form()) == 303
    status, _, body = client.request("GET", "/topics")
    csrf = re.search(rb'data-csrf="([^"]+)"', body).group(1).decode()
    assert client.request("POST", "/logout?csrf=" + csrf, {})[0] == 403
    assert client.request("POST", "/logout?csrf=" + csrf, {"csrf": "wrong"})[0] == 403
    assert client.request("POST", "/logout", {}, headers={"X-CSRF-Token": csrf})[0] == 303
    client = Client(hub)
    assert client.login("ed", client.login_form()) == 303
    status, _, body = client.request("GET", "/topics")
    csrf = re.search(rb'data-csrf="([^"]+)"', body).group(1).decode()
    assert client.request("POST", "/logout", {"csrf": csrf})[0] == 303


# -- Host ----------------------------------------------------------------------------


def test_host_check():
    """IP addresses and localhost always; other names only when listed, with their port if given."""
    check = HostCheck(["monitor.example.com", "proxy.example:8443"])
    for host in (b"127.0.0.1:8080", b"[::1]:8080", b"localhost:1", b"LOCALHOST", b"10.1.2.3", b"app.localhost:80",
                 b"monitor.example.com", b"monitor.example.com:9", b"proxy.example:8443", None):  # fmt: skip
        assert check.allows(host), host
    for host in (b"evil.example", b"evil.example:8080", b"proxy.example", b"proxy.example:8444", b"",
                 b"a b", b"127.0.0.1@evil.example", b"evil.example/x", b"[nonsense]", b"\xff"):  # fmt: skip
        assert not check.allows(host), host
    assert check.allows(b"proxy.example", secure=False) is False
    assert HostCheck(["proxy.example:443"]).allows(b"proxy.example", secure=True)
    assert HostCheck(["*"]).allows(b"anything.example")
    assert parse_host("Example.COM:80") == ("example.com", 80)
    assert parse_host("[::1]") == ("::1", None)
    assert parse_host("host:99999") is None


def test_rebound_names_are_refused_everywhere(hub):
    """A page on a rebound name reaches no page, API route or static file; the hub's own names do."""
    port = urlsplit(hub.base).port
    for path in ("/login", "/api/v1/posts", "/healthz", "/static/app.css", "/ws", "/nope"):
        assert Client(hub, host=f"evil.example:{port}").request("GET", path)[0] == 421, path
    assert Client(hub, host=f"localhost:{port}").request("GET", "/login")[0] == 200
    assert Client(hub, host=f"127.0.0.1:{port}").request("GET", "/login")[0] == 200


@pytest_twisted.ensureDeferred
async def test_ws_checks_host(reactor, hub):
    """A WebSocket handshake with a rebound Host (and a matching Origin) is refused before its session is read."""
    client = Client(hub)
    assert client.login("vi", client.login_form()) == 303
    cookie = "monitor_session=" + client.cookies["monitor_session"]
    parts = urlsplit(hub.base)
    evil = f"evil.example:{parts.port}"
    ws = RawClient(evil, f"http://{evil}", cookie)
    await connectProtocol(TCP4ClientEndpoint(reactor, parts.hostname, parts.port), ws)
    assert await ws.handshake.addTimeout(10, reactor) == 421
    ok = RawClient(parts.netloc, hub.base, cookie)
    await connectProtocol(TCP4ClientEndpoint(reactor, parts.hostname, parts.port), ok)
    assert await ok.handshake.addTimeout(10, reactor) == 101
    ok.transport.loseConnection()


HOSTS_CONFIG = CONFIG.replace("[web]\n", '[web]\nhosts = ["monitor.example.com"]\n', 1)


def test_configured_host_is_accepted():
    """A name listed in [web] hosts (what a proxy forwards) is answered; others still are not."""
    hub = HubProcess(tempfile.mkdtemp(prefix="monitor-hosts-"), HOSTS_CONFIG)
    hub.start()
    try:
        assert Client(hub, host="monitor.example.com").request("GET", "/login")[0] == 200
        assert Client(hub, host="other.example.com").request("GET", "/login")[0] == 421
    finally:
        hub.stop()


def test_a_bad_hosts_entry_names_the_key(tmp_path):
    from monitor.config import ConfigError, load_config

    path = tmp_path / "monitor.toml"
    path.write_text(CONFIG.replace("scrypt_n = 16384", 'scrypt_n = 1000\nhosts = ["not a host/"]'))
    with pytest.raises(ConfigError) as e:
        load_config(str(path))
    text = str(e.value)
    assert "web.hosts" in text and "web.scrypt_n" in text, text
