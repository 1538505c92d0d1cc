"""
Learning in a real C{twistd -n monitor}: labelled complaint tweets and
rated tweets are replayed, people's labels go back in through
C{PUT /api/v1/posts/{id}/feedback}, the hub trains in its worker process
until C{GET /api/v1/models} shows the complaint model active (bounded
wait), and posts appended to the replay afterwards carry its answers:
far more of the held-out complaints get the label than the rules give.
"""

import json
import urllib.parse

import pytest
import pytest_twisted
import treq

from monitor.analysis import Classifier, analyze_texts
from monitor.learn.datasets import complaints, vader_ground_truth
from tests.store.postgres import postgres_dsn, postgres_server  # noqa: F401 (fixtures)
from tests.test_twistd import TOKEN, Hub

pytestmark = pytest.mark.timeout(300)

TRAIN_DOMAINS = ("apparel", "electronics", "software")
HELD_OUT = ("cars", "food", "transport")

CONFIG = """
[store]
path = "monitor.sqlite"
[web]
endpoint = "tcp:PORT:interface=127.0.0.1"
[learning]
min_examples = 20
retrain_after = 10
delay = "1s"
folds = 3
[[sources]]
kind = "replay"
name = "archive"
path = "posts.jsonl"
follow = true
[[topics]]
name = "Acme"
terms = ["acme"]
"""


def line(ident, text, i):
    return json.dumps({"id": ident, "text": f"Acme: {text}", "author": f"user{i % 13}",
                       "created_at": f"2026-01-01T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z"}) + "\n"  # fmt: skip


async def send(hub, method, path, body=None):
    response = await treq.request(method, hub.base + path, headers={"Authorization": f"Bearer {TOKEN}"},
                                  data=json.dumps(body).encode() if body is not None else None,
                                  pool=hub.pool, reactor=hub.reactor)  # fmt: skip
    return response.code, json.loads(await response.text())


async def posts(hub):
    code, body = await hub.get("/api/v1/posts?limit=500")
    return {p["native_id"]: p for p in json.loads(body)["posts"]}


def pg_count(dsn, sql):
    import psycopg2

    db = psycopg2.connect(dsn)
    try:
        with db.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetchone()[0]
    finally:
        db.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
@pytest_twisted.ensureDeferred
async def test_corrections_through_the_api_train_a_model_that_labels_new_posts(
    reactor, tmp_path, shared_data, kind, request, monkeypatch
):
    """The same on either store kind; with PostgreSQL the corrections and models are kept there."""
    config = CONFIG
    if kind == "postgresql":
        dsn = request.getfixturevalue("postgres_dsn")
        monkeypatch.setenv("MONITOR_DSN", dsn)
        config = CONFIG.replace(
            '[store]\npath = "monitor.sqlite"',
            '[store]\nkind = "postgresql"\npath = "monitor.sqlite"\ndsn = "${MONITOR_DSN}"',
        )
    corpus = complaints(shared_data / "complaints/complaints-data.csv")
    train = [e for d, e, _ in corpus if d in TRAIN_DOMAINS][:200]
    held = [e for d, e, _ in corpus if d in HELD_OUT and e.label == "yes"][:100]
    tweets = [e for _, e in vader_ground_truth(shared_data / "vader_icwsm2014/tweets_GroundTruth.txt")][:120]
    replay = tmp_path / "posts.jsonl"
    first = [("c" + e.key, e.text) for e in train] + [("h" + e.key, e.text) for e in tweets]
    replay.write_text("".join(line(k, t, i) for i, (k, t) in enumerate(first)), encoding="utf-8")

    hub = Hub(reactor, tmp_path, config)
    hub.start()
    try:
        await hub.wait_until(lambda: _count(hub, len(first)), seconds=120)
        stored = await posts(hub)
        assert all(p["sentiment"]["by"] == "vader" for p in stored.values())
        for e in train:
            code, body = await send(hub, "PUT", "/api/v1/posts/" + urllib.parse.quote(f"archive:c{e.key}", safe="") + "/feedback",
                                    {"labels": {"complaint": e.label == "yes"}})  # fmt: skip
            assert code == 200 and body["feedback"]["by"] == "api", body
        for e in tweets:
            code, _ = await send(hub, "PUT", f"/api/v1/posts/archive%3Ah{e.key}/feedback", {"sentiment": e.label})
            assert code == 200

        async def complaint_active():
            code, body = await hub.get("/api/v1/models")
            models = {m["name"]: m for m in json.loads(body)["models"]}
            c = models.get("complaint")
            return c and c["state"] == "active" and models["sentiment"]["state"] in ("active", "inactive") and models

        models = await hub.wait_until(complaint_active, seconds=150, step=0.5)
        c = models["complaint"]
        assert c["examples"] == len(train) and c["evaluation"]["macro_f1"] > c["evaluation"]["baseline_macro_f1"]
        if models["sentiment"]["state"] != "active":
            # Not better than VADER on these posts: an admin may still say so.
            code, body = await send(hub, "POST", "/api/v1/models/sentiment/activate")
            assert code == 200 and body["model"]["state"] == "active", body
        code, body = await hub.get("/api/v1/models")
        sentiment_version = {m["name"]: m for m in json.loads(body)["models"]}["sentiment"]["version"]

        # New posts, appended to the replay it follows, are answered by the models.
        with open(replay, "a", encoding="utf-8") as f:
            f.write("".join(line("n" + e.key, e.text, 5000 + i) for i, e in enumerate(held)))
        await hub.wait_until(lambda: _count(hub, len(first) + len(held)), seconds=60)
        stored = await posts(hub)
        new = [stored["n" + e.key] for e in held]
        assert all(p["sentiment"]["by"] == f"model:{sentiment_version}" for p in new)
        learned = sum("complaint" in p["labels"] for p in new)
        rules = sum("complaint" in a.labels for a in analyze_texts([f"Acme: {e.text}" for e in held], Classifier()))
        assert learned > rules + 15, (learned, rules)
        # Earlier posts keep what they were given when stored, until an admin re-scores them.
        assert stored["c" + train[0].key]["sentiment"]["by"] == "vader"
        code, body = await send(hub, "POST", "/api/v1/rescore")
        assert code == 200 and body["rescore"]["state"] == "running" and body["rescore"]["by"] == "api"

        async def rescored():
            code, body = await hub.get("/api/v1/rescore")
            job = json.loads(body)["rescore"]
            return job["state"] == "done" and job

        job = await hub.wait_until(rescored, seconds=60)
        assert job["done"] == job["total"] == len(first) + len(held) and job["changed"] >= len(first)
        stored = await posts(hub)
        assert all(p["sentiment"]["by"] == f"model:{sentiment_version}" for p in stored.values())
        # The corrected training posts now mostly carry the label people gave them.
        agree = sum(("complaint" in stored["c" + e.key]["labels"]) == (e.label == "yes") for e in train)
        assert agree > 0.8 * len(train), agree
    finally:
        assert await hub.stop(), hub.output()
    if kind == "postgresql":
        assert pg_count(dsn, "SELECT count(*) FROM post_feedback") == len(train) + len(tweets)
        assert pg_count(dsn, "SELECT count(*) FROM learned_models WHERE state = 'active'") == 2


async def _count(hub, n):
    code, body = await hub.get("/api/v1/stats")
    return code == 200 and json.loads(body)["count"] == n
