"""
A real hub (C{twistd -n monitor}) with C{[store] kind = "postgresql"} on
the session's throwaway PostgreSQL server: replayed posts are stored there,
once across a restart, and the API answers from there.  And the
configuration keys of the PostgreSQL store, each named when wrong.
"""

import json
import os
import sqlite3
import subprocess
import sys

import pytest
import pytest_twisted

from monitor.config import ConfigError, parse_config
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
    """Replayed posts land in PostgreSQL, once across a restart; /api/v1/posts searches them there."""
    n = 300
    with open(tmp_path / "posts.jsonl", "w", encoding="utf-8") as f:
        for i in range(n):
            brand = "Acme" if i % 3 else "Globex"
            f.write(json.dumps({"id": i, "text": f"{brand} café number {i}" + (" battery life" if i % 10 == 0 else ""),
                                "author": f"u{i % 7}", "created_at": 1.7e9 + i}) + "\n")  # fmt: skip
    monkeypatch.setenv("MONITOR_DSN", postgres_dsn)
    for attempt in range(2):
        hub = Hub(reactor, tmp_path, pg_config())
        hub.start()
        try:

            async def all_stored():
                code, body = await hub.get("/api/v1/stats")
                return code == 200 and json.loads(body)["count"] == n

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
            assert "posts are kept in PostgreSQL" in hub.log.read_text(errors="replace")
            assert "s3cret" not in hub.output()
        finally:
            assert await hub.stop(), hub.output()
    assert pg_count(postgres_dsn, "SELECT count(*), count(DISTINCT uid) FROM posts") == [(n, n)]
    assert pg_count(postgres_dsn, "SELECT source, cursor IS NOT NULL FROM cursors") == [("archive", True)]
    # The file holds what has no PostgreSQL provider yet, and no posts.
    db = sqlite3.connect(tmp_path / "monitor.sqlite")
    try:
        assert db.execute("SELECT count(*) FROM posts").fetchone()[0] == 0
    finally:
        db.close()


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
