"""
Two real hubs (C{twistd -n monitor}) on one PostgreSQL database, each in a
directory of its own: a user made with C{--add-user} on one logs in on
either, and a session opened on one hub is a session on the other, until
it ends on either.  The accounts live in PostgreSQL; no hub makes a file.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.store.postgres import postgres_dsn, postgres_server  # noqa: F401 (fixtures)
from tests.web.conftest import CONFIG, PASSWORDS, HubProcess

pytestmark = pytest.mark.timeout(180)

PG_CONFIG = CONFIG.replace(
    '[store]\npath = "monitor.sqlite"', '[store]\nkind = "postgresql"\npath = "monitor.sqlite"\ndsn = "${MONITOR_DSN}"'
)


@pytest.fixture
def hubs(tmp_path, postgres_dsn):  # noqa: F811 (the fixture)
    """Two started hubs on one new database, stopped after the test."""
    made = []
    for name in ("one", "two"):
        directory = tmp_path / name
        directory.mkdir()
        hub = HubProcess(str(directory), PG_CONFIG)
        hub.env["MONITOR_DSN"] = postgres_dsn
        made.append(hub)
    made[0].add_user("ed", "editor", PASSWORDS["ed"])
    try:
        for hub in made:
            hub.start()
        yield made
    finally:
        for hub in made:
            if hub.proc is not None and hub.proc.poll() is None:
                hub.stop()


def _page_csrf(body: bytes) -> str:
    return re.search(rb'data-csrf="([^"]+)"', body).group(1).decode()


def test_a_session_opened_on_one_hub_is_valid_on_the_other_until_logged_out_there(hubs):
    """Log in on hub one (with hub two's login form): hub two knows the session; logging out on two ends it on one."""
    one, two = hubs
    opener = one.opener()  # one cookie jar: both hubs are 127.0.0.1, cookies ignore the port
    status, _, body = two.request("/login", opener=opener)
    assert status == 200, two.output()
    form_csrf = re.search(rb'name="csrf" value="([^"]+)"', body).group(1).decode()
    # The login form's pre-session is shared too: served by two, posted to one.
    status, headers, _ = one.request(
        "/login", {"csrf": form_csrf, "name": "ed", "password": PASSWORDS["ed"], "next": "/account"}, opener=opener
    )
    assert status == 303 and headers["location"] == "/account", (status, one.output())
    status, _, on_one = one.request("/account", opener=opener)
    assert status == 200, one.output()
    status, _, on_two = two.request("/account", opener=opener)
    assert status == 200, two.output()
    assert _page_csrf(on_two) == _page_csrf(on_one)  # the same session
    assert b"You are <strong>ed</strong>, with the <strong>editor</strong> role." in on_two

    status, headers, _ = two.request("/logout", {"csrf": _page_csrf(on_two)}, opener=opener)
    assert status == 303 and headers["location"] == "/login"
    for hub in (one, two):
        status, headers, _ = hub.request("/account", opener=opener)
        assert status == 303 and headers["location"].startswith("/login"), (status, dict(headers))

    # The users are in PostgreSQL: no hub made a file of its own.
    for hub in (one, two):
        assert not (Path(hub.dir) / "monitor.sqlite").exists()
