"""
L{monitor.web.tryit}: the pieces a highlighted post is made of, and what a
draft topic gains and loses against its saved version.
"""

import pytest
from jinja2 import Environment, FileSystemLoader, select_autoescape

from monitor.model import Post, Topic
from monitor.web.forms import topic_form
from monitor.web.tryit import post_segments, segments, try_draft
from monitor.query import parse
from tests.conftest import ROOT


def post(text, n=0, **kw):
    return Post(source="inbox", network="t", native_id=str(n), text=text, author="a", created_at=1000.0 - n, **kw)


def render(pieces):
    env = Environment(
        loader=FileSystemLoader(str(ROOT / "monitor" / "web" / "templates")), autoescape=select_autoescape(["html"])
    )
    return env.from_string('{% from "_marked.html" import marked %}{{ marked(s) }}').render(s=pieces)


def test_segments_cut_the_text_as_written():
    """Marked tokens come back as written (accents, case, #), neighbours joined, the rest untouched."""
    text = "Café ACME: #refund now"
    assert segments(text, {0, 1, 2}) == [("Café ACME: #refund", True), (" now", False)]
    assert segments(text, {1}) == [("Café ", False), ("ACME", True), (": #refund now", False)]
    assert segments(text, set()) == [(text, False)]
    assert "".join(p for p, _ in segments(text, {0, 3})) == text


def test_hostile_text_stays_text():
    """Markup in a post is escaped piece by piece, marked or not; no tag of the post survives."""
    text = '<img src=x onerror=alert(1)> acme <script>alert(2)</script> "><b>acme</b>'
    pieces = post_segments(parse("acme"), {"text": text, "source": "inbox"})
    assert [p for p, hit in pieces if hit] == ["acme", "acme"]
    html = render(pieces)
    assert "<img" not in html and "<script" not in html and "<b>" not in html
    assert html.count("<mark>acme</mark>") == 2
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_try_draft_gains_and_loses():
    """Against the saved version, a draft says which posts it gains and which it loses, and why each matched."""
    posts = [
        post("acme refunds are slow", 0),
        post("acme outage today", 1),
        post("acme refund delayed", 2),
        post("globex refund", 3),
    ]
    current = Topic("Acme", query="acme refund*")
    draft = Topic("Acme", query="acme (refund* OR outage) -delayed")
    tried = try_draft(draft, current, posts)
    assert (tried["checked"], tried["count"], tried["current_count"]) == (4, 2, 2)
    assert [p["segments"] for p in tried["gained"]] == [[("acme outage", True), (" today", False)]]
    assert [p["why"] for p in tried["gained"]] == [["acme", "outage"]]
    assert [p["why"] for p in tried["lost"]] == [["acme", "refund*"]]  # what the saved version matched on
    assert [p["segments"][-1] for p in tried["lost"]] == [(" delayed", False)]
    assert [p["why"] for p in tried["posts"]] == [["acme", "refund*"], ["acme", "outage"]]


def test_try_draft_of_a_new_topic_and_terms():
    """A new topic has nothing to compare with; a topic's terms say which one matched."""
    tried = try_draft(Topic("New", terms=("acme", "globex")), None, [post("globex refund"), post("nothing", 1)])
    assert tried["compared"] is False and tried["gained"] == tried["lost"] == []
    assert [p["why"] for p in tried["posts"]] == [["globex"]]


def test_try_draft_with_field_filters():
    """Field filters of a query look at the stored post's fields."""
    posts = [post("acme", 0, likes=150), post("acme", 1, likes=3)]
    tried = try_draft(Topic("Acme", query="acme likes:>=100"), None, posts)
    assert tried["count"] == 1 and tried["posts"][0]["why"] == ["acme", "likes:>=100"]


@pytest.mark.parametrize("query,position", [("acme AND (refund", 17), ("acme NEAR/x b", 11), ("x* OR acme", 1)])
def test_topic_form_reports_a_bad_query_at_the_field(query, position):
    """A query that does not parse is shown on the query field with its position and what was expected."""
    topic, errors, values = topic_form({"name": ["Q"], "query": [query]}, [], set())
    assert topic is None and list(errors) == ["query"]
    assert errors["query"].startswith(f"At position {position}: expected ")
    assert values["query"] == query


def test_topic_form_takes_a_query_alone_or_with_terms():
    """A topic may have only a query, or terms and a query; it needs one of them."""
    topic, errors, _ = topic_form({"name": ["Q"], "query": [" acme NEAR/3 outage "]}, [], set())
    assert errors == {} and topic.query == "acme NEAR/3 outage" and topic.terms == ()
    topic, errors, _ = topic_form({"name": ["Q"], "terms": ["acme"], "query": ["refund*"]}, [], set())
    assert errors == {} and (topic.terms, topic.query) == (("acme",), "refund*")
    topic, errors, _ = topic_form({"name": ["Q"]}, [], set())
    assert "or a query" in errors["terms"]
