"""
Request bodies against a real hub (C{twistd -n monitor}): a body over its
route's limit is refused with 413 before it is read, a form with too many
fields before it is parsed, and the hub's memory does not grow with what an
unauthenticated client sends (issue 9, item 4).  How long the reactor
stalls meanwhile is measured by C{bench/request_limits.py}.
"""

import json
import socket
import threading

import psutil
import pytest

from monitor.web.limits import DEFAULT_MAX_BODY, DEFAULT_MAX_EDIT_BODY, DEFAULT_MAX_FIELDS, BodyPolicy, Limit

ATTACK = 20 * 1000 * 1000  # 20 MB: two million fields of "a=&"


def connect(hub):
    host, port = hub.base.rsplit("/", 1)[1].split(":")
    s = socket.create_connection((host, int(port)), timeout=10)
    return s


def head(hub, method, path, length=None, chunked=False, ctype="application/x-www-form-urlencoded"):
    lines = [f"{method} {path} HTTP/1.1", "Host: " + hub.base.split("//")[1], f"Content-Type: {ctype}"]
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    elif length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def answer(s):
    """Status and JSON body of the response on C{s} (read until the hub closes)."""
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    status = int(data.split(b" ", 2)[1])
    body = data.split(b"\r\n\r\n", 1)[1]
    return status, json.loads(body) if body.startswith(b"{") else body


@pytest.mark.parametrize("path", ["/login", "/healthz", "/no/such/page", "/api/v1/rules"])
def test_a_declared_length_over_the_limit_is_refused_before_the_body(hub, path):
    """Only the headers of a 20 MB form are sent: the 413 comes without waiting for any of the body."""
    with connect(hub) as s:
        s.sendall(head(hub, "POST", path, ATTACK))
        status, body = answer(s)
    assert status == 413
    assert body["parameter"] == "body" and "at most" in body["error"]


def test_a_chunked_body_is_cut_off_at_the_limit(hub):
    """Without a length the body is counted as it comes, and refused once it passes the limit."""
    chunk = b"a=&" * 20000
    with connect(hub) as s:
        s.sendall(head(hub, "POST", "/login", chunked=True))
        sent = 0
        try:
            while sent < ATTACK:
                s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, _ = answer(s)
    assert status == 413
    # The hub closed long before the 20 MB were through.
    assert sent < ATTACK / 2


def test_a_form_with_too_many_fields_is_not_parsed(hub):
    """A body within the byte limit but with more fields than allowed: 413, even on the big edit routes."""
    for path, size in (("/login", DEFAULT_MAX_BODY), ("/topics/save", DEFAULT_MAX_EDIT_BODY)):
        body = (b"a&" * (size // 2))[:size]
        with connect(hub) as s:
            s.sendall(head(hub, "POST", path, len(body)) + body)
            status, answered = answer(s)
        assert status == 413, path
        assert "fields" in answered["error"]


def test_multipart_forms_are_refused(hub):
    """No page sends multipart/form-data, so the hub never parses one."""
    body = b'--x\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--x--\r\n'
    with connect(hub) as s:
        s.sendall(head(hub, "POST", "/login", len(body), ctype="multipart/form-data; boundary=x") + body)
        status, _ = answer(s)
    assert status == 415


def test_forms_within_the_limits_still_work(hub):
    """The login form is parsed as before: a wrong password is a 401 page, not a refusal."""
    opener = hub.opener()
    status, _, page = hub.request("/login", opener=opener)
    csrf = page.split(b'name="csrf" value="')[1].split(b'"')[0].decode()
    status, _, _ = hub.request("/login", {"csrf": csrf, "name": "admin", "password": "wrong"}, opener=opener)
    assert status == 401


def test_memory_stays_bounded_under_a_flood_of_big_bodies(hub):
    """Twenty clients sending 20 MB forms at once: the hub's memory barely moves and /healthz answers."""
    proc = psutil.Process(hub.proc.pid)
    before = proc.memory_info().rss
    body = b"a=&" * (ATTACK // 3)
    statuses = []

    def attack(path):
        with connect(hub) as s:
            try:
                s.sendall(head(hub, "POST", path, len(body)) + body)
            except (BrokenPipeError, ConnectionResetError):
                pass
            try:
                statuses.append(answer(s)[0])
            except (ConnectionResetError, IndexError):
                statuses.append("reset")

    threads = [threading.Thread(target=attack, args=(p,)) for p in ("/login", "/healthz", "/nothing/here") * 7]
    for t in threads:
        t.start()
    status, _, health = hub.request("/healthz")
    for t in threads:
        t.join(60)
    after = proc.memory_info().rss
    assert status == 200 and json.loads(health)["status"] == "ok"
    assert statuses and all(s in (413, "reset") for s in statuses)
    assert after - before < 30 * 1024 * 1024, f"grew {(after - before) >> 20} MiB"


def test_policy_routes():
    """Only the edit routes take more than the default, whatever their names."""
    policy = BodyPolicy(Limit(10, 2), [(b"PUT", "/api/v1/rules/<name>", Limit(100, 20))])
    assert policy.limit(b"PUT", b"/api/v1/rules/crisis?x=1") == Limit(100, 20)
    assert policy.limit(b"PUT", b"/api/v1/rules/a/b") == Limit(10, 2)
    assert policy.limit(b"POST", b"/api/v1/rules/crisis") == Limit(10, 2)
    assert DEFAULT_MAX_FIELDS < 1000
