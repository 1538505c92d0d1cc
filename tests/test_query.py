"""
The topic query language (monitor.query) and its use in the matcher: a
table of queries and texts, bad queries with their positions, and
properties (De Morgan, the automaton never loses a match).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from monitor.match import Matcher
from monitor.model import Post, Topic
from monitor.query import And, Doc, Near, Not, Or, QueryError, evaluate, highlights, parse, to_text
from monitor.words import token_spans


def post(text, **kw):
    fields = dict(source="demo", network="demo", native_id="1", text=text, author="alice", created_at=0.0)
    fields.update(kw)
    return Post(**fields)


def holds(query, text, **kw):
    return evaluate(parse(query), Doc(post(text, **kw)))


# (query, text, expected): every operator, nesting, precedence, NEAR at the
# edges of a post, wildcards next to punctuation.
CASES = [
    # words: case, accents, whole words, hashtag and handle forms
    ("acme", "I love ACME", True),
    ("acme", "acme's new phone", True),
    ("acme", "acmeville is far", False),
    ("acme", "superacme", False),
    ("acme", "so #acme", True),
    ("acme", "ask @acme", True),
    ("cafe", "Café au lait", True),
    ("café", "CAFE", True),
    ("#acme", "acme alone", False),
    ("#acme", "#Acme rocks", True),
    ("@acmesupport", "cc @acmesupport@mastodon.social", True),
    ("@acmesupport", "acmesupport is slow", False),
    ("@acmesupport", "@acmesupport2", False),
    ('"charged twice"', "I was Charged. Twice!", True),
    ('"charged twice"', "charged me twice", False),
    ("acme-cloud", "the acme cloud", True),
    ("\u201ccharged twice\u201d", "charged twice", True),
    # AND, adjacency, OR, NOT, -word
    ("acme AND refund", "acme refund", True),
    ("acme AND refund", "acme only", False),
    ("acme refund", "refund from acme", True),
    ("acme refund", "refund only", False),
    ("acme OR globex", "globex", True),
    ("acme OR globex", "initech", False),
    ("acme NOT giveaway", "acme giveaway", False),
    ("acme NOT giveaway", "acme refund", True),
    ("acme -giveaway", "acme #giveaway", False),
    ("acme -giveaway", "acme prize", True),
    ('acme -"free stuff"', "acme free stuff", False),
    ('acme -"free stuff"', "acme free", True),
    ("NOT acme", "globex", True),
    ("NOT acme", "acme", False),
    ("NOT NOT acme", "acme", True),
    ("-(acme OR globex) initech", "initech and globex", False),
    ("-(acme OR globex) initech", "initech alone", True),
    ("acme and refund", "acme refund and", True),  # lower-case and is a word
    ("acme and refund", "acme refund", False),
    ("a-b", "a b", True),  # a hyphen inside a word is no NOT
    # precedence: NOT > AND > OR
    ("acme OR globex refund", "acme", True),
    ("acme OR globex refund", "globex", False),
    ("acme OR globex refund", "globex refund", True),
    ("(acme OR globex) refund", "acme", False),
    ("(acme OR globex) refund", "acme refund", True),
    ("NOT acme refund", "refund", True),
    ("NOT acme refund", "acme refund", False),
    ("NOT acme OR refund", "acme refund", True),
    ("NOT acme OR refund", "acme", False),
    ("acme AND globex OR initech AND hooli", "initech hooli", True),
    ("acme AND globex OR initech AND hooli", "acme hooli", False),
    # nesting
    ('(acme OR @acmesupport) AND (refund OR "charged twice") NOT giveaway', "@acmesupport charged twice", True),
    ('(acme OR @acmesupport) AND (refund OR "charged twice") NOT giveaway', "acme refund giveaway", False),
    ('(acme OR @acmesupport) AND (refund OR "charged twice") NOT giveaway', "acmesupport refund", False),
    ("((acme OR (globex AND initech)) AND NOT (hooli OR umbrella))", "globex initech", True),
    ("((acme OR (globex AND initech)) AND NOT (hooli OR umbrella))", "globex initech umbrella", False),
    # NEAR/n: "a b" are 1 apart, either order; ONEAR keeps the order
    ("outage NEAR/1 acme", "outage acme", True),
    ("outage NEAR/1 acme", "acme outage", True),
    ("outage NEAR/1 acme", "outage at acme", False),
    ("outage NEAR/2 acme", "outage at acme", True),
    ("outage NEAR/3 acme", "acme had a big outage", False),
    ("outage NEAR/4 acme", "acme had a big outage", True),
    ("outage NEAR/3 acme", "outage", False),
    ("outage NEAR/3 acme", "acme", False),
    ("outage NEAR/3 acme", "Outage! ... #acme", True),  # punctuation is no word
    ("outage NEAR/1 acme", "outage", False),  # at the end of the post
    ("outage NEAR/1 acme", "acme", False),  # at the start
    ("acme NEAR/1 acme", "acme", False),  # two places, not one
    ("acme NEAR/1 acme", "acme acme", True),
    ("outage ONEAR/2 acme", "outage at acme", True),
    ("outage ONEAR/2 acme", "acme at outage", False),
    ('"service outage" NEAR/2 acme', "service outage at acme", True),
    ('"service outage" NEAR/1 acme', "service outage at acme", False),
    ('acme NEAR/1 "service outage"', "acme service outage", True),
    ("(outage OR down) NEAR/2 (acme OR globex)", "globex is down", True),
    ("(outage OR down) NEAR/2 (acme OR globex)", "globex is not down", False),
    ("outage NEAR/2 acme NEAR/2 refund", "outage at acme no refund", True),
    ("outage NEAR/2 acme NEAR/2 refund", "outage at acme but, sadly, no refund", False),
    ("NOT outage NEAR/1 acme", "outage acme", False),
    ("NOT outage NEAR/1 acme", "outage at acme", True),
    # wildcards, also next to punctuation and as hashtags
    ("refund*", "Refunds!", True),
    ("refund*", "(refunded)", True),
    ("refund*", "refund.", True),
    ("refund*", "nonrefundable", False),
    ("refund*", "#refunding now", True),
    ("delay*", "so #delayed", True),
    ("delay*", "@delayed_bot", True),
    ("colo?r", "colour, color.", True),
    ("colo?r", "colr", False),
    ("colo?r", "colouur", False),
    ("colo?r", "colo-r", False),
    ("*fund", "refund", True),
    ("re*nd", "rescind", True),
    ("#refund*", "refunds", False),
    ("#refund*", "#refunds", True),
    ('"refund* please"', "refunds, please!", True),
    ('"refund* please"', "refunds now please", False),
    # fuzzy: one edit, words of 5+ letters
    ("globex~1", "globbex", True),
    ("globex~1", "glbex", True),
    ("globex~1", "golbex", True),
    ("globex~1", "glovex", True),
    ("globex~1", "gloooex", False),
    ("globex~1", "#glovex", True),
    ("globex~1", "@glovex", False),
    ("globex~1", "@globex", True),
    # field filters
    ("acme lang:en", "acme", False),  # an untagged post is in no language
    ("lang:en", "x", False),
    ("lang:und", "x", True),
    ("author:alice", "x", True),
    ("author:@ALICE", "x", True),
    ("author:bob", "x", False),
    ("author:ali*", "x", True),
    ("source:demo", "x", True),
    ("source:x", "x", False),
    ("likes:>=100", "x", False),
    ("NOT likes:>=100", "x", True),
    ("verified:false", "x", True),
    ("verified:true", "x", False),
    ("has:link", "see https://acme.example/a", True),
    ("has:link", "see www.acme.example", True),
    ("has:link", "no link", False),
    ("has:geo", "x", False),
    ("followers:>=10", "x", False),  # unknown follower count
]


@pytest.mark.parametrize("query, text, expected", CASES)
def test_table(query, text, expected):
    """
    Each query holds for its text exactly as the table says, evaluated
    directly and through the compiled matcher (automaton and all).
    """
    assert holds(query, text) is expected
    matcher = Matcher([Topic("t", query=query)])
    assert matcher.match(post(text)) == (("t",) if expected else ())


FIELD_CASES = [
    ("likes:>=100", dict(likes=100), True),
    ("likes:>=100", dict(likes=99), False),
    ("likes:>100", dict(likes=100), False),
    ("likes:<5", dict(likes=4), True),
    ("likes:<=5", dict(likes=5), True),
    ("likes:5", dict(likes=5), True),
    ("likes:=5", dict(likes=6), False),
    ("reposts:>=10", dict(reposts=10), True),
    ("replies:>=5", dict(replies=4), False),
    ("followers:>=10000", dict(author_followers=10000), True),
    ("followers:>=10000", dict(author_followers=9999), False),
    ("verified:true", dict(author_verified=True), True),
    ("verified:yes", dict(author_verified=True), True),
    ("has:geo", dict(lat=1.0, lon=2.0), True),
    ("has:link", dict(extra={"links": ["https://a"]}), True),
    ("lang:en", dict(lang="en-GB"), True),
    ("lang:en-gb", dict(lang="en_GB"), True),
    ("lang:pt-BR", dict(lang="pt"), False),
    ("lang:en", dict(lang="de"), False),
    ("lang:und", dict(lang="und"), True),
    ("-lang:de", dict(lang="de"), False),
    ("source:bsky", dict(source="bsky"), True),
]


@pytest.mark.parametrize("query, fields, expected", FIELD_CASES)
def test_fields(query, fields, expected):
    """
    Field filters compare the post's metadata.
    """
    assert holds(query, "text", **fields) is expected


BAD = [
    ("", 1, "a word"),
    ("   ", 4, "a word"),
    ("acme AND", 9, "a word"),
    ("acme OR OR globex", 9, "a word"),
    ("(acme OR globex", 16, "a ) to close the ( at position 1"),
    ("acme)", 5, "this ) closes nothing"),
    ('"charged twice', 15, "a closing quote for the phrase opened at position 1"),
    ("outage NEAR acme", 12, "a distance after NEAR"),
    ("outage NEAR/0 acme", 13, "a distance from 1 to 100"),
    ("outage NEAR/x acme", 13, "a whole number"),
    ("(a AND b) NEAR/2 c", 2, "on each side of NEAR"),
    ("c NEAR/2 NOT b", 10, "a word"),
    ("c NEAR/2 lang:en", 10, "on each side of NEAR"),
    ("likes:>=many", 7, "a number"),
    ("likes:", 7, "a value after likes:"),
    ("verified:maybe", 10, "true or false"),
    ("has:photo", 5, "link or geo"),
    ("lang:english!", 6, "a language tag"),
    ("acme~1", 1, "5 or more letters"),
    ("#globex~1", 1, "a single plain word"),
    ("globex~2", 8, "~1"),
    ('"a b"~1', 6, "no ~ after a phrase"),
    ("*", 1, "a wildcard with at least 2 letters"),
    ("a* OR x", 1, "a wildcard with at least 2 letters"),
    ("acme !!!", 6, "a word"),
    ("acme AND ()", 11, "a word"),
    ("(" * 60 + "acme" + ")" * 60, 51, "at most 50 levels"),
]


@pytest.mark.parametrize("query, position, expected", BAD)
def test_bad_queries(query, position, expected):
    """
    A bad query is refused with the position (from 1) and what was expected.
    """
    with pytest.raises(QueryError) as caught:
        parse(query)
    error = caught.value
    assert (error.position, expected in error.expected) == (position, True), str(error)
    assert f"at position {position}: expected" in str(error)


def test_too_long():
    with pytest.raises(QueryError) as caught:
        parse("acme " * 1000)
    assert "at most 4000 characters" in str(caught.value)


def test_precedence_tree():
    """
    NOT binds tighter than AND, AND tighter than OR, NEAR tightest.
    """
    tree = parse("a OR NOT b c NEAR/2 d")
    assert isinstance(tree, Or)
    left, right = tree.children
    assert isinstance(right, And)
    assert isinstance(right.children[0], Not)
    assert isinstance(right.children[1], Near)


def test_highlights():
    """
    The words that made a query true are marked, never those under NOT, and
    token_spans maps them back onto the text as written (accents and all).
    """
    text = "Café ACME: refund? No #giveaway, refunds!"
    doc = Doc(post(text))
    marked = highlights(parse("(café OR acme) refund* -giveaway"), doc)
    spans = token_spans(text)
    assert [text[a:b] for i, (a, b) in enumerate(spans) if i in marked] == ["Café", "ACME", "refund", "refunds"]


def test_matcher_explain_and_problems():
    """
    The matcher says which tokens matched, and a topic whose stored query no
    longer parses matches nothing and is reported.
    """
    matcher = Matcher([Topic("t", terms=("acme",), query="refund*"), Topic("bad", query="acme AND")])
    names, marked = matcher.explain(post("acme will refund you"))
    assert (names, marked) == (("t",), {0, 2})
    assert matcher.match(post("acme and")) == ()
    assert "at position 9" in matcher.problems["bad"]


def test_terms_and_query():
    """
    A topic with terms and a query needs both; its exclusions still veto.
    """
    matcher = Matcher([Topic("t", terms=("acme",), exclude=("giveaway",), query="refund OR outage")])
    assert matcher.match(post("acme refund")) == ("t",)
    assert matcher.match(post("acme")) == ()
    assert matcher.match(post("refund")) == ()
    assert matcher.match(post("acme refund giveaway")) == ()


def test_always_evaluated():
    """
    Queries that can hold without any of their words (NOT, fields) are
    evaluated on every post, and combine with limits on languages.
    """
    matcher = Matcher([Topic("popular", query="likes:>=100 -spam"), Topic("de", query="NOT acme", languages=("de",))])
    assert matcher.match(post("hello", likes=100, lang="en")) == ("popular",)
    assert matcher.match(post("spam", likes=100, lang="en")) == ()
    assert matcher.match(post("hallo", lang="de")) == ("de",)
    assert matcher.match(post("hallo", lang="fr")) == ()


# -- properties ---------------------------------------------------------------------------

WORDS = ["acme", "refund", "refunds", "charged", "twice", "outage", "globex", "glovex", "color", "colour", "x"]
POSITIONAL_LEAVES = ["acme", "#acme", "@acme", "refund", '"charged twice"', "refund*", "colo?r", "globex~1", "outage"]
FIELD_LEAVES = ["lang:en", "likes:>=10", "verified:true", "has:link", "author:alice"]

positional = st.recursive(
    st.sampled_from(POSITIONAL_LEAVES),
    lambda inner: st.one_of(
        st.tuples(inner, inner).map(lambda p: f"({p[0]} OR {p[1]})"),
        st.tuples(inner, st.sampled_from(["NEAR", "ONEAR"]), st.integers(1, 4), inner).map(
            lambda p: f"({p[0]} {p[1]}/{p[2]} {p[3]})"
        ),
    ),
    max_leaves=4,
)
queries = st.recursive(
    st.one_of(positional, st.sampled_from(FIELD_LEAVES)),
    lambda inner: st.one_of(
        st.tuples(inner, inner).map(lambda p: f"({p[0]} AND {p[1]})"),
        st.tuples(inner, inner).map(lambda p: f"({p[0]} {p[1]})"),
        st.tuples(inner, inner).map(lambda p: f"({p[0]} OR {p[1]})"),
        inner.map(lambda q: f"NOT {q}"),
        inner.map(lambda q: f"-({q})"),
    ),
    max_leaves=8,
)
texts = st.lists(
    st.one_of(
        st.sampled_from(WORDS),
        st.sampled_from(["#acme", "@acme", "Acme!", "(refunded)", "—", "https://a.b", "##acme", "x#acme", "#@acme"]),
        st.sampled_from(
            ["info@acme.com", "@acme@mastodon.social", "acme#", "charged#twice", "# acme", "@@refund", "ÁCME"]
        ),
    ),
    max_size=12,
).map(" ".join)
posts = st.builds(
    lambda text, lang, likes, verified: post(text, lang=lang, likes=likes, author_verified=verified),
    texts,
    st.sampled_from([None, "en", "de"]),
    st.integers(0, 20),
    st.booleans(),
)


def de_morgan(node):
    """
    The same query with every AND and OR rewritten through De Morgan's laws.
    """
    if isinstance(node, And):
        return Not(Or([Not(de_morgan(c)) for c in node.children]))
    if isinstance(node, Or) and not node.positional:
        return Not(And([Not(de_morgan(c)) for c in node.children]))
    if isinstance(node, Not):
        child = node.child
        if isinstance(child, Not):
            return de_morgan(child.child)
        if isinstance(child, And):
            return Or([de_morgan(Not(c)) for c in child.children])
        if isinstance(child, Or):
            return And([de_morgan(Not(c)) for c in child.children])
        return Not(de_morgan(child))
    return node


@settings(max_examples=300, deadline=None)
@given(queries, st.lists(posts, min_size=1, max_size=5))
def test_de_morgan(query, some):
    """
    A query and its De Morgan rewrite (written out and parsed again) match
    the same posts.
    """
    tree = parse(query)
    rewritten = parse(to_text(de_morgan(tree)))
    for p in some:
        assert evaluate(tree, Doc(p)) == evaluate(rewritten, Doc(p))


@settings(max_examples=300, deadline=None)
@given(st.lists(queries, min_size=1, max_size=6), st.lists(posts, min_size=1, max_size=5))
def test_matcher_agrees_with_evaluation(some_queries, some):
    """
    The compiled matcher (automaton prefilter, shared terms, candidates)
    matches exactly the posts that evaluating each query directly matches.
    """
    topics = [Topic(f"t{i}", query=q) for i, q in enumerate(some_queries)]
    matcher = Matcher(topics)
    trees = [parse(q) for q in some_queries]
    for p in some:
        expected = tuple(t.name for t, tree in zip(topics, trees) if evaluate(tree, Doc(p)))
        assert matcher.match(p) == expected


term_lists = st.lists(
    st.sampled_from(["acme", "#acme", "@acme", "charged twice", "refund", "globex", "colour", "acme cloud", "x"]),
    min_size=1,
    max_size=3,
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(term_lists, term_lists, st.booleans()), min_size=1, max_size=5),
    st.lists(posts, min_size=1, max_size=5),
)
def test_matcher_agrees_on_term_topics(specs, some):
    """
    For topics of terms, exclusions and fuzzy, the automaton's shortcuts
    give what checking every term on the post's tokens gives.
    """
    from monitor.match import compile_topic

    topics = [Topic(f"t{i}", terms=tuple(a), exclude=tuple(b), fuzzy=f) for i, (a, b, f) in enumerate(specs)]
    matcher = Matcher(topics)
    for p in some:
        doc = Doc(p)
        expected = []
        for topic in topics:
            plan = compile_topic(topic)
            if any(doc.spans(t) for t in plan.terms) and not any(doc.spans(t) for t in plan.exclude):
                expected.append(topic.name)
        assert matcher.match(p) == tuple(expected)
