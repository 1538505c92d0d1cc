"""
Learned models travel to analysis nodes: the hub sends the active set (its
plain JSON and tag) at registration and at every change, a node with
another set gets no work until it holds the hub's, and a node's answers
equal local analysis with the same models.  In memory (iosim, Clock), with
the real analysis and the real model code on both sides.
"""

from __future__ import annotations

import json

from twisted.internet.defer import Deferred
from twisted.test.iosim import connectedServerAndClient

from monitor.analysis import analyze_texts
from monitor.learn.apply import ModelSet, apply_texts
from monitor.learn.linear import LinearModel
from monitor.model import Post
from monitor.nodes import wire
from monitor.nodes.node import NodeProtocol
from monitor.nodes.pool import HubProtocol
from tests.nodes.helpers import FakeNode
from tests.nodes.test_protocol import CUSTOM, Setup, result_of

TEXTS = [
    "Acme charged me twice and support keeps closing my ticket",
    "worst service ever, acme",
    "I love my new acme phone :)",
    "acme support fixed it in minutes, thanks",
    "total meltdown at acme",
    "Acme hat mir zweimal Geld abgebucht",
    "is acme down? charged again",
]
LANGS = [None, "en", "en-GB", None, None, "de", None]


def model_set(n: int) -> dict:
    """A sentiment model and a learned "billing" label, version n (weights differ per version)."""
    sentiment = LinearModel(
        name="sentiment", version=f"sentiment-{n}", classes=("positive", "neutral", "negative"),
        bias=[0.0, 0.05 * n, 0.0],
        weights={"w:support": [-10.0, 0.0, 10.0], "w:charged": [-10.0, 0.0, 15.0 * n], "w:worst": [-20.0, 0.0, 20.0],
                 "v:compound": [1.0, 0.0, -1.0]},
    )  # fmt: skip
    billing = LinearModel(name="billing", version=f"billing-{n}", classes=("no", "yes"), bias=[0.2, 0.0],
                          weights={"w:charged": [0.0, 10.0 if n == 1 else 0.0], "w:twice": [0.0, 10.0]})  # fmt: skip
    return {("sentiment", "en"): sentiment, ("billing", "en"): billing}


def batch():
    return [Post(source="s", network="s", native_id=str(i), text=t, author="a", created_at=1.7e9 + i, lang=lang)
            for i, (t, lang) in enumerate(zip(TEXTS, LANGS))]  # fmt: skip


def local(models):
    """What the hub's own analysis gives with these models."""
    return apply_texts(analyze_texts(TEXTS, CUSTOM), TEXTS, LANGS, models)


class HeldModels(NodeProtocol):
    """A node end that takes the hub's models only when the test says so."""

    held: list

    @wire.Models.responder
    def models(self, tag, models):
        d = Deferred()
        d.addCallback(lambda _: NodeProtocol.models(self, tag, models))
        self.held.append(d)
        return d


def connect(s, node, protocol=NodeProtocol):
    client, server, pump = connectedServerAndClient(lambda: HubProtocol(s.pool), lambda: protocol(node), clock=s.clock)
    s.pumps.append(pump)
    node.handshake(client)
    pump.flush()
    return client


def holding(models):
    """A pool with these active models and one node that holds them."""
    s = Setup()
    s.pool.set_models(models)
    node = s.node()
    connect(s, node)
    s.flush()
    return s, node


def test_a_node_given_the_models_answers_exactly_as_local_analysis():
    s = Setup()
    v1 = model_set(1)
    s.pool.set_models(v1)
    node = s.node()
    connect(s, node)
    s.flush()
    assert node.models.tag == ModelSet(v1).tag != ""
    assert node.models.versions == {"billing": "billing-1", "sentiment": "sentiment-1"}
    d = s.pool.analyze(batch())
    s.flush()
    got = result_of(d)
    assert s.local.calls == [] and sum(len(c) for c in node.analyzer.calls) == len(TEXTS)
    assert got == local(v1)
    # The models did change answers: VADER calls the flagship complaint positive.
    assert analyze_texts(TEXTS[:1], CUSTOM)[0].sentiment == "positive"
    assert (got[0].sentiment, got[0].by) == ("negative", "model:sentiment-1") and "billing" in got[0].labels
    assert (got[5].sentiment, got[5].by) == (None, "unscored")
    # The same batch with no node: the hub's own analysis, same answers.
    alone = Setup()
    alone.pool.set_models(v1)
    d = alone.pool.analyze(batch())
    assert result_of(d) == got and alone.local.calls
    (status,) = s.pool.status()
    assert status["applies_models"] and status["models"] == ModelSet(v1).tag


def test_after_an_activation_the_node_holds_the_new_set_before_more_work():
    s, node = holding(model_set(1))
    s.pool.set_models(model_set(2))
    # Sent, not yet answered: this batch is done at the hub with the new set.
    d = s.pool.analyze(batch())
    assert result_of(d) == local(model_set(2)) and len(s.local.calls) == 1 and node.analyzer.calls == []
    s.flush()
    assert node.models.tag == ModelSet(model_set(2)).tag
    d = s.pool.analyze(batch())
    s.flush()
    got = result_of(d)
    assert got == local(model_set(2)) and len(s.local.calls) == 1 and len(node.analyzer.calls) == 1
    assert {a.by for a in got} >= {"model:sentiment-2"} and "billing" not in got[6].labels


def test_a_node_announcing_a_stale_set_gets_no_work_until_it_holds_the_current_one():
    s = Setup()
    s.pool.set_models(model_set(2))
    node = s.node()
    node.models = ModelSet(model_set(1))  # what it held before the hub moved on
    HeldModels.held = []
    connect(s, node, HeldModels)
    s.flush()
    (status,) = s.pool.status()
    assert status["state"] == "connected" and status["models"] == ModelSet(model_set(1)).tag
    assert len(HeldModels.held) == 1  # it was sent the new set
    for _ in range(2):
        d = s.pool.analyze(batch())
        s.flush()
        assert result_of(d) == local(model_set(2))
    assert node.analyzer.calls == [] and len(s.local.calls) == 2
    HeldModels.held.pop().callback(None)
    s.flush()
    assert node.models.tag == ModelSet(model_set(2)).tag
    d = s.pool.analyze(batch())
    s.flush()
    assert result_of(d) == local(model_set(2)) and len(node.analyzer.calls) == 1 and len(s.local.calls) == 2


def test_a_node_that_lost_its_models_refuses_the_batch_and_is_sent_them_again():
    s, node = holding(model_set(1))
    node.models = ModelSet({})  # out of step (as after a node-side reset)
    d = s.pool.analyze(batch())
    s.flush()
    assert result_of(d) == local(model_set(1))  # nothing lost: done at the hub
    assert node.models.tag == ModelSet(model_set(1)).tag  # and the node was sent the set
    (status,) = s.pool.status()
    assert status["state"] == "connected" and "holds the models" in status["last_error"]
    d = s.pool.analyze(batch())
    s.flush()
    assert result_of(d) == local(model_set(1)) and len(node.analyzer.calls) == 1


def test_an_older_node_without_the_models_analyzer_has_them_applied_at_the_hub():
    s = Setup()
    s.pool.set_models(model_set(1))
    old = FakeNode("old")
    s.pool.add_node(old)
    d = s.pool.analyze(batch())
    texts, _ = old.calls[0]
    assert texts == TEXTS
    old.answer(classifier=CUSTOM)
    assert result_of(d) == local(model_set(1)) and s.local.calls == []


def test_models_travel_as_plain_json():
    """What crosses the wire is the models' JSON, which any reader can parse back to the same set."""
    payload = ModelSet(model_set(1)).payload()
    assert [m["format"] for m in payload] == ["monitor-linear-model/1"] * 2
    assert ModelSet.from_payload(json.loads(json.dumps(payload))).tag == ModelSet(model_set(1)).tag
    box = wire.Models.makeArguments({"tag": "t", "models": payload}, None)
    assert json.loads(box[b"models"]) == payload


def test_a_node_refuses_models_it_cannot_read():
    s = Setup()
    node = s.node()
    client = connect(s, node)
    s.flush()
    bad = ModelSet(model_set(1)).payload()
    bad[0]["bias"] = [1.0]
    try:
        client.models(tag="x", models=bad)
    except wire.ModelsRefused as e:
        assert "bias" in str(e)
    else:
        raise AssertionError("accepted a broken model")
    assert node.models.tag == ""
