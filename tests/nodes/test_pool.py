"""
The node pool's dispatch rules with fake nodes (no AMP): most free credit
first, in-flight limits, retries elsewhere, fallback to the hub's own
analyzers, heartbeats, status and metrics.
"""

from __future__ import annotations

import pytest
from twisted.internet.defer import fail
from twisted.internet.task import Clock
from zope.interface.verify import verifyClass, verifyObject

from monitor.analysis import Classifier, analyze_texts
from monitor.analysis.local import AnalyzerNotRunning
from monitor.interfaces import IAnalysisNode
from monitor.metrics import Metrics
from monitor.nodes.pool import HEARTBEAT, MAX_NODE_ATTEMPTS, AMPNode, NodePool, chunked
from tests.nodes.helpers import FakeNode, LogCapture, RecordingLocal, posts
from tests.nodes.test_protocol import result_of, texts_of


def make(*nodes, local=None, timeout=10.0):
    clock = Clock()
    metrics = Metrics()
    local = local if local is not None else [RecordingLocal()]
    pool = NodePool(local, Classifier(), metrics, timeout=timeout, reactor=clock)
    pool.startService()
    for node in nodes:
        pool.add_node(node)
    return clock, pool


def test_the_amp_node_and_the_fake_node_meet_the_interface():
    """The AMP node and the fake node provide IAnalysisNode (the pool's IAnalyzer: tests/analysis/test_contract.py)."""
    assert verifyClass(IAnalysisNode, AMPNode)
    assert verifyObject(IAnalysisNode, FakeNode("f"))


def test_without_nodes_the_batch_is_analysed_locally_whole():
    """With no node, the whole batch goes to the hub's analyzer in one call."""
    local = RecordingLocal()
    clock, pool = make(local=[local])
    texts = texts_of(300)
    assert result_of(pool.analyze(posts(texts))) == analyze_texts(texts, Classifier())
    assert local.calls == [texts]


def test_not_running_refuses():
    """A stopped pool refuses batches instead of hanging."""
    clock, pool = make()
    pool.stopService()
    with pytest.raises(AnalyzerNotRunning):
        result_of(pool.analyze(posts(["a"])))


def test_chunks_respect_post_and_byte_limits():
    """Batches are cut by post count and by bytes; a huge post travels alone."""
    runs = chunked(posts(["a"] * 250))
    assert [len(r) for r in runs] == [100, 100, 50]
    runs = chunked(posts(["x" * 20_000] * 5 + ["y" * 200_000, "z"]))
    assert [len(r) for r in runs] == [2, 2, 1, 1, 1]


def test_most_free_credit_wins_and_limits_hold():
    """Chunks go to the node with the most free credit, never beyond any node's capacity."""
    small, big = FakeNode("small", capacity=1), FakeNode("big", capacity=3)
    clock, pool = make(small, big)
    d = pool.analyze(posts(texts_of(700)))  # 7 chunks
    assert len(big.calls) == 3 and len(small.calls) == 1
    big.answer()
    assert len(big.calls) == 3 and len(small.calls) == 1  # the freed credit was used at once
    while big.calls or small.calls:
        (big if big.calls else small).answer()
    assert result_of(d) == analyze_texts(texts_of(700), Classifier())
    status = {s["name"]: s for s in pool.status()}
    assert status["big"]["batches_done"] + status["small"]["batches_done"] == 7


def test_a_chunk_is_not_retried_on_the_node_that_failed_it():
    """A failed chunk goes to a node that has not tried it; after every node failed, to the hub."""
    a, b = FakeNode("a"), FakeNode("b")
    local = RecordingLocal()
    clock, pool = make(a, b, local=[local])
    d = pool.analyze(posts(["one"]))
    first = a if a.calls else b
    other = b if first is a else a
    with LogCapture():
        first.calls.pop()[1].errback(RuntimeError("boom"))
        assert len(other.calls) == 1
        other.calls.pop()[1].errback(RuntimeError("boom"))
    assert result_of(d) == analyze_texts(["one"], Classifier()) and local.calls == [["one"]]
    assert MAX_NODE_ATTEMPTS >= 2


def test_malformed_answers_count_as_errors():
    """A node answering the wrong number of rows, or rows of the wrong shape, is not believed."""
    a = FakeNode("a")
    clock, pool = make(a)
    d = pool.analyze(posts(["x", "y"]))
    with LogCapture():
        a.calls.pop()[1].callback([[0.0, 0.0, 1.0, 0.0, "neutral", []]])
    assert result_of(d) == analyze_texts(["x", "y"], Classifier())
    assert pool.status()[0]["errors"] == 1 and "2 texts" in pool.status()[0]["last_error"]


def test_local_analyzers_are_tried_in_order():
    """If the hub's first analyzer (its worker processes) fails, the next one (threads) analyses the batch."""
    broken, threads = RecordingLocal(error=RuntimeError("pool broken")), RecordingLocal()
    clock, pool = make(local=[broken, threads])
    with LogCapture() as log:
        assert len(result_of(pool.analyze(posts(["a", "b"])))) == 2
    assert broken.calls and threads.calls
    assert any("trying the next one" in t for t in log.texts())


def test_batch_fails_when_nothing_can_analyse_it():
    """If every node and every local analyzer fail, the batch fails (once) so the pipeline sees it."""
    a = FakeNode("a")
    clock, pool = make(a, local=[RecordingLocal(error=RuntimeError("no"))])
    d = pool.analyze(posts(texts_of(150)))
    with LogCapture():
        a.calls.pop()[1].errback(RuntimeError("boom"))
        with pytest.raises(RuntimeError, match="no"):
            result_of(d)
        a.answer()  # the other chunk answers after the batch failed: ignored


def test_idle_node_that_misses_a_ping_is_dropped():
    """An idle node is pinged each heartbeat; one that does not answer within the timeout is dropped."""
    a = FakeNode("a")
    clock, pool = make(a, timeout=5.0)
    clock.advance(HEARTBEAT)
    assert len(a.pings) == 1
    a.pings.pop().callback({})
    clock.advance(HEARTBEAT)
    assert len(a.pings) == 1
    with LogCapture():
        clock.advance(5.0)
    assert a.disconnected and pool.status()[0]["state"] == "disconnected"
    # Work now stays on the hub.
    assert len(result_of(pool.analyze(posts(["a"])))) == 1


def test_busy_nodes_are_not_pinged():
    """A node with work in flight is not pinged (its answers prove it alive)."""
    a = FakeNode("a")
    clock, pool = make(a, timeout=100.0)
    pool.analyze(posts(["a"]))
    clock.advance(HEARTBEAT * 3)
    assert a.pings == []


def test_metrics_follow_the_nodes():
    """Connected nodes, batches, posts, errors and local posts appear in /metrics."""
    a = FakeNode("a")
    clock, pool = make(a)
    d = pool.analyze(posts(texts_of(150)))
    clock.advance(0.25)
    a.answer()
    with LogCapture():
        a.calls.pop()[1].errback(RuntimeError("x"))  # no other node: analysed locally
    result_of(d)
    text = pool.metrics.render().decode()
    assert "monitor_nodes_connected 1.0" in text
    assert 'monitor_node_batches_total{node="a"} 1.0' in text
    assert 'monitor_node_posts_total{node="a"} 100.0' in text
    assert 'monitor_node_errors_total{node="a"} 1.0' in text
    assert 'monitor_node_batches_in_flight{node="a"} 0.0' in text
    assert "monitor_posts_analysed_locally_total 50.0" in text
    assert 'monitor_node_batch_seconds_count{node="a"} 1.0' in text
    assert pool.status()[0]["average_latency_ms"] == 250.0


def test_departed_nodes_are_kept_for_a_while():
    """Nodes that left stay in status() as disconnected, newest first, up to a limit."""
    clock, pool = make()
    for i in range(40):
        node = FakeNode(f"n{i}")
        pool.add_node(node)
        clock.advance(1)
        pool.remove_node(node)
    status = pool.status()
    assert len(status) == 32 and status[0]["name"] == "n39"
    assert {s["state"] for s in status} == {"disconnected"}


def test_synchronous_failures_do_not_lose_chunks():
    """A node whose calls fail at once (a connection just closed) re-enters dispatch safely."""

    class Dead(FakeNode):
        def analyze(self, texts):
            return fail(ConnectionError("gone"))

    dead, alive = Dead("dead", capacity=5), FakeNode("alive", capacity=1)
    clock, pool = make(dead, alive)
    with LogCapture():
        d = pool.analyze(posts(texts_of(500)))
        while alive.calls:
            alive.answer()
    assert result_of(d) == analyze_texts(texts_of(500), Classifier())


def test_posts_a_node_analysed_get_their_story_features_here():
    """Nodes send no story features: with stories on, the pool works them out for what a node answered."""
    from monitor.stories import features

    node = FakeNode("n", capacity=1)
    clock = Clock()
    pool = NodePool([RecordingLocal()], Classifier(), Metrics(), reactor=clock, features=features)
    pool.startService()
    pool.add_node(node)
    texts = texts_of(150)
    batch = posts(texts)
    batch[1].lang = "en"
    d = pool.analyze(batch)
    while node.calls:
        node.answer()
    results = result_of(d)
    assert results == analyze_texts(texts, Classifier())
    assert [a.features for a in results] == [features(p.text, p.lang) for p in batch]
