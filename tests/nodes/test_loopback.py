"""
Real processes on loopback: a twistd hub and two twistd monitor-node
processes over TLS, a replay of several thousand posts, and one node killed
with SIGKILL while it holds batches.  Every post must be stored exactly once
with the scores local analysis gives.  Also: a hub analysing in its own
worker processes ([analysis] workers = 1), and a node applying the hub's
learned models (trained from the demo's shipped corrections).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3

import psutil
import pytest_twisted
import treq
from twisted.internet.task import deferLater
from twisted.web.client import HTTPConnectionPool

from monitor.analysis import Classifier, analyze_texts
from tests.nodes.helpers import SECRET, Twistd, self_signed, wait_until
from tests.test_twistd import free_port

TOKEN = "nodes-test-token"
BRANDS = ("Acme", "Globex")


def corpus(shared_data, n):
    """n texts naming a brand: real labelled tweets, HTML, and posts of 3,000 bytes of emoji."""
    rows = (shared_data / "vader_icwsm2014" / "tweets_GroundTruth.txt").read_text(encoding="utf-8").splitlines()
    real = [r.split("\t", 2)[2] for r in rows]
    out = []
    for i in range(n):
        brand = BRANDS[i % 2]
        if i % 500 == 7:
            out.append(f"{brand} " + "😡😭" * 375)
        elif i % 300 == 11:
            out.append(f"<p>{brand} is <b>down</b> again &lt;3 total meltdown</p>")
        else:
            out.append(f"{brand}: {real[i % len(real)]}")
    return out


def lines(texts, start):
    return "".join(
        json.dumps({"id": start + i, "text": t, "author": f"u{i % 41}", "created_at": 1.7e9 + start + i}) + "\n"
        for i, t in enumerate(texts)
    )


class Api:
    def __init__(self, reactor, port):
        self.reactor = reactor
        self.base = f"http://127.0.0.1:{port}"
        self.pool = HTTPConnectionPool(reactor, persistent=False)

    async def get(self, path):
        response = await treq.get(
            self.base + path, headers={"Authorization": f"Bearer {TOKEN}"}, pool=self.pool, reactor=self.reactor
        )
        body = await response.text()
        return json.loads(body) if path != "/metrics" else body

    async def stored(self):
        return (await self.get("/api/v1/stats"))["count"]

    async def nodes(self):
        return {n["name"]: n for n in (await self.get("/api/v1/nodes"))["nodes"]}


def config(port, node_port, pem, secret, extra=""):
    nodes = (
        f"""
[nodes]
endpoint = "ssl:{node_port}:interface=127.0.0.1:privateKey={pem}"
secret_file = "{secret}"
timeout = 30
"""
        if node_port
        else ""
    )
    return f"""
[store]
path = "monitor.sqlite"
[analysis]
batch_size = 200
crisis_words = ["meltdown", "is down", "down again"]
{extra}
[web]
endpoint = "tcp:{port}:interface=127.0.0.1"
{nodes}
[[sources]]
kind = "replay"
name = "archive"
path = "posts.jsonl"
follow = true
[[topics]]
name = "Acme"
terms = ["acme"]
[[topics]]
name = "Globex"
terms = ["globex"]
"""


def tls_setup(tmp_path):
    """A self-signed certificate, its trust root, the node secret (owner-only) and two free ports."""
    pem, ca = self_signed(tmp_path)
    secret = tmp_path / "node-secret"
    secret.write_bytes(SECRET + b"\n")
    os.chmod(secret, 0o600)
    return pem, ca, secret, free_port(), free_port()


def stored_rows(path):
    db = sqlite3.connect(path)
    rows = db.execute("SELECT native_id, compound, pos, neu, neg, sentiment, labels FROM posts").fetchall()
    db.close()
    return rows


def check_scores(rows, texts, classifier):
    """Each stored post once, with exactly the scores and labels of local analysis."""
    assert len(rows) == len({r[0] for r in rows}) == len(texts)
    expected = analyze_texts(texts, classifier)
    for native_id, compound, pos, neu, neg, sentiment, labels in rows:
        a = expected[int(native_id)]
        assert (compound, pos, neu, neg, sentiment) == (a.compound, a.pos, a.neu, a.neg, a.sentiment), native_id
        assert tuple(labels.split()) == a.labels, native_id


@pytest_twisted.ensureDeferred
async def test_two_nodes_one_killed_mid_replay(reactor, tmp_path, shared_data):
    """Hub + two TLS nodes; SIGKILL one holding batches: every post stored once, scored as locally."""
    n = 8000
    half = n // 2
    texts = corpus(shared_data, n)
    classifier = Classifier(crisis_words=["meltdown", "is down", "down again"])
    pem, ca, secret, port, node_port = tls_setup(tmp_path)
    (tmp_path / "monitor.toml").write_text(config(port, node_port, pem, secret), encoding="utf-8")

    env = {"MONITOR_API_TOKEN": TOKEN}
    hub = Twistd(tmp_path, "hub", ["monitor", "--config", "monitor.toml"], env).start()
    node_args = [
        "monitor-node",
        "--hub",
        f"tls:localhost:{node_port}:trustRoots={ca}",
        "--secret-file",
        str(secret),
        "--workers",
        "1",
    ]
    a = Twistd(tmp_path, "node-a", node_args + ["--name", "node-a"]).start()
    b = Twistd(tmp_path, "node-b", node_args + ["--name", "node-b"]).start()
    procs = [hub, a, b]
    api = Api(reactor, port)
    orphans = []
    try:

        async def both_connected():
            nodes = await api.nodes()
            return len([x for x in nodes.values() if x["state"] == "connected"]) == 2 and nodes

        await wait_until(reactor, both_connected, procs=procs)

        # First half with both nodes working.
        (tmp_path / "posts.jsonl.new").write_text(lines(texts[:half], 0), encoding="utf-8")
        os.rename(tmp_path / "posts.jsonl.new", tmp_path / "posts.jsonl")

        async def first_half():
            return await api.stored() == half

        await wait_until(reactor, first_half, procs=procs)
        nodes = await api.nodes()
        assert nodes["node-a"]["posts_done"] > 0 and nodes["node-b"]["posts_done"] > 0

        # Freeze node-a so that it holds batches, append the second half,
        # and SIGKILL it once the hub shows batches in flight on it.
        orphans = psutil.Process(a.proc.pid).children(recursive=True)
        os.kill(a.proc.pid, signal.SIGSTOP)
        with open(tmp_path / "posts.jsonl", "a", encoding="utf-8") as f:
            f.write(lines(texts[half:], half))

        async def a_holds_work():
            return (await api.nodes())["node-a"]["batches_in_flight"] > 0

        await wait_until(reactor, a_holds_work, procs=[hub, b])
        assert await api.stored() < n
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(10)

        async def all_stored():
            return await api.stored() == n

        await wait_until(reactor, all_stored, procs=[hub, b])
        nodes = await api.nodes()
        assert nodes["node-a"]["state"] == "disconnected" and nodes["node-a"]["errors"] >= 1
        assert nodes["node-b"]["state"] == "connected"
        assert nodes["node-a"]["posts_done"] + nodes["node-b"]["posts_done"] == n
        metrics = await api.get("/metrics")
        assert "monitor_posts_analysed_locally_total 0.0" in metrics
        assert "monitor_posts_duplicate_total 0.0" in metrics
        assert "monitor_nodes_connected 1.0" in metrics
    finally:
        clean = [await p.stop(reactor) for p in (b, hub)]
        for p in orphans:  # node-a's forkserver and worker must not outlive it
            try:
                p.wait(10)
            except psutil.TimeoutExpired:
                p.kill()
                raise AssertionError(f"node-a left process {p.pid} behind")
    assert clean == [True, True], hub.output() + b.output()

    check_scores(stored_rows(tmp_path / "monitor.sqlite"), texts, classifier)


@pytest_twisted.ensureDeferred
async def test_hub_with_worker_processes(reactor, tmp_path, shared_data):
    """[analysis] workers = 1: the hub scores in a worker process, exactly as locally, and stops cleanly."""
    n = 1500
    texts = corpus(shared_data, n)
    classifier = Classifier(crisis_words=["meltdown", "is down", "down again"])
    port = free_port()
    (tmp_path / "monitor.toml").write_text(config(port, None, None, None, extra="workers = 1"), encoding="utf-8")
    (tmp_path / "posts.jsonl").write_text(lines(texts, 0), encoding="utf-8")
    hub = Twistd(tmp_path, "hub", ["monitor", "--config", "monitor.toml"], {"MONITOR_API_TOKEN": TOKEN}).start()
    api = Api(reactor, port)
    try:

        async def all_stored():
            return await api.stored() == n

        await wait_until(reactor, all_stored, procs=[hub])
        workers = [p for p in psutil.Process(hub.proc.pid).children(recursive=True)]
        assert workers, "the hub should have started worker processes"
        assert await api.nodes() == {}
    finally:
        clean = await hub.stop(reactor)
    assert clean, hub.output()
    # The pool's helpers (multiprocessing's resource tracker among them)
    # notice their owner's exit a moment later: wait a bounded while.
    _, alive = psutil.wait_procs(workers, timeout=10)

    def lingering(p):
        try:
            return p.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    assert not [p for p in alive if lingering(p)], alive
    check_scores(stored_rows(tmp_path / "monitor.sqlite"), texts, classifier)
    await deferLater(reactor, 0, lambda: None)


@pytest_twisted.ensureDeferred
async def test_a_node_applies_the_hubs_learned_models_as_the_hub_would(reactor, tmp_path, shared_data):
    """Hub with the demo's shipped corrections + one TLS node: the node gets the active models and scores
    every post with them, exactly as local analysis with those models (stored models read back)."""
    from monitor.learn.apply import apply_texts
    from monitor.learn.linear import LinearModel

    n = 600
    texts = corpus(shared_data, n)[: n - 3] + [
        "Acme charged me twice and support keeps closing my ticket",
        "Acme hat mir zweimal Geld abgebucht",
        "worst service ever, acme",
    ]
    langs = [None] * (n - 2) + ["de", "en"]
    classifier = Classifier(crisis_words=["meltdown", "is down", "down again"])
    pem, ca, secret, port, node_port = tls_setup(tmp_path)
    extra = '[learning]\ndelay = "1s"\nseed = "demo"\n'
    text = config(port, node_port, pem, secret).replace("[web]", extra + "[web]", 1)
    (tmp_path / "monitor.toml").write_text(text, encoding="utf-8")
    hub = Twistd(tmp_path, "hub", ["monitor", "--config", "monitor.toml"], {"MONITOR_API_TOKEN": TOKEN}).start()
    node = Twistd(
        tmp_path,
        "node-m",
        [
            "monitor-node",
            "--hub",
            f"tls:localhost:{node_port}:trustRoots={ca}",
            "--secret-file",
            str(secret),
            "--workers",
            "1",
            "--name",
            "node-m",
        ],
    ).start()
    procs = [hub, node]
    api = Api(reactor, port)
    try:

        async def node_holds_the_model():
            models = (await api.get("/api/v1/models"))["models"]
            active = [m for m in models if m["state"] == "active"]
            status = (await api.nodes()).get("node-m")
            return (
                active
                and status
                and status["state"] == "connected"
                and status["applies_models"]
                and status["models"]
                and active
            )

        active = await wait_until(reactor, node_holds_the_model, procs=procs)
        assert "sentiment" in {m["name"] for m in active}
        (tmp_path / "posts.jsonl.new").write_text("".join(
            json.dumps({"id": i, "text": t, "author": f"u{i % 41}", "created_at": 1.7e9 + i,
                        **({"lang": lang} if lang else {})}) + "\n"
            for i, (t, lang) in enumerate(zip(texts, langs))), encoding="utf-8")  # fmt: skip
        os.rename(tmp_path / "posts.jsonl.new", tmp_path / "posts.jsonl")

        async def all_stored():
            return (await api.get("/api/v1/stats"))["count"] >= n + 240

        await wait_until(reactor, all_stored, procs=procs)
        assert (await api.nodes())["node-m"]["posts_done"] == n
        assert "monitor_posts_analysed_locally_total 0.0" in await api.get("/metrics")
    finally:
        clean = [await p.stop(reactor) for p in (node, hub)]
    assert clean == [True, True], hub.output() + node.output()

    db = sqlite3.connect(tmp_path / "monitor.sqlite")
    models = {}
    for (stored,) in db.execute("SELECT model FROM learned_models WHERE state = 'active'"):
        m = LinearModel.from_json(stored)
        models[(m.name, m.language)] = m
    rows = {
        int(r[0]): r[1:]
        for r in db.execute(
            "SELECT native_id, sentiment, sentiment_by, labels, compound FROM posts WHERE network = 'archive'"
        )
    }
    db.close()
    expected = apply_texts(analyze_texts(texts, classifier), texts, langs, models)
    assert len(rows) == n
    for i, a in enumerate(expected):
        sentiment, who, labels, compound = rows[i]
        assert (sentiment, who, tuple((labels or "").split()), compound) == (a.sentiment, a.by, a.labels, a.compound), i
    by = [rows[i][1] for i in range(n)]
    assert by.count(f"model:{models[('sentiment', 'en')].version}") == n - 1 and by[-2] == "unscored"
    assert rows[n - 3][0] == "negative"  # VADER says positive; the model learned the demo's corrections
