"""
Tests for the analysis stage: plain text, VADER scores, rule labels and the
local thread-pool analyzer.
"""

from __future__ import annotations

import hashlib
import html
import statistics
import subprocess
import sys
import threading
import time
from functools import lru_cache
from pathlib import Path

import pytest
import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from monitor import analysis
from monitor.analysis import Classifier, analyze_texts, plain_text, versions
from monitor.analysis import local as local_module
from monitor.analysis.classify import (
    DEFAULT_COMPLAINT_WORDS,
    DEFAULT_CRISIS_WORDS,
    DEFAULT_PURCHASE_INTENT_WORDS,
)
from monitor.analysis.local import AnalyzerNotRunning, LocalAnalyzer
from monitor.model import LABELS, NEGATIVE, NEUTRAL, POSITIVE, Analysis, Post

#: Pearson r of our compound score with the mean human rating over the 4,200
#: tweets of Hutto and Gilbert (2014).  Our text is the tweet with Twitter's
#: entities decoded; raw VADER on the escaped text gives RAW_VADER_R.
PINNED_R = 0.8726
RAW_VADER_R = 0.8722

#: Tweets whose scores change when "&lt;3" and "&gt;" are decoded: VADER
#: knows "<3" but not "lt;3".
DECODED_ROWS_THAT_SCORE_DIFFERENTLY = 20

_vader = SentimentIntensityAnalyzer()


def vader(text):
    return _vader.polarity_scores(text)


def scores(a: Analysis) -> dict:
    return {"neg": a.neg, "neu": a.neu, "pos": a.pos, "compound": a.compound}


@lru_cache(maxsize=None)
def _load_ground_truth(path: Path):
    raw = path.read_bytes().decode("utf-8")
    rows = []
    for line in raw.split("\r\n"):
        ident, mean, text = line.split("\t")
        rows.append((ident, float(mean), text))
    return tuple(rows)


@pytest.fixture
def ground_truth(shared_data):
    path = shared_data / "vader_icwsm2014" / "tweets_GroundTruth.txt"
    return _load_ground_truth(path)


@lru_cache(maxsize=None)
def _analyzed(rows):
    return tuple(analyze_texts([text for _, _, text in rows], Classifier()))


# --- ground truth -----------------------------------------------------------


def test_ground_truth_shape(ground_truth):
    """The ground-truth file parses into 4,200 rows of id, rating, text."""
    assert len(ground_truth) == 4200
    assert [r[0] for r in ground_truth] == [str(i) for i in range(1, 4201)]


def test_ground_truth_has_no_markup_but_has_entities(ground_truth):
    """The tweets hold no tags, only Twitter's escaping of &, < and >."""
    texts = [t for _, _, t in ground_truth]
    assert not any("<" in t for t in texts)
    entities = {e for t in texts for e in ("&amp;", "&lt;", "&gt;") if e in t}
    assert entities == {"&amp;", "&lt;", "&gt;"}


def test_ground_truth_scores_equal_vader(ground_truth):
    """Every tweet scores exactly as VADER scores its entity-decoded text."""
    results = _analyzed(ground_truth)
    for (_, _, text), result in zip(ground_truth, results):
        assert scores(result) == vader(html.unescape(text)), text


def test_ground_truth_plain_rows_score_as_raw_vader(ground_truth):
    """Tweets without entities score exactly as VADER scores them raw."""
    results = _analyzed(ground_truth)
    compared = 0
    for (_, _, text), result in zip(ground_truth, results):
        if "&" not in text:
            assert scores(result) == vader(text), text
            compared += 1
    assert compared == 4200 - 162


def test_ground_truth_only_decoded_emoticons_change_scores(ground_truth):
    """Decoding changes scores only where "&lt;3" or "&gt;" hid an emoticon."""
    results = _analyzed(ground_truth)
    changed = [text for (_, _, text), result in zip(ground_truth, results) if scores(result) != vader(text)]
    assert len(changed) == DECODED_ROWS_THAT_SCORE_DIFFERENTLY
    assert all("&lt;" in t or "&gt;" in t for t in changed)


def test_ground_truth_correlation_is_pinned(ground_truth):
    """Compound correlates with human ratings at the pinned Pearson r."""
    human = [mean for _, mean, _ in ground_truth]
    ours = [a.compound for a in _analyzed(ground_truth)]
    raw = [vader(text)["compound"] for _, _, text in ground_truth]
    r_ours = statistics.correlation(ours, human)
    r_raw = statistics.correlation(raw, human)
    assert r_ours == pytest.approx(PINNED_R, abs=0.001)
    assert r_raw == pytest.approx(RAW_VADER_R, abs=0.001)


def test_ground_truth_wrapped_as_mastodon_scores_as_raw(ground_truth):
    """A tweet escaped into a Mastodon <p> scores exactly as the raw tweet."""
    texts = [text for _, _, text in ground_truth]
    wrapped = ["<p>" + html.escape(text) + "</p>" for text in texts]
    for text, result in zip(texts, analyze_texts(wrapped, Classifier())):
        assert scores(result) == vader(text), text


# --- plain_text -------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "I <3 acme",
        "a < b > c",
        "5 < 6",
        "x<y and y>z",
        "if a<b and c>d",
        "<sarcasm>great service</sarcasm>",
        "AT&T and R&D",
        "me&notyou &amp without semicolon",
        "Love it 😍🔥 #acme",
        "plain text, nothing to do.",
        ">.< <-- look <<< >>>",
    ],
)
def test_plain_text_leaves_ordinary_text_alone(text):
    """Text that only looks a little like markup comes back unchanged."""
    assert plain_text(text) == text


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<p>Hello</p><p>world</p>", "Hello world"),
        ("one<br>two<br/>three<BR />four", "one two three four"),
        (
            "<p>Tom &amp; Jerry &#39;n&#x27; &lt;3 &quot;x&quot;</p>",
            "Tom & Jerry 'n' <3 \"x\"",
        ),
        (
            '<p><span class="h-card"><a href="https://m.example/@acme" '
            'class="u-url mention">@<span>acme</span></a></span> hi '
            '<a href="https://m.example/tags/acme" class="mention hashtag" '
            'rel="tag">#<span>acme</span></a></p>',
            "@acme hi #acme",
        ),
        (
            '<a href="https://example.com/a/long" rel="nofollow noopener">'
            '<span class="invisible">https://</span>'
            '<span class="ellipsis">example.com/a/lo</span>'
            '<span class="invisible">ng</span></a>',
            "https://example.com/a/long",
        ),
        ("<div><p>nested <b><i>bold</i></b> x</p></div>", "nested bold x"),
        ("<img src=x alt='a>b'>after", "after"),
        ("<script>alert(1)</script>", "alert(1)"),
        (
            "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>",
            "<script>alert(1)</script>",
        ),
        ("<p>&amp;lt;b&amp;gt;</p>", "&lt;b&gt;"),
        ("a<!-- hidden -->b", "a b"),
        ("<!DOCTYPE html><p>x</p>", "x"),
        ("  spaced \n\t out\u00a0 ", "spaced out"),
        ("<p>non&nbsp;breaking</p>", "non breaking"),
        ("<p>😀&#128512;</p>", "😀😀"),
    ],
)
def test_plain_text_cases(text, expected):
    """HTML is stripped and entities decoded without gluing words together."""
    assert plain_text(text) == expected


def test_plain_text_hostile_markup_is_fast():
    """Unclosed tags, quotes and comments do not make stripping quadratic."""
    hostile_texts = [
        '<a x="' * 20000,
        "<!--" * 20000,
        "<a " + "x=1 " * 20000,
        "&#" * 50000,
    ]
    for hostile in hostile_texts:
        started = time.perf_counter()
        plain_text(hostile)
        assert time.perf_counter() - started < 1.0


@given(st.text())
def test_plain_text_never_raises(text):
    """Any text gives a string with single spaces and no outer whitespace."""
    result = plain_text(text)
    assert isinstance(result, str)
    assert result == " ".join(result.split())


@given(st.text())
def test_plain_text_fast_path_only_collapses_whitespace(text):
    """Without < or &, the only change is collapsed whitespace."""
    if "<" not in text and "&" not in text:
        assert plain_text(text) == " ".join(text.split())


_MARKUP_ISH = st.sampled_from(list("<>&;#/!-=\"' abp1x")) | st.characters()


@given(st.text(alphabet=_MARKUP_ISH))
def test_plain_text_is_idempotent_on_plain_output(text):
    """Output with no < or & left is a fixed point."""
    once = plain_text(text)
    if "<" not in once and "&" not in once:
        assert plain_text(once) == once


@given(st.text())
def test_plain_text_undoes_html_escape(text):
    """Escaped text in a <p> comes back as the text, whitespace collapsed."""
    wrapped = "<p>" + html.escape(text) + "</p>"
    assert plain_text(wrapped) == " ".join(text.split())


_VADER_TOKENS = [
    "good",
    "bad",
    "not",
    "very",
    "but",
    "kind",
    "of",
    "least",
    "no",
    "GREAT",
    "never",
    "so",
    ":)",
    ":(",
    "<3",
    "!",
    "?",
    "!!!",
    "lol",
    "😀",
    "😡",
    "💔",
    "acme",
    "the",
    "isn't",
    "SUCKS",
]
_GAPS = [" ", "  ", "\n", "\t", "\r\n", "\u00a0", "\u2003", ""]


@settings(max_examples=300)
@given(
    st.lists(st.sampled_from(_VADER_TOKENS), max_size=12),
    st.lists(st.sampled_from(_GAPS), min_size=13, max_size=13),
)
def test_collapsing_whitespace_keeps_vader_scores(tokens, gaps):
    """VADER scores text and its whitespace-collapsed form identically."""
    text = gaps[0] + "".join(t + g for t, g in zip(tokens, gaps[1:]))
    assert vader(" ".join(text.split())) == vader(text)


@settings(max_examples=300)
@given(st.text())
def test_collapsing_whitespace_keeps_vader_scores_on_any_text(text):
    """The same holds for arbitrary text, emoji included."""
    assert vader(" ".join(text.split())) == vader(text)


# --- classifier -------------------------------------------------------------


def labels(text, compound=0.0, classifier=Classifier()):
    return classifier.labels(text, compound)


@pytest.mark.parametrize(
    "text",
    [
        "acme is down",
        "Is Acme down for anyone else",
        "the app is down again",
        "servers went down at 9",
        "ugh #AcmeDown",
        "#acme_down trending",
        "it’s down",
        "massive outage in EU",
        "my account got hacked",
        "data breach at acme",
        "customer data leaked",
        "acme sued over privacy",
        "class action lawsuit filed",
        "acme announces recall of heaters",
        "data loss after update",
        "this is a scam",
        "credit card fraud",
    ],
)
def test_crisis_positive(text):
    """Outage, security, legal and safety wording is labelled crisis."""
    assert "crisis" in labels(text)


@pytest.mark.parametrize(
    "text",
    [
        "calm down everyone",
        "downloading the new app",
        "download it now",
        "going down the stairs",
        "feeling down today",
        "#countdown to launch",
        "#lockdown memories",
        "my favourite life hack",
        "I recall it was fine",
        "Sue said it was great",
        "upside down cake",
    ],
)
def test_crisis_negative(text):
    """Ordinary uses of down, hack and recall are not a crisis."""
    assert "crisis" not in labels(text)


@pytest.mark.parametrize(
    "text, compound",
    [
        ("it doesn't work", 0.0),
        ("it DOESNT work", 0.0),
        ("it doesn’t work", 0.0),
        ("still waiting for my refund", 0.0),
        ("worst support ever", 0.0),
        ("I want to cancel my subscription", 0.0),
        ("never again", 0.0),
        ("totally ripped off", 0.0),
        ("please fix this", 0.0),
        ("what a #fail", 0.0),
        ("I hate this so much @acme", -0.6),
        ("customer service was rude and slow", -0.5),
    ],
)
def test_complaint_positive(text, compound):
    """Complaint words, or negative posts aimed at a brand, are complaints."""
    assert "complaint" in labels(text, compound)


@pytest.mark.parametrize(
    "text, compound",
    [
        ("I love @acme", 0.6),
        ("I hate mondays", -0.6),
        ("@acme meh", -0.1),
        ("if you lose your keys, sad", -0.5),
        ("worst case we wait a day", 0.0),
        ("my broken heart", -0.5),
        ("I was not disappointed", 0.3),
        ("works perfectly", 0.5),
    ],
)
def test_complaint_negative(text, compound):
    """Negative tone alone, or a complaint idiom, is no complaint."""
    assert "complaint" not in labels(text, compound)


@pytest.mark.parametrize(
    "text",
    [
        "looking for a good laptop",
        "can anyone recommend a vpn",
        "any suggestions for a phone?",
        "alternatives to acme",
        "should I buy the pro",
        "thinking of switching to globex",
        "where can I buy one",
        "is it worth buying",
        "which is better, acme or globex",
        "what's the best phone to get",
    ],
)
def test_purchase_intent_positive(text):
    """Asking for recommendations or planning to buy is purchase intent."""
    assert "purchase_intent" in labels(text)


@pytest.mark.parametrize(
    "text",
    [
        "I highly recommend a trip to Rome",
        "looking forward to the launch",
        "just bought it, love it",
        "I would recommend acme to anyone",
    ],
)
def test_purchase_intent_negative(text):
    """Giving a recommendation or having bought is not purchase intent."""
    assert "purchase_intent" not in labels(text)


@pytest.mark.parametrize(
    "text",
    [
        "is acme down?",
        "Why? It worked yesterday",
        "what happened???",
        "does anyone know a fix",
        "@acme @help is it just me or is login broken",
        "Ugh. Has anyone tried the beta",
    ],
)
def test_question_positive(text):
    """A ? after a word, or a question opener, makes a question."""
    assert "question" in labels(text)


@pytest.mark.parametrize(
    "text",
    [
        "seriously?!",
        "WTF!?!?",
        "how I learned to love acme",
        "see https://example.com/page?id=3",
        "? ? ?",
    ],
)
def test_question_negative(text):
    """Exclamatory ?! runs, stray marks and query strings are not questions."""
    assert "question" not in labels(text)


def test_labels_follow_model_order():
    """Labels come in the fixed order of monitor.model.LABELS."""
    text = "@acme your app is down again, know an alternative to it?"
    assert labels(text, -0.5) == LABELS


def test_no_labels_for_neutral_text():
    """A plain neutral post gets no labels."""
    assert labels("nice weather in the park today", 0.4) == ()


def test_defaults_are_exported():
    """None means the documented default lists."""
    classifier = Classifier()
    assert classifier.crisis_words == DEFAULT_CRISIS_WORDS
    assert classifier.complaint_words == DEFAULT_COMPLAINT_WORDS
    assert classifier.purchase_intent_words == DEFAULT_PURCHASE_INTENT_WORDS


def test_custom_words_replace_defaults():
    """Custom lists replace the defaults rather than extending them."""
    classifier = Classifier(
        crisis_words=["panne", "piraté"],
        complaint_words=["lamentable"],
        purchase_intent_words=["je cherche"],
    )
    assert classifier.labels("Panne générale chez acme", 0.0) == ("crisis",)
    assert classifier.labels("mon compte a été PIRATE", 0.0) == ("crisis",)
    assert classifier.labels("service lamentable", 0.0) == ("complaint",)
    assert classifier.labels("je  cherche un vélo", 0) == ("purchase_intent",)
    assert classifier.labels("acme is down, it doesn't work", 0.0) == ()
    assert classifier.labels("looking for a laptop", 0.0) == ()


def test_custom_hashtag_and_wildcard_entries():
    """A # entry matches hashtags ending in it; * stands for one word."""
    classifier = Classifier(crisis_words=["#fire", "is * offline"], exceptions=[])
    assert "crisis" in classifier.labels("see #AcmeFire now", 0.0)
    assert "crisis" in classifier.labels("is acme offline", 0.0)
    assert "crisis" not in classifier.labels("is acme very offline", 0.0)
    assert "crisis" not in classifier.labels("fireworks #firefox", 0.0)


def test_empty_list_turns_rule_off():
    """An empty list disables its label."""
    classifier = Classifier(crisis_words=[])
    assert "crisis" not in classifier.labels("outage, we got hacked", 0.0)


def test_custom_exceptions_replace_defaults():
    """With no exceptions, idioms are matched like any other text."""
    assert "crisis" in Classifier(exceptions=[]).labels("#countdown", 0.0)


@pytest.mark.parametrize("bad", ["", "   ", 42])
def test_bad_entries_are_rejected(bad):
    """Empty or non-string entries fail at construction, not per post."""
    with pytest.raises((ValueError, TypeError)):
        Classifier(crisis_words=["outage", bad])


def test_a_string_is_not_a_word_list():
    """A bare string, a likely config mistake, is refused."""
    with pytest.raises(TypeError):
        Classifier(crisis_words="outage")


def test_classifier_round_trips_through_dict():
    """to_dict/from_dict rebuild a classifier that labels the same way."""
    original = Classifier(crisis_words=["meltdown"])
    rebuilt = Classifier.from_dict(original.to_dict())
    assert rebuilt.to_dict() == original.to_dict()
    assert rebuilt.labels("total meltdown?", 0.0) == ("question", "crisis")


# --- analyze_texts and versions ---------------------------------------------


def test_analyze_texts_builds_analyses():
    """Each text yields an Analysis with VADER scores, label and tags."""
    texts = ["I love acme!", "acme is down, worst service ever", "the sky", ""]
    results = analyze_texts(texts, Classifier())
    sentiments = [r.sentiment for r in results]
    assert sentiments == [POSITIVE, NEGATIVE, NEUTRAL, NEUTRAL]
    assert results[1].labels == ("complaint", "crisis")
    assert scores(results[0]) == vader("I love acme!")
    assert set(scores(results[3]).values()) == {0.0}


@pytest.mark.parametrize(
    "compound, label",
    [
        (0.05, POSITIVE),
        (0.0499, NEUTRAL),
        (0.0, NEUTRAL),
        (-0.0499, NEUTRAL),
        (-0.05, NEGATIVE),
    ],
)
def test_sentiment_thresholds(compound, label):
    """The label uses VADER's ±0.05 thresholds, inclusive."""
    assert analysis.sentiment_label(compound) == label


def test_one_vader_analyzer_is_reused():
    """The scorer is chosen once and shared, not per call."""
    analyze_texts(["a"], Classifier())
    first = analysis.scorer()
    analyze_texts(["b"], Classifier())
    assert analysis.scorer() is first


def test_versions():
    """versions() names the vaderSentiment release and hashes the lexicons."""
    import vaderSentiment

    v = versions()
    assert v["vaderSentiment"] == "3.3.2"
    lexicon = Path(vaderSentiment.__file__).parent / "vader_lexicon.txt"
    digest = hashlib.sha256(lexicon.read_bytes()).hexdigest()
    assert v["vader_lexicon_sha256"] == digest
    assert len(v["emoji_lexicon_sha256"]) == len(v["rules_sha256"]) == 64
    v["vaderSentiment"] = "tampered"
    assert versions()["vaderSentiment"] == "3.3.2"


# --- LocalAnalyzer ----------------------------------------------------------


def make_posts(texts):
    return [
        Post(
            source="test",
            network="test",
            native_id=str(i),
            text=text,
            author="someone",
            created_at=0.0,
        )
        for i, text in enumerate(texts)
    ]


TEXTS = [
    "<p>I &lt;3 <span>acme</span></p>",
    "acme is down again, worst service ever",
    "can anyone recommend an alternative to acme?",
    "nice weather",
]


def failure_of(d):
    failures = []
    d.addErrback(failures.append)
    assert len(failures) == 1
    return failures[0]


def test_importing_local_does_not_install_a_reactor():
    """monitor.analysis.local leaves the global reactor alone at import."""
    code = "import sys, monitor.analysis.local; sys.exit('twisted.internet.reactor' in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_local_analyzer_needs_a_thread():
    """A pool of fewer than one thread is refused."""
    with pytest.raises(ValueError):
        LocalAnalyzer(Classifier(), threads=0)


def test_analyze_before_start_fails():
    """Analysing before startService fails clearly instead of hanging."""
    analyzer = LocalAnalyzer(Classifier())
    failure = failure_of(analyzer.analyze(make_posts(TEXTS)))
    assert failure.check(AnalyzerNotRunning)


def test_stop_without_start():
    """Stopping a never-started analyzer succeeds at once."""
    analyzer = LocalAnalyzer(Classifier())
    done = []
    analyzer.stopService().addCallback(done.append)
    assert done == [None]


@pytest_twisted.inlineCallbacks
def test_local_analyzer_runs_in_its_own_pool(reactor, monkeypatch):
    """Batches are analysed in the analysis pool, off the reactor thread."""
    seen = []

    def recording(texts, classifier):
        seen.append((threading.get_ident(), threading.current_thread().name))
        return analyze_texts(texts, classifier)

    monkeypatch.setattr(local_module, "analyze_texts", recording)
    classifier = Classifier()
    analyzer = LocalAnalyzer(classifier, threads=2, reactor=reactor)
    analyzer.startService()
    try:
        posts = make_posts(TEXTS)
        d = analyzer.analyze(posts)
        d.addTimeout(30, reactor)
        results = yield d
        empty = yield analyzer.analyze([])
    finally:
        yield analyzer.stopService()

    assert results == analyze_texts(TEXTS, classifier)
    assert empty == []
    assert len(seen) == 1
    ident, name = seen[0]
    assert ident != threading.get_ident()
    assert name.startswith("PoolThread-analysis-")
    failure = failure_of(analyzer.analyze(posts))
    assert failure.check(AnalyzerNotRunning)


@pytest_twisted.inlineCallbacks
def test_stop_waits_for_batches_in_flight(reactor, monkeypatch):
    """stopService fires only after the running batch has delivered."""
    release = threading.Event()

    def slow(texts, classifier):
        release.wait(30)
        return analyze_texts(texts, classifier)

    monkeypatch.setattr(local_module, "analyze_texts", slow)
    analyzer = LocalAnalyzer(Classifier(), reactor=reactor)
    analyzer.startService()
    pool = analyzer._pool
    batch = analyzer.analyze(make_posts(TEXTS))
    stopped = analyzer.stopService()
    try:
        assert not stopped.called
        assert not batch.called
        late = failure_of(analyzer.analyze(make_posts(TEXTS)))
        assert late.check(AnalyzerNotRunning)
    finally:
        release.set()
    stopped.addTimeout(30, reactor)
    yield stopped
    assert batch.called
    results = yield batch
    assert len(results) == len(TEXTS)
    assert not any(t.is_alive() for t in pool.threads)


@pytest_twisted.inlineCallbacks
def test_local_analyzer_works_out_story_features_in_its_pool(reactor, monkeypatch):
    """
    With story features on, each analysis carries its post's features
    (worked out in the analysis thread, by the post's language) and equals
    the plain analysis; without, none is worked out.
    """
    from monitor.stories import features

    threads = []

    def recording(text, lang):
        threads.append(threading.get_ident())
        return features(text, lang)

    posts = make_posts(TEXTS)
    posts[0].lang = "de"
    with_features = LocalAnalyzer(Classifier(), reactor=reactor, features=recording)
    without = LocalAnalyzer(Classifier(), reactor=reactor)
    with_features.startService()
    without.startService()
    try:
        got = yield with_features.analyze(posts).addTimeout(30, reactor)
        plain = yield without.analyze(posts).addTimeout(30, reactor)
    finally:
        yield with_features.stopService()
        yield without.stopService()
    assert got == plain == analyze_texts(TEXTS, Classifier())
    assert [a.features for a in got] == [features(p.text, p.lang) for p in posts]
    assert all(a.features is None for a in plain)
    assert len(threads) == len(TEXTS) and threading.get_ident() not in threads
    assert "features" not in got[0].to_dict()
