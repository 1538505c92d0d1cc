"""
The real thing: C{twistd -n monitor} as a separate process, a replay file of
real labelled posts, results read back through the HTTP API, SIGTERM, and a
restart that continues instead of starting over.
"""

import json
import os
import signal
import socket
import subprocess
import sys

import pytest
import pytest_twisted
import treq
from twisted.internet.task import deferLater
from twisted.web.client import HTTPConnectionPool
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from monitor.analysis.text import plain_text
from tests.conftest import ROOT

TOKEN = "test-token-0123456789"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ground_truth(shared_data, n):
    path = shared_data / "vader_icwsm2014" / "tweets_GroundTruth.txt"
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        ident, mean, text = line.split("\t", 2)
        rows.append((ident, float(mean), text))
    return rows[:n]


class Hub:
    """A twistd hub process and an HTTP client for its API."""

    def __init__(self, reactor, tmp_path, config_text):
        self.reactor = reactor
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.config = tmp_path / "monitor.toml"
        self.config.write_text(config_text.replace("PORT", str(self.port)), encoding="utf-8")
        self.log = tmp_path / "twistd.log"
        self.tmp_path = tmp_path
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.proc = None

    def start(self):
        env = dict(os.environ, PYTHONPATH=str(ROOT), MONITOR_API_TOKEN=TOKEN)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from twisted.scripts.twistd import run; run()",
                "--nodaemon",
                "--pidfile=",
                "--logfile",
                str(self.log),
                "monitor",
                "--config",
                str(self.config),
            ],
            cwd=str(self.tmp_path),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    async def get(self, path, token=TOKEN):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await treq.get(self.base + path, headers=headers, pool=self.pool, reactor=self.reactor)
        return response.code, await response.text()

    async def wait_until(self, check, seconds=30.0, step=0.1):
        """Poll C{check} (async, returns truthy when done) on the real reactor, bounded."""
        for _ in range(int(seconds / step)):
            try:
                result = await check()
            except Exception:
                result = None
            if result:
                return result
            if self.proc.poll() is not None:
                raise AssertionError(f"hub exited early:\n{self.output()}")
            await deferLater(self.reactor, step, lambda: None)
        raise AssertionError(f"timed out after {seconds}s:\n{self.output()}")

    def output(self):
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return text[-4000:]

    async def stop(self, seconds=10.0):
        """SIGTERM; return True if the hub shut down cleanly within C{seconds}."""
        self.proc.send_signal(signal.SIGTERM)
        for _ in range(int(seconds / 0.1)):
            if self.proc.poll() is not None:
                # twistd re-raises the signal after a clean shutdown.
                return self.proc.returncode in (0, -signal.SIGTERM) and "Server Shut Down." in self.output()
            await deferLater(self.reactor, 0.1, lambda: None)
        self.proc.kill()
        raise AssertionError("hub did not exit within 10 s of SIGTERM:\n" + self.output())


CONFIG = """
[store]
path = "monitor.sqlite"
[web]
endpoint = "tcp:PORT:interface=127.0.0.1"
[[sources]]
kind = "replay"
name = "archive"
path = "posts.jsonl"
[[topics]]
name = "Acme"
terms = ["acme"]
group = "vendors"
[[topics]]
name = "Globex"
terms = ["globex"]
group = "vendors"
"""


@pytest_twisted.ensureDeferred
async def test_hub_end_to_end(reactor, tmp_path, shared_data):
    """Posts replayed into a real hub come out of the API with VADER's exact scores, once, across a restart."""
    rows = ground_truth(shared_data, 400)
    lines = []
    for i, (ident, mean, text) in enumerate(rows):
        brand = "Acme" if i % 4 else "Globex"
        lines.append(
            json.dumps(
                {
                    "id": ident,
                    "text": f"{brand}: {text}",
                    "author": f"user{i % 37}",
                    "created_at": f"2026-01-01T{i // 60:02d}:{i % 60:02d}:00Z",
                    "author_followers": i * 10,
                }
            )
        )
    lines.insert(7, '{"id": "broken", "text": 42}')
    lines.insert(20, "not json at all")
    lines.append(
        json.dumps({"id": "x1", "text": "nothing to see here", "author": "z", "created_at": "2026-01-02T00:00:00Z"})
    )
    (tmp_path / "posts.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")

    hub = Hub(reactor, tmp_path, CONFIG)
    hub.start()
    try:

        async def all_stored():
            code, body = await hub.get("/api/v1/stats")
            return code == 200 and json.loads(body)["count"] == 400 and json.loads(body)

        stats = await hub.wait_until(all_stored)
        assert stats["share_of_voice"] is None
        code, body = await hub.get("/api/v1/stats?topic=Acme")
        acme = json.loads(body)
        assert acme["count"] == 300
        shares = {t["topic"]: t["share"] for t in acme["share_of_voice"]["topics"]}
        assert shares == {"Acme": 0.75, "Globex": 0.25}

        vader = SentimentIntensityAnalyzer()
        seen = {}
        cursor = None
        while True:
            path = "/api/v1/posts?limit=500" + (f"&cursor={cursor}" if cursor else "")
            code, body = await hub.get(path)
            assert code == 200, body
            page = json.loads(body)
            for p in page["posts"]:
                seen[p["native_id"]] = p
            cursor = page["next"]
            if not cursor:
                break
        assert len(seen) == 400
        for ident, mean, text in rows:
            p = seen[ident]
            brand = p["text"].split(":")[0]
            assert p["topics"] == [brand]
            expected = vader.polarity_scores(plain_text(p["text"]))
            assert {k: p["sentiment"][k] for k in ("compound", "pos", "neu", "neg")} == expected

        code, body = await hub.get("/api/v1/dead-letters")
        contexts = sorted(d["context"] for d in json.loads(body)["dead_letters"])
        assert contexts == ["posts.jsonl:21", "posts.jsonl:8"]

        code, body = await hub.get("/api/v1/posts")
        assert code == 200
        code, body = await hub.get("/api/v1/posts", token=None)
        assert code == 401 and "error" in json.loads(body)
        code, body = await hub.get("/api/v1/posts", token="wrong")
        assert code == 401
        code, body = await hub.get("/api/v1/posts?sentiment=furious")
        assert code == 400 and json.loads(body)["parameter"] == "sentiment"
        code, body = await hub.get("/api/v1/posts?limitt=5")
        assert code == 400 and json.loads(body)["parameter"] == "limitt"
        code, body = await hub.get("/healthz", token=None)
        assert code == 200 and json.loads(body)["sources"] == {"archive": "finished"}
        code, metrics = await hub.get("/metrics", token=None)
        assert 'monitor_posts_stored_total{source="archive"} 400.0' in metrics
        assert 'monitor_posts_unmatched_total{source="archive"} 1.0' in metrics
        assert 'monitor_posts_malformed_total{source="archive"} 2.0' in metrics
    finally:
        clean = await hub.stop()
    assert clean, hub.output()

    # Append more posts and restart: only the new ones are read and stored.
    with open(tmp_path / "posts.jsonl", "a", encoding="utf-8") as f:
        for i in range(5):
            f.write(
                json.dumps({"id": f"new{i}", "text": "acme again", "author": "n", "created_at": "2026-01-03T00:00:00Z"})
                + "\n"
            )
    hub.start()
    try:

        async def finished():
            code, body = await hub.get("/healthz", token=None)
            return code == 200 and json.loads(body)["sources"]["archive"] == "finished"

        await hub.wait_until(finished)
        code, body = await hub.get("/api/v1/stats")
        assert json.loads(body)["count"] == 405
        code, metrics = await hub.get("/metrics", token=None)
        assert 'monitor_posts_collected_total{source="archive"} 5.0' in metrics
    finally:
        assert await hub.stop(), hub.output()


@pytest.mark.parametrize(
    "text,expected",
    [
        ('[store]\npathh = "x"\n', "store.pathh (line 2): unknown key"),
        ('[web]\nendpoint = "nonsense:1"\n', "web.endpoint (line 2)"),
    ],
)
def test_bad_config_refused_before_start(tmp_path, text, expected):
    """twistd monitor with a bad file exits non-zero naming the key, without starting."""
    config = tmp_path / "bad.toml"
    config.write_text(text)
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from twisted.scripts.twistd import run; run()",
            "--nodaemon",
            "--pidfile=",
            "monitor",
            "--config",
            str(config),
        ],
        cwd=str(tmp_path),
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert expected in result.stdout + result.stderr


@pytest_twisted.ensureDeferred
async def test_sigterm_mid_replay_loses_nothing(reactor, tmp_path):
    """SIGTERM during a flat-out replay drains and exits in time; the restart stores the rest, each post once."""
    import sqlite3

    n = 30000
    with open(tmp_path / "posts.jsonl", "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(
                json.dumps(
                    {"id": i, "text": f"acme is great number {i}", "author": f"u{i % 50}", "created_at": 1.7e9 + i}
                )
                + "\n"
            )
    hub = Hub(reactor, tmp_path, CONFIG.replace("[web]", "[queue]\nsize = 5000\n[web]"))
    hub.start()

    async def some_stored():
        code, body = await hub.get("/api/v1/stats")
        return code == 200 and json.loads(body)["count"] >= 1000

    await hub.wait_until(some_stored)
    assert await hub.stop(), hub.output()

    db = sqlite3.connect(tmp_path / "monitor.sqlite")
    (cursor,) = db.execute("SELECT cursor FROM cursors WHERE source = 'archive'").fetchone()
    lines_done = int(cursor.split(":")[1])
    stored = db.execute("SELECT count(*) FROM posts").fetchone()[0]
    below = db.execute("SELECT count(*) FROM posts WHERE CAST(native_id AS INTEGER) < ?", (lines_done,)).fetchone()[0]
    db.close()
    assert 1000 <= stored < n, "the hub should have been stopped mid-replay"
    # The saved position never runs ahead of what is stored, and the drain
    # stored everything that had been taken in.
    assert below == lines_done == stored

    hub.start()
    try:

        async def finished():
            code, body = await hub.get("/healthz", token=None)
            return (
                code == 200 and json.loads(body)["sources"]["archive"] == "finished" and json.loads(body)["queue"] == 0
            )

        await hub.wait_until(finished, seconds=60)

        async def all_stored():
            code, body = await hub.get("/api/v1/stats")
            return json.loads(body)["count"] == n

        await hub.wait_until(all_stored)
        code, metrics = await hub.get("/metrics", token=None)
        assert f'monitor_posts_collected_total{{source="archive"}} {float(n - lines_done)}' in metrics
        assert "monitor_posts_duplicate_total 0.0" in metrics
    finally:
        assert await hub.stop(), hub.output()


@pytest_twisted.ensureDeferred
async def test_bad_replay_lines_are_judged_once_across_restarts(reactor, tmp_path):
    """Bad lines (also the last ones of the file) are dead-lettered once; restarts move on past them."""
    import sqlite3

    good = [json.dumps({"id": i, "text": f"acme {i}", "author": "a", "created_at": 1.7e9 + i}) + "\n" for i in range(3)]
    lines = [good[0], "{broken\n", good[1], '{"id": 9, "text": "no author"}\n', good[2], "[1, 2]\n", "not json\n"]
    (tmp_path / "posts.jsonl").write_text("".join(lines), encoding="utf-8")
    hub = Hub(reactor, tmp_path, CONFIG)

    async def finished():
        code, body = await hub.get("/healthz", token=None)
        return code == 200 and json.loads(body)["sources"]["archive"] == "finished" and json.loads(body)["queue"] == 0

    async def four_letters():
        code, body = await hub.get("/api/v1/dead-letters")
        return len(json.loads(body)["dead_letters"]) == 4

    for run in range(3):
        hub.start()
        try:
            await hub.wait_until(finished)
            await hub.wait_until(four_letters)
            code, body = await hub.get("/api/v1/sources")
            (archive,) = json.loads(body)["sources"]
            # Only the first run reads (and judges) the bad lines; the
            # counters are all-time, so later runs still show them.
            assert archive["malformed"] == 4 and archive["posts"] == 3, archive
        finally:
            assert await hub.stop(), hub.output()
        db = sqlite3.connect(tmp_path / "monitor.sqlite")
        contexts = [c for (c,) in db.execute("SELECT context FROM dead_letters ORDER BY id")]
        (cursor,) = db.execute("SELECT cursor FROM cursors WHERE source = 'archive'").fetchone()
        stored = db.execute("SELECT count(*) FROM posts").fetchone()[0]
        db.close()
        assert [c.rsplit(":", 1)[1] for c in contexts] == ["2", "4", "6", "7"], contexts
        assert cursor == f"{len(''.join(lines).encode())}:7" and stored == 3
