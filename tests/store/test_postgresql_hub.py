"""
A real hub (C{twistd -n monitor}) with C{[store] kind = "postgresql"} on
the session's throwaway PostgreSQL server: replayed posts are stored there,
once across a restart, and the API answers from there.  And the
configuration keys of the PostgreSQL store, each named when wrong.
"""

import json
import os
import subprocess
import sys

import pytest
import pytest_twisted

from zope.interface.verify import verifyObject

from monitor.config import ConfigError, parse_config
from monitor.hub import make_store, make_store_areas
from monitor.interfaces import IStore
from monitor.store.interfaces import IPostReads
from monitor.store.postgresql import PostgreSQLStore
from tests.store.test_sqlite import make_post
from tests.test_twistd import CONFIG, ROOT, Hub

pytestmark = pytest.mark.timeout(120)


def pg_config(pool_size=3):
    return CONFIG.replace(
        '[store]\npath = "monitor.sqlite"',
        f'[store]\nkind = "postgresql"\npath = "monitor.sqlite"\ndsn = "${{MONITOR_DSN}}"\npool_size = {pool_size}',
    )


def pg_count(dsn, sql):
    import psycopg2

    db = psycopg2.connect(dsn)
    try:
        with db.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetchall()
    finally:
        db.close()


@pytest_twisted.ensureDeferred
async def test_a_hub_on_postgresql_stores_replayed_posts_and_answers(reactor, tmp_path, postgres_dsn, monkeypatch):
    """
    Replayed posts land in PostgreSQL, once across a restart; /api/v1/posts
    searches them there; a [store] path that could not be opened is not used.
    """
    n = 300
    (tmp_path / "plain").write_text("a file where a directory would be\n")
    with open(tmp_path / "posts.jsonl", "w", encoding="utf-8") as f:
        for i in range(n):
            brand = "Acme" if i % 3 else "Globex"
            f.write(json.dumps({"id": i, "text": f"{brand} café number {i}" + (" battery life" if i % 10 == 0 else ""),
                                "author": f"u{i % 7}", "created_at": 1.7e9 + i}) + "\n")  # fmt: skip
    monkeypatch.setenv("MONITOR_DSN", postgres_dsn)
    for attempt in range(2):
        hub = Hub(reactor, tmp_path, pg_config().replace('path = "monitor.sqlite"', 'path = "plain/monitor.sqlite"'))
        hub.start()
        try:

            async def all_stored():
                # After a restart the count is there at once; the file's
                # topics are loaded a moment later.
                code, body = await hub.get("/api/v1/stats")
                if code != 200 or json.loads(body)["count"] != n:
                    return False
                code, _ = await hub.get("/api/v1/posts?topic=Globex&limit=1")
                return code == 200

            await hub.wait_until(all_stored, seconds=60)
            code, body = await hub.get("/api/v1/posts?topic=Globex&q=cafe&limit=500")
            assert code == 200, body
            page = json.loads(body)
            assert sorted(int(p["native_id"]) for p in page["posts"]) == list(range(0, n, 3))
            code, body = await hub.get('/api/v1/posts?q="battery+life"&limit=500')
            assert sorted(int(p["native_id"]) for p in json.loads(body)["posts"]) == list(range(0, n, 10))
            code, body = await hub.get("/api/v1/posts?q=cafe&limit=0")
            assert code == 400 and json.loads(body)["parameter"] == "limit"
            # The whole log: output() is its tail, which a busy start (two
            # stores migrating) can push the warning out of.
            assert "everything is kept in PostgreSQL" in hub.log.read_text(errors="replace")
            assert "s3cret" not in hub.output()
        finally:
            assert await hub.stop(), hub.output()
    assert pg_count(postgres_dsn, "SELECT count(*), count(DISTINCT uid) FROM posts") == [(n, n)]
    assert pg_count(postgres_dsn, "SELECT source, cursor IS NOT NULL FROM cursors") == [("archive", True)]
    # [store] path is neither checked nor opened: no SQLite file anywhere.
    assert not list(tmp_path.rglob("*.sqlite*"))


@pytest_twisted.ensureDeferred
async def test_the_hub_store_on_postgresql_is_postgresql_alone(postgres_dsn, tmp_path, reactor):
    """
    make_store gives the PostgreSQL store itself, with every area over it,
    and opens no file at [store] path; accounts asked for while it starts
    (a login page served early) get their answer, not an error.
    """
    config = parse_config(
        {"store": {"kind": "postgresql", "dsn": postgres_dsn, "path": str(tmp_path / "var" / "m.sqlite")}}
    )
    store = make_store(config, reactor)
    assert type(store) is PostgreSQLStore
    assert verifyObject(IStore, store) and verifyObject(IPostReads, store)
    accounts, alerts, learning = make_store_areas(config, store, "hub-a")
    assert accounts.store is store and alerts.store is store and learning.store is store
    started = store.startService()
    try:
        assert await accounts.count_users() == 0
        await started
        assert await store.store_batch([make_post(1, "hello café")], {"demo": "c1"}) == ["demo:1"]
        assert [p.uid for p in await store.recent_posts(5)] == ["demo:1"]
    finally:
        await store.stopService()
    assert not store.running
    assert not list(tmp_path.rglob("*"))


def test_an_unreachable_server_is_one_line_naming_store_dsn(tmp_path):
    """twistd monitor with a DSN nothing answers at exits non-zero naming [store] dsn, password masked."""
    config = tmp_path / "pg.toml"
    config.write_text(pg_config().replace("PORT", "0").replace("posts.jsonl", str(tmp_path / "none.jsonl")))
    (tmp_path / "none.jsonl").write_text("")
    dsn = f"postgresql://monitor:s3cret@/nowhere?host={tmp_path}"
    result = subprocess.run(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "--nodaemon", "--pidfile=",
         "monitor", "--config", str(config)],
        cwd=str(tmp_path), env=dict(os.environ, PYTHONPATH=str(ROOT), MONITOR_DSN=dsn),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "change [store] dsn" in out, out
    assert "s3cret" not in out


@pytest.mark.parametrize(
    "store, environ, expected",
    [
        ({"kind": "postgresql"}, {}, 'store.dsn: is required with kind = "postgresql"'),
        ({"kind": "postgresql", "dsn": "${MONITOR_DSN}"}, {}, "store.dsn: environment variable MONITOR_DSN is not set"),
        ({"kind": "postgresql", "dsn": "not a dsn"}, {}, "store.dsn: is not a PostgreSQL connection string"),
        ({"kind": "postgresql", "dsn": "postgresql:///x", "pool_size": 0}, {}, "store.pool_size: must be between 1"),
        ({"kind": "postgresql", "dsn": "postgresql:///x", "pool_size": "4"}, {}, "store.pool_size: must be a whole"),
        ({"kind": "mysql"}, {}, "store.kind: must be one of 'sqlite', 'postgresql'"),
    ],
)
def test_bad_store_keys_are_named(store, environ, expected):
    """Each wrong [store] key is one problem that names it, and never repeats the DSN."""
    with pytest.raises(ConfigError) as e:
        parse_config({"store": store}, environ=environ)
    assert any(p.startswith(expected) for p in e.value.problems), e.value.problems
    assert not any("not a dsn" in p for p in e.value.problems)


def test_store_keys_and_defaults():
    """kind stays sqlite by default; the DSN comes from the environment; pool_size defaults to 4."""
    assert parse_config({}).store == {"kind": "sqlite", "path": "var/monitor.sqlite", "dsn": "", "pool_size": 4}
    config = parse_config(
        {"store": {"kind": "postgresql", "dsn": "${MONITOR_DSN}"}},
        environ={"MONITOR_DSN": "postgresql://u:p@db.example:5432/monitor"},
    )
    assert config.store["dsn"] == "postgresql://u:p@db.example:5432/monitor"
    assert config.store["pool_size"] == 4


ALERTS_CONFIG = """
[alerts]
evaluate_every = "1s"
live = false
# Replayed posts of 2023 are history; notified anyway, since delivery is tested.
notify_backfill = true
[[rules]]
name = "battery"
type = "keyword"
phrases = ["battery life"]
topics = ["Acme"]
[[channels]]
name = "ops-hook"
kind = "webhook"
url = "http://127.0.0.1:HOOK/hook"
secret = "SECRET"
"""

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


async def _first_admin(hub, reactor, name, password):
    """
    The cookies of the first admin's session, made on the first run's setup
    page as a browser does (whichever store keeps the accounts).
    """
    import re

    import treq

    token = (hub.tmp_path / "var" / "setup-token").read_text().strip()
    response = await treq.get(f"{hub.base}/setup/{token}", pool=hub.pool, reactor=reactor)
    csrf = re.search(r'name="csrf" value="([^"]+)"', await response.text()).group(1)
    jar = {c.name: c.value for c in response.cookies()}
    form = {"csrf": csrf, "name": name, "password": password, "again": password}
    response = await treq.post(f"{hub.base}/setup/{token}", data=form, cookies=jar, allow_redirects=False,
                               pool=hub.pool, reactor=reactor)  # fmt: skip
    assert response.code == 303, await response.text()
    jar.update({c.name: c.value for c in response.cookies()})
    return jar


@pytest_twisted.ensureDeferred
async def test_pages_and_alerts_of_a_hub_on_postgresql(reactor, tmp_path, postgres_dsn, monkeypatch):
    """The map reads the posts PostgreSQL holds; a rule's incident and its notification are kept there, delivered once."""
    import treq
    from twisted.web.server import Site

    from tests.fakes.webhook import FakeWebhookReceiver
    from tests.test_twistd import free_port

    n = 30
    with open(tmp_path / "posts.jsonl", "w", encoding="utf-8") as f:
        for i in range(n):
            placed = {"lat": 48.85, "lon": 2.35} if i % 5 == 0 else {}
            f.write(json.dumps({"id": i, "text": f"Acme phone {i}" + (" battery life" if i % 10 == 0 else ""),
                                "author": f"u{i % 3}", "created_at": 1.7e9 + i, **placed}) + "\n")  # fmt: skip
    hook_port = free_port()
    receiver = FakeWebhookReceiver(SECRET, reactor)
    port = reactor.listenTCP(hook_port, Site(receiver), interface="127.0.0.1")
    monkeypatch.setenv("MONITOR_DSN", postgres_dsn)
    hub = Hub(reactor, tmp_path, pg_config() + ALERTS_CONFIG.replace("HOOK", str(hook_port)).replace("SECRET", SECRET))
    hub.start()
    try:

        async def delivered():
            code, body = await hub.get("/api/v1/incidents?rule=battery")
            found = json.loads(body)["incidents"] if code == 200 else []
            notes = [note for i in found for note in i["notifications"]]
            return notes and all(note["state"] == "sent" for note in notes) and found

        incidents = await hub.wait_until(delivered, seconds=60)
        cookies = await _first_admin(hub, reactor, "admin", "correct horse battery staple")
        response = await treq.get(
            hub.base + "/ui/geo.json?since=2023-11-14T00:00:00Z&until=2023-11-15T00:00:00Z",
            cookies=cookies,
            pool=hub.pool,
            reactor=reactor,
        )
        body = await response.text()
        assert response.code == 200, body
        placed = sorted(int(p["id"].split(":")[1]) for p in json.loads(body)["posts"])
        assert placed == list(range(0, n, 5))
    finally:
        clean = await hub.stop()
        await port.stopListening()
    assert clean, hub.output()
    # Kept in PostgreSQL, not in the file; each notification delivered once.
    stored = pg_count(postgres_dsn, "SELECT i.id, n.id, n.state FROM alert_incidents AS i "
                      "JOIN alert_notifications AS n ON n.incident_id = i.id WHERE i.rule = 'battery'")  # fmt: skip
    assert sorted(row[0] for row in stored) == sorted(i["id"] for i in incidents)
    assert {row[2] for row in stored} == {"sent"}
    assert sorted(d.id for d in receiver.deliveries) == sorted(row[1] for row in stored) and not receiver.duplicates
    assert not list(tmp_path.rglob("*.sqlite*"))
