"""
The hub/node AMP protocol in memory: the handshake and its refusals, work
over the wire with the results of local analysis, AMP's value limit, and
nodes that vanish, stall or fail with batches in flight.  Driven with
twisted.test.iosim and Clock; no sockets, no processes.
"""

from __future__ import annotations

import json

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.protocols import amp
from twisted.python.failure import Failure
from twisted.test.iosim import connectedServerAndClient

from monitor.analysis import Classifier, analyze_texts, versions
from monitor.metrics import Metrics
from monitor.nodes import wire
from monitor.nodes.node import SILENT_HEARTBEATS, AnalysisNode, NodeProtocol
from monitor.nodes.pool import HANDSHAKE_TIMEOUT, HEARTBEAT, PRE_AUTH_BYTES, HubProtocol, NodePool
from tests.nodes.helpers import SECRET, FailingScorer, HeldScorer, LogCapture, RecordingLocal, SyncScorer, posts

CUSTOM = Classifier(crisis_words=["meltdown"])


class Setup:
    """A started pool on a Clock, and a way to connect nodes to it in memory."""

    def __init__(self, classifier=CUSTOM, timeout=10.0, secret=SECRET, clock=None):
        self.clock = clock or Clock()
        self.metrics = Metrics()
        self.local = RecordingLocal(classifier)
        self.pool = NodePool([self.local], classifier, self.metrics, secret=secret, timeout=timeout, reactor=self.clock)
        self.pool.startService()
        self.pumps = []

    def node(self, name="n1", secret=SECRET, scorer=SyncScorer, workers=1, node_versions=None):
        return AnalysisNode(
            object(), secret, workers, name=name, reactor=self.clock, analyzer_factory=scorer, versions=node_versions
        )

    def connect(self, node, handshake=True):
        client, server, pump = connectedServerAndClient(
            lambda: HubProtocol(self.pool), lambda: NodeProtocol(node), clock=self.clock
        )
        self.pumps.append(pump)
        client.fake, server.fake = client.transport, server.transport
        if handshake:
            node.handshake(client)
            pump.flush()
        return client, server, pump

    def flush(self):
        for _ in range(3):
            for pump in self.pumps:
                pump.flush()

    def counter(self, name, **labels):
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


class Outcome:
    """Catches a Deferred's result at once (AMP drops the connection on a failure nobody handles)."""

    def __init__(self, d):
        self.results = []
        d.addBoth(self._grab)

    def _grab(self, result):
        self.results.append(result)
        return None if isinstance(result, Failure) else result

    def get(self):
        assert self.results, "the Deferred has not fired"
        if isinstance(self.results[0], Failure):
            self.results[0].raiseException()
        return self.results[0]


def result_of(d):
    return Outcome(d).get()


def texts_of(n, prefix="acme"):
    return [f"{prefix} post {i}: {'love it :)' if i % 3 else 'worst outage ever, is it down?'}" for i in range(n)]


# --- the handshake ------------------------------------------------------------


def test_handshake_registers_the_node_with_the_hubs_word_lists():
    """A node with the secret registers, announces its capacity and versions, and gets the hub's classifier."""
    s = Setup()
    node = s.node(workers=3)
    client, server, pump = s.connect(node)
    assert client.is_registered and node.failures == 0 and node.registrations == 1
    (status,) = s.pool.status()
    assert status["name"] == "n1" and status["state"] == "connected"
    assert status["workers"] == 3 and status["capacity"] == 6
    assert status["versions"] == versions()
    assert node.digest == wire.classifier_digest(CUSTOM.to_dict())
    assert node.analyzer.classifier.to_dict() == CUSTOM.to_dict()
    assert s.counter("monitor_nodes_connected") == 1


def test_work_is_analysed_on_the_node_exactly_as_locally():
    """A batch sent to a node comes back equal to local analysis, with the hub's word lists."""
    s = Setup()
    node = s.node()
    s.connect(node)
    texts = texts_of(250) + ["total meltdown at acme", "<p>I &lt;3 acme</p>", "acme 😀😀 " * 40, "acme \ud800 odd"]
    d = s.pool.analyze(posts(texts))
    s.flush()
    assert result_of(d) == analyze_texts(texts, CUSTOM)
    assert "crisis" in result_of(d)[250].labels
    assert s.local.calls == []
    assert sum(len(c) for c in node.analyzer.calls) == len(texts)
    (status,) = s.pool.status()
    assert status["posts_done"] == len(texts) and status["batches_done"] == len(node.analyzer.calls) == 3
    assert s.counter("monitor_node_posts_total", node="n1") == len(texts)


def test_wrong_secret_is_refused_logged_and_never_given_work():
    """A node with another secret is refused at Register, the refusal logged and counted; work stays local."""
    s = Setup()
    node = s.node(secret=b"not the secret, not at all")
    with LogCapture() as log:
        client, server, pump = s.connect(node)
        s.flush()
    assert not client.is_registered and node.failures == 1
    assert server.fake.disconnected and client.fake.disconnected
    assert s.pool.status() == []
    assert s.counter("monitor_nodes_refused_total", reason="secret") == 1
    assert any("does not have the secret" in t for t in log.texts())
    assert any("AuthenticationFailed" in t for t in log.texts())
    d = s.pool.analyze(posts(["acme rocks"]))
    assert len(result_of(d)) == 1 and s.local.calls == [["acme rocks"]]
    assert node.analyzer is None


class RogueHub(amp.AMP):
    """A hub that does not know the secret: it answers the handshake with a made-up proof."""

    @wire.Hello.responder
    def hello(self, version, nonce):
        return {"version": wire.PROTOCOL_VERSION, "nonce": b"h" * wire.NONCE_BYTES}

    @wire.Register.responder
    def register(self, name, proof, workers, capacity, analyzers, versions, models=None):
        return {"proof": b"made up", "classifier": Classifier().to_dict(), "heartbeat": HEARTBEAT}


def test_node_refuses_a_hub_without_the_secret():
    """A hub whose proof does not match is dropped by the node, which never takes work from it."""
    s = Setup()
    node = s.node()
    client, server, pump = connectedServerAndClient(RogueHub, lambda: NodeProtocol(node), clock=s.clock)
    transport = client.transport
    with LogCapture() as log:
        node.handshake(client)
        pump.flush()
    assert not client.is_registered and node.failures == 1 and node.analyzer is None
    assert transport.disconnected
    assert any("the hub does not know the secret" in t for t in log.texts())


def test_protocol_version_mismatch_is_refused():
    """A Hello with another protocol version gets VersionMismatch and the connection closes."""
    s = Setup()
    node = s.node()
    client, server, pump = s.connect(node, handshake=False)
    with LogCapture() as log:
        answer = Outcome(
            client.callRemote(wire.Hello, version=wire.PROTOCOL_VERSION + 1, nonce=b"n" * wire.NONCE_BYTES)
        )
        pump.flush()
    with pytest.raises(wire.VersionMismatch, match="protocol version"):
        answer.get()
    assert client.fake.disconnected
    assert s.counter("monitor_nodes_refused_total", reason="version") == 1
    assert any("speaks protocol" in t for t in log.texts())


def test_analysis_version_mismatch_is_refused():
    """A node whose VADER or rules differ is refused, naming what differs, and given no work."""
    s = Setup()
    other = dict(versions(), vaderSentiment="3.3.1")
    node = s.node(node_versions=other)
    with LogCapture() as log:
        client, server, pump = s.connect(node)
    assert not client.is_registered and node.failures == 1
    assert s.pool.status() == [] and s.counter("monitor_nodes_refused_total", reason="version") == 1
    assert any("'3.3.1' on the node, '3.3.2' here" in t for t in log.texts())


def test_handshake_must_finish_in_time():
    """A connection that never registers is closed after the handshake timeout."""
    s = Setup()
    client, server, pump = s.connect(s.node(), handshake=False)
    s.clock.advance(HANDSHAKE_TIMEOUT)
    pump.flush()
    assert server.fake.disconnected
    assert s.counter("monitor_nodes_refused_total", reason="timeout") == 1


def test_flood_before_the_handshake_is_dropped():
    """An unauthenticated peer that sends more than the pre-auth limit is cut off."""
    s = Setup()
    client, server, pump = s.connect(s.node(), handshake=False)
    client.transport.write(b"\x00\x01a" * (PRE_AUTH_BYTES // 3 + 10))
    pump.flush()
    assert server.fake.disconnected
    assert s.counter("monitor_nodes_refused_total", reason="oversized") == 1


def test_register_without_hello_is_refused():
    """Register before Hello is an error; the node never joins."""
    s = Setup()
    client, server, pump = s.connect(s.node(), handshake=False)
    answer = Outcome(
        client.callRemote(
            wire.Register,
            name="x",
            proof=b"p",
            workers=1,
            capacity=1,
            analyzers=list(wire.ANALYZERS),
            versions=versions(),
        )
    )
    pump.flush()
    with pytest.raises(wire.Refused):
        answer.get()
    assert s.pool.status() == []


def test_work_before_registration_is_refused_by_the_node():
    """A node answers Analyze only after its handshake, and only for the word lists it was given."""
    s = Setup()
    node = s.node()
    client, server, pump = s.connect(node, handshake=False)
    answer = Outcome(server.callRemote(wire.Analyze, classifier="x", texts=["a"]))
    pump.flush()
    with pytest.raises(wire.NotRegistered):
        answer.get()
    node.handshake(client)
    pump.flush()
    answer = Outcome(server.callRemote(wire.Analyze, classifier="not the digest", texts=["a"]))
    pump.flush()
    with pytest.raises(wire.ClassifierMismatch):
        answer.get()


def test_reconnecting_node_replaces_its_old_connection():
    """A node connecting under a name already connected replaces the old connection."""
    s = Setup()
    first = s.connect(s.node(name="same"))
    second = s.connect(s.node(name="same"))
    s.flush()
    assert first[1].fake.disconnected and not second[1].fake.disconnected
    assert [st["state"] for st in s.pool.status()] == ["connected", "disconnected"]


# --- AMP's 64 KiB value limit -------------------------------------------------


def test_bigjson_spreads_a_large_value_over_keys():
    """A value beyond 65,535 bytes is cut into numbered keys, each within the limit, and comes back equal."""
    value = ["😀" * 20000, "x" * 70000, "\ud800 lone surrogate", {"k": [1.5, None]}]
    strings = amp.AmpBox()
    wire.BigJSON().toBox(b"texts", strings, {"texts": value}, None)
    assert len(strings) > 2 and all(len(v) <= amp.MAX_VALUE_LENGTH for v in strings.values())
    strings.serialize()
    out = {}
    wire.BigJSON().fromBox(b"texts", strings, out, None)
    assert out == {"texts": value} and not strings


def test_oversized_batch_travels_and_scores_like_local():
    """Posts far beyond AMP's limit (3,000-byte emoji posts, a 1 MB post) reach the node and score as locally."""
    s = Setup()
    node = s.node()
    s.connect(node)
    emoji = "acme " + "😡" * 750  # 3,005 bytes of UTF-8
    texts = [emoji] * 60 + ["acme " + "sad " * 250_000] + texts_of(40)
    d = s.pool.analyze(posts(texts))
    s.flush()
    assert result_of(d) == analyze_texts(texts, CUSTOM)
    # Chunks stay small: the emoji posts are split over several calls, and
    # the huge post goes alone.
    sizes = [len(c) for c in node.analyzer.calls]
    assert sum(sizes) == len(texts) and len(sizes) >= 4 and [1] == [n for n in sizes if n == 1]


# --- nodes that fail ---------------------------------------------------------


def test_node_vanishing_with_batches_in_flight_loses_nothing():
    """Chunks in flight on a node that disconnects go to the other node; each result is used once."""
    s = Setup()
    a, b = s.node("a", scorer=HeldScorer), s.node("b", scorer=HeldScorer)
    _, a_server, a_pump = s.connect(a)
    s.connect(b)
    texts = texts_of(400)
    d = s.pool.analyze(posts(texts))
    s.flush()
    assert len(a.analyzer.held) == 2 and len(b.analyzer.held) == 2  # capacity 2 each
    a_held = [t for t, _ in a.analyzer.held]
    a_server.transport.loseConnection()
    s.flush()
    assert [st["state"] for st in s.pool.status()] == ["connected", "disconnected"]
    while b.analyzer.held:
        b.analyzer.release()
        s.flush()
    assert result_of(d) == analyze_texts(texts, CUSTOM)
    assert all(any(t == c for c in b.analyzer.calls) for t in a_held), "a's chunks were re-sent to b"
    assert s.local.calls == []
    status = {st["name"]: st for st in s.pool.status()}
    assert status["a"]["errors"] == 2 and status["a"]["batches_in_flight"] == 0
    assert status["b"]["posts_done"] == 400


def test_last_node_vanishing_falls_back_to_local():
    """When the only node disconnects mid-batch, its chunks are analysed on the hub."""
    s = Setup()
    node = s.node(scorer=HeldScorer)
    _, server, pump = s.connect(node)
    texts = texts_of(150)
    d = s.pool.analyze(posts(texts))
    s.flush()
    node.analyzer.release()  # one chunk answered before the node dies
    s.flush()
    server.transport.loseConnection()
    s.flush()
    assert result_of(d) == analyze_texts(texts, CUSTOM)
    assert sum(len(c) for c in s.local.calls) == 50
    assert s.counter("monitor_posts_analysed_locally_total") == 50


def test_stalled_node_times_out_and_its_late_answer_is_ignored():
    """A node silent past the timeout is dropped, its chunk analysed elsewhere; the late answer changes nothing."""
    s = Setup(timeout=5.0)
    node = s.node(scorer=HeldScorer)
    client, server, pump = s.connect(node)
    d = s.pool.analyze(posts(texts_of(10)))
    s.flush()
    s.clock.advance(5.0)
    s.flush()
    results = result_of(d)
    assert results == analyze_texts(texts_of(10), CUSTOM) and len(s.local.calls) == 1
    assert server.fake.disconnected
    node.analyzer.release()  # too late: the connection is gone
    s.flush()
    status = s.pool.status()[0]
    assert status["state"] == "disconnected" and status["errors"] == 1
    assert result_of(d) is results and s.local.calls == [texts_of(10)]


def test_node_error_sends_the_chunk_to_another_node():
    """A chunk a node fails on is analysed by another node."""
    s = Setup()
    bad, good = s.node("bad", scorer=FailingScorer), s.node("good")
    s.connect(bad)
    s.connect(good)
    texts = texts_of(300)
    with LogCapture():
        d = s.pool.analyze(posts(texts))
        s.flush()
    assert result_of(d) == analyze_texts(texts, CUSTOM)
    status = {st["name"]: st for st in s.pool.status()}
    assert status["bad"]["errors"] >= 1 and status["bad"]["state"] == "connected"
    assert "workers on fire" in status["bad"]["last_error"]
    assert status["good"]["posts_done"] == 300 and s.local.calls == []


def test_silent_hub_makes_the_node_reconnect():
    """A registered node that hears nothing for three heartbeats drops the connection."""
    s = Setup()
    node = s.node()
    client, server, pump = s.connect(node)
    s.pool.stopService()  # no more pings from the hub, but the connection stays up in memory
    s.clock.advance(SILENT_HEARTBEATS * HEARTBEAT - 1)
    assert not client.fake.disconnecting
    s.clock.advance(1)
    assert client.fake.disconnecting


def test_idle_nodes_are_pinged():
    """The hub pings an idle node every heartbeat, which keeps the node's watchdog quiet."""
    s = Setup()
    node = s.node()
    client, server, pump = s.connect(node)
    for _ in range(SILENT_HEARTBEATS * 3):
        s.clock.advance(HEARTBEAT)
        s.flush()
    assert not client.fake.disconnecting and s.pool.status()[0]["state"] == "connected"


def test_stop_drops_nodes():
    """Stopping the pool closes every node connection and fires when they are gone."""
    s = Setup()
    s.connect(s.node("a"))
    s.connect(s.node("b"))
    d = s.pool.stopService()
    s.flush()
    assert result_of(d) is None
    assert [st["state"] for st in s.pool.status()] == ["disconnected", "disconnected"]


def test_status_is_json_ready():
    """The pool's status() is plain JSON for the API and the web UI."""
    s = Setup()
    s.connect(s.node())
    d = s.pool.analyze(posts(texts_of(5)))
    s.flush()
    result_of(d)
    status = json.loads(json.dumps(s.pool.status()))
    assert set(status[0]) == {
        "name",
        "address",
        "state",
        "connected_since",
        "disconnected_at",
        "workers",
        "capacity",
        "batches_in_flight",
        "batches_done",
        "posts_done",
        "errors",
        "last_error",
        "average_latency_ms",
        "versions",
        "applies_models",
        "models",
    }


def test_hub_stays_responsive_while_a_node_is_held():
    """While a node holds a batch, the hub's Deferred waits without blocking anything."""
    s = Setup()
    node = s.node(scorer=HeldScorer)
    s.connect(node)
    d = s.pool.analyze(posts(texts_of(3)))
    s.flush()
    assert isinstance(d, Deferred) and not d.called
    node.analyzer.release()
    s.flush()
    assert len(result_of(d)) == 3


def test_node_takes_new_word_lists_from_a_reconfigured_hub():
    """A node that reconnects to a hub with other word lists starts new workers with them; same lists, same workers."""
    s = Setup()
    node = s.node()
    s.connect(node)
    first = node.analyzer
    s.connect(node)
    assert node.analyzer is first and node.registrations == 2
    other = Setup(classifier=Classifier(crisis_words=["kaboom"]), clock=s.clock)
    client, server, pump = other.connect(node)
    assert node.analyzer is not first and node.analyzer.classifier.to_dict()["crisis_words"] == ["kaboom"]
    d = other.pool.analyze(posts(["acme kaboom"]))
    other.flush()
    assert result_of(d)[0].labels == ("crisis",)


def test_out_of_step_node_is_dropped():
    """A node that answers with ClassifierMismatch is dropped (it will handshake again); the chunk goes elsewhere."""
    s = Setup()
    node = s.node()
    client, server, pump = s.connect(node)
    node.digest = "something else"
    with LogCapture():
        d = s.pool.analyze(posts(["acme"]))
        s.flush()
    assert len(result_of(d)) == 1 and s.local.calls == [["acme"]]
    assert s.pool.status()[0]["state"] == "disconnected"
