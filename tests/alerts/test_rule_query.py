"""
The C{query} key of alert rules: a post rule fires only on posts that
satisfy its topic query; a keyword rule may be only a query.  Through the
rules themselves, the engine (live and backtest), the JSON API and the
rule form.
"""

import re

import pytest

from monitor.alerts.config import check_rule_spec
from monitor.alerts.rules import Rule
from tests.alerts.helpers import T0, post, settle
from tests.alerts.test_api import api  # noqa: F401 (fixture)
from tests.web.test_alert_pages import rule_form, web  # noqa: F401 (fixture)


def rule(**spec):
    spec.setdefault("cooldown", "30m")
    return Rule(spec)


@pytest.mark.parametrize("spec,text,hit", [
    ({"type": "keyword", "query": "acme (refund* OR outage) -giveaway"}, "acme refunds are slow", True),
    ({"type": "keyword", "query": "acme (refund* OR outage) -giveaway"}, "acme refund giveaway", False),
    ({"type": "keyword", "query": "acme (refund* OR outage) -giveaway"}, "acme is fine", False),
    ({"type": "keyword", "phrases": ["acme"], "query": "outage NEAR/3 acme"}, "acme had an outage", True),
    ({"type": "keyword", "phrases": ["acme"], "query": "outage NEAR/3 acme"}, "acme is fine today, we heard of no outage", False),
    ({"type": "keyword", "labels": ["crisis"], "query": "fire"}, "fire at acme", True),
    ({"type": "keyword", "labels": ["crisis"], "query": "fire"}, "flood at acme", False),
])  # fmt: skip
def test_keyword_rule_with_a_query(spec, text, hit):
    """A keyword rule of only a query fires on what the query matches; with phrases or labels, on both."""
    assert rule(name="r", **spec).matches(post(1, T0, text=text, labels=("crisis",))) is hit


def test_other_post_rules_need_the_query_too():
    """Influencer, engagement and purchase-intent rules fire only on posts that also satisfy the query."""
    loud = rule(name="r", type="influencer", min_followers=1000, verified=False, sentiment="any", query="refund*")
    assert loud.matches(post(1, T0, text="I want a refund", followers=5000))
    assert not loud.matches(post(1, T0, text="hello", followers=5000))
    assert not loud.matches(post(1, T0, text="I want a refund", followers=5))
    liked = rule(name="r", type="engagement", likes=10, query="acme likes:>=100")
    assert liked.matches(post(1, T0, text="acme", likes=150))
    assert not liked.matches(post(1, T0, text="acme", likes=50))
    leads = rule(name="r", type="purchase_intent", min_followers=0, query="-author:spammer")
    assert leads.matches(post(1, T0, labels=("purchase_intent",), author="real"))
    assert not leads.matches(post(1, T0, labels=("purchase_intent",), author="spammer"))


def test_a_bad_query_names_the_key_with_its_position():
    """A rule whose query does not parse is refused at rule.query, with the position and what was expected."""
    _, problems = check_rule_spec({"name": "r", "type": "keyword", "query": "acme AND (refund"}, {"Acme"}, set())
    assert problems == [
        "rule.query: does not parse: at position 17: expected a ) to close the ( at position 10, "
        "found the end of the query"
    ]
    _, problems = check_rule_spec({"name": "r", "type": "volume_spike", "query": "acme"}, {"Acme"}, set())
    assert [p for p in problems if p.startswith("rule.query: unknown key")]


def test_live_and_backtest_fire_on_the_query(api):  # noqa: F811
    """The engine opens an incident for a query rule's hits only, and a backtest over stored posts agrees."""
    spec = {"name": "refunds", "type": "keyword", "query": "refund* -giveaway", "cooldown": "5m"}
    code, body = api.call("POST", "/api/v1/rules", spec)
    assert code in (200, 201), body
    assert api.engine.get_rule("refunds").spec["query"] == "refund* -giveaway"
    posts = [
        post(1, T0 + 1, text="acme refund please"),
        post(2, T0 + 2, text="acme refund giveaway"),
        post(3, T0 + 3, text="acme is fine"),
        post(4, T0 + 4, text="refunds take weeks"),
    ]
    api.engine.posts_stored(posts)
    settle(api.clock, 10)
    (incident,) = [i for i in api.engine.detector.book.open.values() if i.rule == "refunds"]
    assert incident.hits == 2
    api.engine.store.store.add_posts(posts)
    code, body = api.call("POST", "/api/v1/backtest", {"rule": "refunds", "since": T0, "until": T0 + 3600})
    assert code == 200 and body["fired"] == 1 and body["incidents"][0]["posts"] == 2
    code, body = api.call("POST", "/api/v1/rules", dict(spec, name="bad", query="refund NEAR/x acme"))
    assert code == 400 and body["problems"] == [
        "rule.query: does not parse: at position 13: expected a whole number of words, found 'x acme'"
    ]


def test_rule_form_has_a_query_field(web):  # noqa: F811
    """The rule form offers the query, shows a bad one next to the field, and backtests a good one."""
    code, body, _ = web.get("/alerts/rules/new")
    assert code == 200 and 'id="field-query"' in body
    code, body, _ = web.post("/alerts/rules/save", rule_form(name="q", query="acme AND ("))
    assert code == 400
    assert re.search(r'id="error-query"[^>]*>does not parse: at position 11: expected a word', body)
    assert 'value="acme AND ("' in body
    web.engine.store.store.add_posts(
        [post(1, T0 - 7200, text="acme refund never came"), post(2, T0 - 3600, text="acme ok")]
    )
    form = rule_form(name="q", query="acme refund*", cooldown="1m", action="backtest", period="24h")
    code, body, _ = web.post("/alerts/rules/save", form)
    assert code == 200 and "would have fired 1 time" in body
    code, _, _ = web.post("/alerts/rules/save", rule_form(name="q", query="acme refund*"))
    assert code == 303 and web.engine.get_rule("q").spec["query"] == "acme refund*"
    code, body, _ = web.get("/alerts/rules/q/edit")
    assert 'value="acme refund*"' in body
