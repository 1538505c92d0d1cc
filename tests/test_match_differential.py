"""
The topic matcher reads a post once with one Aho-Corasick automaton and
evaluates only the topics it makes candidates: these tests prove it matches
exactly what evaluating every topic on every post would, on every post of
../shared/data and on generated text, with the native automaton and with
the pure-Python one that stands in when C{pyahocorasick} cannot be imported.
"""

from __future__ import annotations

import pathlib
import tomllib
from unittest import mock

from hypothesis import example, given, settings
from hypothesis import strategies as st

from monitor import automaton, match
from monitor.match import Matcher, compile_topic, normalize
from monitor.model import Post, Topic
from monitor.query import Doc, QueryError, evaluate
from monitor.words import _UNKNOWN_LANGUAGES, language_key

from .test_match import topic_strategy
from tests.analysis.test_vader import shared_texts

ETC = pathlib.Path(__file__).resolve().parent.parent / "etc"


def config_topics() -> list[Topic]:
    """Every topic of the shipped configurations."""
    topics = []
    for path in sorted(ETC.glob("*.toml")):
        for t in tomllib.loads(path.read_text(encoding="utf-8")).get("topics", []):
            t = {k: tuple(v) if isinstance(v, list) else v for k, v in t.items()}
            topics.append(Topic(**{**t, "name": f"{path.stem}:{t['name']}"}))
    return topics


#: Topics with every feature the matcher has: words, hashtags, handles,
#: phrases, variants, fuzzy words, exclusions, queries with NEAR, wildcards,
#: fuzzy words and fields, languages and sources.
RICH = [
    *config_topics(),
    Topic("plain", terms=("great", "#fail", "@anonymous", '"customer service"', "don't", "café")),
    Topic("fuzzy", terms=("twitter", "amazing", "terrible"), fuzzy=True, exclude=("not amazing", "#ad")),
    Topic("variants", variants=("luv", "gr8", "thx u")),
    Topic("excluded", terms=("love", "happy"), exclude=("hate", "@anonymous")),
    Topic("query", query='(love OR hate*) AND NOT "so much"'),
    Topic("near", query="(sad OR bad) NEAR/3 (day OR night)"),
    Topic("fuzzy query", query="wonderfull~1 OR amazng~1"),
    Topic("field", query="likes:>=3"),
    Topic("both", terms=("day",), query="good OR bad"),
    Topic("english", terms=("the",), languages=("en",)),
    Topic("elsewhere", terms=("the",), sources=("other",)),
    Topic("unicode", terms=("東京", "straße", "ＡＣＭＥ", "#çava", "naïve")),
    Topic("handle domain", terms=("@anonymous@mastodon.social", "@url_removed")),
]


def plans(topics):
    """The topics with their compiled terms and query (none if it does not parse)."""
    out = []
    for topic in topics:
        try:
            out.append((topic, compile_topic(topic)))
        except QueryError:
            pass
    return out


def by_every_topic(topics, post) -> tuple[str, ...]:
    """
    Evaluate every topic on the post with no automaton and no candidates:
    its terms, query and exclusions on the post's tokens.
    """
    names = []
    doc = Doc(post)
    for topic, plan in topics if topics and isinstance(topics[0], tuple) else plans(topics):
        if not plan.terms and plan.query is None:
            continue
        if topic.sources and post.source not in topic.sources:
            continue
        if topic.languages and post.lang is not None:
            # The documented rule: the primary subtag or the whole tag is
            # listed, or the post's language is unknown.
            tag = language_key(post.lang)
            listed = {language_key(lang) for lang in topic.languages}
            if tag not in _UNKNOWN_LANGUAGES and tag not in listed and tag.split("-", 1)[0] not in listed:
                continue
        if plan.terms and not any(doc.has(t) for t in plan.terms):
            continue
        if plan.query is not None and not evaluate(plan.query, doc):
            continue
        if any(doc.has(t) for t in plan.exclude):
            continue
        names.append(topic.name)
    return tuple(dict.fromkeys(names))


def make_post(text, n=0, lang=None, source="demo"):
    return Post(
        source=source, network="demo", native_id=str(n), text=text, author="a", created_at=0.0, lang=lang, likes=n % 5
    )


def shared_posts(data):
    """Every shared text, and every text with a brand of the configurations in it."""
    for n, text in enumerate(shared_texts(data)):
        yield make_post(text, n, lang=("en", None, "fr")[n % 3])
        yield make_post(f"{('Acme', '#GlobexDown', '@initechsupport', 'acmee')[n % 4]} {text}", n)


def pure_python_matcher(topics) -> Matcher:
    """A matcher built with the pure-Python automaton, as without pyahocorasick."""
    with mock.patch.object(automaton, "Automaton", automaton.PurePython):
        matcher = Matcher(topics)
    assert matcher._automaton is None or isinstance(matcher._automaton, automaton.PurePython)
    return matcher


def test_shared_posts_match_as_every_topic(shared_data):
    """Every post of the shared data sets matches what evaluating every topic gives, with either automaton."""
    native, pure, compiled = Matcher(RICH), pure_python_matcher(RICH), plans(RICH)
    matched = 0
    for p in shared_posts(shared_data):
        expected = by_every_topic(compiled, p)
        assert native.match(p) == expected, p.text
        assert pure.match(p) == expected, p.text
        matched += bool(expected)
    assert matched > 5000  # the topics do fire on these posts


_words = st.sampled_from(
    [
        "acme",
        "Acme",
        "ACME",
        "ＡＣＭＥ",
        "acmee",
        "acme's",
        "acmeville",
        "globex",
        "globbex",
        "glbex",
        "GLOBEX",
        "initech",
        "cloud",
        "great",
        "fail",
        "café",
        "cafe",
        "CAFÉ",
        "don't",
        "dont",
        "don’t",
        "twitter",
        "twiter",
        "amazing",
        "amazng",
        "terrible",
        "terible",
        "not",
        "love",
        "hate",
        "hated",
        "so",
        "much",
        "sad",
        "day",
        "night",
        "good",
        "bad",
        "the",
        "東京",
        "straße",
        "strasse",
        "ça",
        "çava",
        "naïve",
        "naive",
        "anonymous",
        "mastodon",
        "social",
        "url_removed",
        "customer",
        "service",
        "luv",
        "gr8",
        "thx",
        "u",
        "wonderful",
        "anvil",
        "museum",
        "acmesupport",
        "initechdown",
        "ad",
        "x\u0301",
        "\u00ad",
        "😡",
        "🇬🇧",
    ]
)
_separators = st.sampled_from(
    [" ", "  ", "#", "@", ". ", "-", "'", "\n", ", #", " @", "!", "_", ".", "@", "’", "\u200b", "/"]
)
texts = st.lists(st.tuples(_separators, _words), max_size=14).map(lambda parts: "".join(s + w for s, w in parts))


@settings(max_examples=500, deadline=None)
@given(texts, st.sampled_from([None, "en", "fr", "en-GB"]), st.integers(0, 9))
def test_generated_text_matches_as_every_topic(text, lang, likes):
    """Generated posts (case, accents, sigils, e-mail-like handles, fuzzy spellings) match the same."""
    p = make_post(text, likes, lang=lang)
    assert MATCHER.match(p) == by_every_topic(COMPILED, p)


@settings(max_examples=300, deadline=None)
@given(st.lists(topic_strategy, max_size=5), texts)
def test_generated_topics_match_as_every_topic(topics, text):
    """Generated topics on generated text, with both automata."""
    p = make_post(text)
    expected = by_every_topic(topics, p)
    assert Matcher(topics).match(p) == expected
    assert pure_python_matcher(topics).match(p) == expected


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
# A sigil after a glued one marks a handle (hypothesis found it: the soft
# hyphen goes, leaving "acme@@anonymous").
@example(" acme@\xad@anonymous")
@example("acme#@anonymous @@great")
def test_any_text_matches_as_every_topic(text):
    """Arbitrary Unicode text matches the same."""
    p = make_post(text)
    assert MATCHER.match(p) == by_every_topic(COMPILED, p)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text("ab#@ c", min_size=1, max_size=4), min_size=1, max_size=8), st.text("ab#@ c", max_size=40))
def test_pure_python_automaton_finds_what_the_native_one_does(keys, text):
    """Every occurrence of every key, overlapping ones too, at the same places."""
    native, pure = automaton.Automaton(), automaton.PurePython()
    for a in (native, pure):
        for k in keys:
            a.add_word(k, k)
        a.make_automaton()
    assert sorted(native.iter(text)) == sorted(pure.iter(text))
    assert pure.get(keys[0]) == keys[0] and pure.get("\0", 5) == 5


MATCHER, COMPILED = Matcher(RICH), plans(RICH)


def padded_by_regex(normalized: str) -> str:
    """The automaton's text as the regex makes it, for every text."""
    return " " + match._SEPARATORS.sub(" ", normalized) + " "


def test_ascii_padding_has_the_regex_tokens(shared_data):
    """The translate for ASCII text leaves the same tokens, with their marks, as the regex."""
    for text in shared_texts(shared_data):
        n = normalize(text)
        assert match._pad(n).split() == padded_by_regex(n).split()
        assert match._pad(n)[0] == match._pad(n)[-1] == " "


@settings(max_examples=500, deadline=None)
@given(st.text(st.characters(max_codepoint=127), max_size=60))
def test_ascii_padding_of_any_text(text):
    n = normalize(text)
    assert match._pad(n).split() == padded_by_regex(n).split()
