"""
What every L{IAnalyzer} promises, on every provider and test double: the
thread pool (L{LocalAnalyzer}), the worker processes (L{ProcessAnalyzer}),
the node pool with a real analysis node connected over AMP on loopback,
the node pool with no node (its fallback to the hub's own analyzers), and
the hub's analyzer double of the node tests (L{RecordingLocal}).

The same posts get the same analysis as L{analyze_texts} gives (scores,
sentiment, labels), one per post, in order, also for batches the node pool
cuts into chunks; a provider that is a service refuses work with
L{AnalyzerNotRunning} before it starts and after it stops, and works again
once started again.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet.defer import gatherResults, maybeDeferred
from twisted.internet.endpoints import clientFromString
from twisted.internet.task import deferLater
from zope.interface.verify import verifyObject

from monitor.analysis import Classifier, analyze_texts
from monitor.analysis.local import AnalyzerNotRunning, LocalAnalyzer
from monitor.analysis.process import ProcessAnalyzer, to_row
from monitor.interfaces import IAnalyzer
from monitor.metrics import Metrics
from monitor.nodes.node import AnalysisNode
from monitor.nodes.pool import MAX_CHUNK_POSTS, NodePool
from tests.nodes.helpers import SECRET, RecordingLocal, SyncScorer, posts

WAIT = 20  # seconds any one step may take on a real reactor (worker processes start slowly under load)

CLASSIFIER = Classifier(crisis_words=["meltdown", "is down"])

TEXTS = [
    "acme is great, love it :)",
    "worst outage ever, acme is down again. total meltdown",
    "does anyone know if acme ships to Canada?",
    "I want to buy the new acme phone, where can I order it?",
    "",
    "<p>acme is <b>down</b> &lt;3</p>",
    "acme 😡😭 " * 40,
    "ACME!!! best. support. ever.",
    "Acme n'est pas terrible, franchement décevant",
    "meh",
]


class Provider:
    """One analyzer under test, and how to start and stop it."""

    def __init__(self, kind, analyzer, service=True, remote=None, cleanup=()):
        self.kind = kind
        self.analyzer = analyzer
        self.service = service
        #: For the node pool with a node: the scorer on the node, whose calls show the work went there.
        self.remote = remote
        self.cleanup = list(cleanup)


async def eventually(reactor, check, seconds=WAIT):
    for _ in range(int(seconds / 0.02)):
        if check():
            return
        await deferLater(reactor, 0.02, lambda: None)
    raise AssertionError("timed out")


async def node_pool_with_a_node(reactor):
    """A pool listening on loopback and a real node dialling it over TCP and AMP, registered."""
    local = LocalAnalyzer(CLASSIFIER, reactor=reactor)
    local.startService()
    pool = NodePool([local], CLASSIFIER, Metrics(), endpoint="tcp:0:interface=127.0.0.1", secret=SECRET,
                    timeout=WAIT, reactor=reactor)  # fmt: skip
    await maybeDeferred(pool.startService)
    port = pool._port.getHost().port
    node = AnalysisNode(clientFromString(reactor, f"tcp:127.0.0.1:{port}"), SECRET, 1, name="n1", reactor=reactor,
                        analyzer_factory=SyncScorer)  # fmt: skip
    node.startService()
    await eventually(reactor, lambda: [s["state"] for s in pool.status()] == ["connected"])

    async def stop():
        await maybeDeferred(node.stopService)
        if pool.running:
            await maybeDeferred(pool.stopService)
        await maybeDeferred(local.stopService)

    return Provider("nodes", pool, remote=lambda: node.analyzer, cleanup=[stop])


async def make_provider(kind, reactor):
    if kind == "local":
        return Provider(kind, LocalAnalyzer(CLASSIFIER, reactor=reactor))
    if kind == "processes":
        return Provider(kind, ProcessAnalyzer(CLASSIFIER, 1, reactor=reactor))
    if kind == "nodes":
        return await node_pool_with_a_node(reactor)
    if kind == "nodes-fallback":
        local = LocalAnalyzer(CLASSIFIER, reactor=reactor)
        local.startService()
        pool = NodePool([local], CLASSIFIER, Metrics(), reactor=reactor)
        return Provider(kind, pool, cleanup=[lambda: maybeDeferred(local.stopService)])
    assert kind == "double"
    return Provider(kind, RecordingLocal(CLASSIFIER), service=False)


KINDS = ["local", "processes", "nodes", "nodes-fallback", "double"]


@pytest_twisted.async_yield_fixture(params=KINDS)
async def provider(request, reactor):
    """A started analyzer of one provider, stopped after the test."""
    p = await make_provider(request.param, reactor)
    if p.service and not p.analyzer.running:
        await maybeDeferred(p.analyzer.startService)
    yield p
    if p.service and p.analyzer.running:
        await maybeDeferred(p.analyzer.stopService)
    for stop in p.cleanup:
        await stop()


def rows(analyses):
    return [to_row(a) for a in analyses]


def expected(texts):
    return rows(analyze_texts(texts, CLASSIFIER))


@pytest_twisted.ensureDeferred
async def test_provides_the_interface(provider):
    """verifyObject: analyze is there with its signature."""
    assert verifyObject(IAnalyzer, provider.analyzer)


@pytest_twisted.ensureDeferred
async def test_the_same_analysis_for_the_same_posts_in_order(provider, reactor):
    """Scores, sentiment and labels are those of analyze_texts with the hub's word lists, one per post, in order."""
    got = await provider.analyzer.analyze(posts(TEXTS)).addTimeout(WAIT, reactor)
    assert len(got) == len(TEXTS)
    assert rows(got) == expected(TEXTS)
    assert {a.by for a in got} == {"vader"}
    assert any("crisis" in a.labels for a in got) and any("question" in a.labels for a in got)
    if provider.remote is not None:
        assert provider.remote().calls, "the node did not analyse the batch"


@pytest_twisted.ensureDeferred
async def test_a_large_batch_keeps_its_order(provider, reactor):
    """A batch larger than a node chunk (so cut and sent in parts) comes back whole and in order."""
    texts = [f"{TEXTS[i % len(TEXTS)]} #{i}" for i in range(2 * MAX_CHUNK_POSTS + 17)]
    got = await provider.analyzer.analyze(posts(texts)).addTimeout(WAIT, reactor)
    assert rows(got) == expected(texts)


@pytest_twisted.ensureDeferred
async def test_an_empty_batch_is_an_empty_list(provider, reactor):
    """No posts, no analyses."""
    assert await provider.analyzer.analyze([]).addTimeout(WAIT, reactor) == []


@pytest_twisted.ensureDeferred
async def test_batches_at_once_each_get_their_own(provider, reactor):
    """Several batches in flight together are each answered with their own posts' analyses."""
    batches = [[f"{t} (batch {b})" for t in TEXTS[b:] + TEXTS[:b]] for b in range(4)]
    got = await gatherResults([provider.analyzer.analyze(posts(texts)) for texts in batches]).addTimeout(WAIT, reactor)
    assert [rows(g) for g in got] == [expected(texts) for texts in batches]


@pytest.mark.parametrize("kind", KINDS)
@pytest_twisted.ensureDeferred
async def test_refuses_work_unless_running_and_starts_again(kind, reactor):
    """A service analyzer fails with AnalyzerNotRunning before start and after stop, and works once started again."""
    p = await make_provider(kind, reactor)
    try:
        if p.service and not p.analyzer.running:
            with pytest.raises(AnalyzerNotRunning):
                await p.analyzer.analyze(posts(TEXTS[:2]))
            await maybeDeferred(p.analyzer.startService)
        got = await p.analyzer.analyze(posts(TEXTS[:2])).addTimeout(WAIT, reactor)
        assert rows(got) == expected(TEXTS[:2])
        if p.service:
            await maybeDeferred(p.analyzer.stopService)
            with pytest.raises(AnalyzerNotRunning):
                await p.analyzer.analyze(posts(TEXTS[:2]))
            await maybeDeferred(p.analyzer.startService)
            got = await p.analyzer.analyze(posts(TEXTS[2:5])).addTimeout(WAIT, reactor)
            assert rows(got) == expected(TEXTS[2:5])
            await maybeDeferred(p.analyzer.stopService)
    finally:
        if p.service and p.analyzer.running:
            await maybeDeferred(p.analyzer.stopService)
        for stop in p.cleanup:
            await stop()
