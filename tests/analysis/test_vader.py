"""
Differential tests of L{monitor.analysis.vader.FastVader} against
vaderSentiment 3.3.2: the same four floats, bit for bit, on every real post
in ../shared/data, every text the tests, fakes and demo produce, and
generated text aimed at each of VADER's rules.
"""

from __future__ import annotations

import ast
import csv
import html
import random
from functools import lru_cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from twisted.logger import Logger
from vaderSentiment import vaderSentiment as vs

from monitor import analysis
from monitor.analysis import MAX_ANALYZED_CHARS, MAX_MARKUP_CHARS, Classifier, analyze_texts, plain_text
from monitor.analysis.vader import (
    SELF_CHECK_TEXTS,
    FastVader,
    _but_check,
    checked_scorer,
    mismatches,
    same_scores,
)
from monitor.collect.demo_content import TEMPLATES, DemoContent

from tests.conftest import ROOT

REFERENCE = vs.SentimentIntensityAnalyzer()
FAST = FastVader(REFERENCE, cache_size=0)
CACHED = FastVader(REFERENCE)


def assert_same(text):
    expected = REFERENCE.polarity_scores(text)
    assert same_scores(expected, FAST.polarity_scores(text)), text
    assert same_scores(expected, CACHED.polarity_scores(text)), text


def assert_all_same(texts):
    wrong = mismatches(FAST, REFERENCE, texts)
    assert wrong == [], wrong[:3]


# --- real posts ---------------------------------------------------------------


@lru_cache(maxsize=None)
def shared_texts(data: Path) -> tuple:
    """Every text of the three data sets."""
    texts = []
    raw = (data / "vader_icwsm2014" / "tweets_GroundTruth.txt").read_bytes().decode("utf-8")
    texts += [line.split("\t")[2] for line in raw.split("\r\n")]
    with open(data / "complaints" / "complaints-data.csv", newline="", encoding="utf-8") as f:
        texts += [row[1] for row in csv.reader(f)]
    for path in sorted((data / "crisislex").glob("*/*tweets_labeled.csv")):
        with open(path, newline="", encoding="utf-8") as f:
            rows = csv.reader(f)
            next(rows)
            texts += [row[1] for row in rows]
    return tuple(texts)


def test_shared_data_sets_all_read(shared_data):
    """The three sets are all there: 4,200 + complaints + 1,032 crisis tweets."""
    texts = shared_texts(shared_data)
    assert len(texts) > 4200 + 1032 + 3000
    assert sum(1 for t in texts if any(ord(c) > 0x1F000 for c in t)) >= 10  # emoji in real posts


def test_every_shared_text(shared_data):
    """Every post of every data set, raw and as the pipeline's plain text."""
    texts = shared_texts(shared_data)
    assert_all_same(texts)
    assert_all_same({plain_text(html.unescape(t)) for t in texts} - set(texts))


def test_every_shared_text_through_analyze_texts(shared_data):
    """The pipeline's analyses carry vaderSentiment's scores of the plain text."""
    texts = shared_texts(shared_data)[::3]
    for text, a in zip(texts, analyze_texts(texts, Classifier())):
        plain = plain_text(text)
        expected = REFERENCE.polarity_scores(plain)
        assert same_scores(expected, {"neg": a.neg, "neu": a.neu, "pos": a.pos, "compound": a.compound}), text


# --- texts the tests, fakes and demo produce ----------------------------------


def _string_constants(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.value


def test_every_string_in_the_tests_and_fakes():
    """Each string literal of the test suite and its fakes, as written and as plain text."""
    texts = set()
    for path in sorted((ROOT / "tests").rglob("*.py")):
        texts.update(_string_constants(path))
    from tests.fakes import jetstream, mastodon

    for lines in (jetstream._LINES, mastodon._LINES):
        for line in lines:
            texts.add(line.format(b="Acme", o="Globex", t="acme", link="#acme", mention="@acmesupport"))
    assert len(texts) > 1000
    assert_all_same(texts | {plain_text(t) for t in texts})


def test_every_demo_template_and_post():
    """Every demo template, and a long stream of demo posts in every language."""
    texts = {t for kinds in TEMPLATES.values() for lines in kinds.values() for t in lines}
    for seed in (1, 2, 3):
        demo = DemoContent(["Acme", "Globex", "Initech"], random.Random(seed), burst_every=600.0)
        texts.update(demo.make_post(1_714_560_000.0 + i * 0.7, "demo").text for i in range(3000))
    assert len(texts) > 1500
    assert_all_same(texts)


def test_self_check_texts():
    """The start-up sample itself."""
    assert_all_same(SELF_CHECK_TEXTS)


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "\t\n\u3000\u00a0",
        "no",
        "NO",
        "GOOD",
        "GOOD good",
        "no no no good",
        "not no good",
        "no good",
        "no or nor bad",
        "no the or bad",
        "kind of good",
        "kind of",
        "kind",
        "good kind",
        "the kind of person",
        "sort of good",
        "just enough love",
        "least good",
        "the least good",
        "at least good",
        "very least good",
        "never so good",
        "never this good",
        "never so very good",
        "so so good",
        "without doubt good",
        "without a doubt good",
        "without the doubt good",
        "it was the shit",
        "it is the bomb!!",
        "what a bad ass",
        "what a badass",
        "you are so badass",
        "i love the bus stop",
        "yeah right good",
        "oh yeah right",
        "a kiss of death",
        "it is to die for",
        "my beating heart",
        "cut the mustard",
        "under the weather",
        "VERY GOOD but VERY bad",
        "but",
        "good but",
        "but good",
        "good good good but good bad good",
        "bad but bad but bad",
        "BUT GOOD",
        "good, BUT. bad",
        "😀",
        "😀😀😀",
        "a😀b",
        "😀 😀",
        "🔛🔛🔛 good",
        "🆙!",
        "☺️ ☹️ 👶🏻",
        ":) :( :D <3 </3 :-)",
        "'good'",
        "!!!good!!!",
        "(:",
        "good!!!!!!!",
        "good??",
        "good???",
        "good????",
        "good?!?!?!?!",
        "bad!!!???",
        "Η ΟΔΟΣ ΣΟΦΟΣ",
        "İYİ good",
        "ǅ GOOD",
        "ϒ good",
        "东京 好 good",
        "سعيد good",
        "Я люблю good",
    ],
)
def test_rules_one_by_one(text):
    """A text for each rule and quirk of 3.3.2."""
    assert_same(text)


def test_two_thousand_emoji():
    """The post that 3.3.2 takes 0.6 s over scores the same."""
    emoji = [k for k in REFERENCE.emojis if len(k) == 1]
    rng = random.Random(15)
    text = "".join(rng.choice(emoji) for _ in range(2000))
    assert_same(text)


# --- generated text -----------------------------------------------------------

_EMOJI = sorted(REFERENCE.emojis)
_LEXICON = sorted(REFERENCE.lexicon)
_RULE_WORDS = sorted(
    set(vs.NEGATE)
    | set(vs.BOOSTER_DICT)
    | {w for k in vs.SPECIAL_CASES for w in k.split()}
    | {w for k in vs.SENTIMENT_LADEN_IDIOMS for w in k.split()}
    | {
        "but",
        "least",
        "at",
        "very",
        "kind",
        "of",
        "sort",
        "no",
        "or",
        "nor",
        "never",
        "so",
        "this",
        "without",
        "doubt",
        "n't",
        "not",
        "isn't",
    }
)
_FOREIGN = [
    "ΟΔΟΣ",
    "οδος",
    "Σ",
    "İstanbul",
    "ıi",
    "東京",
    "最高",
    "سعيد",
    "Привет",
    "ЛЮБОВЬ",
    "ǅemal",
    "ϒ",
    "ß",
    "ﬁne",
    "K",
    "😀" * 3,
    "\u0301",
    "a\u0308",
]
_PUNCT = [
    "!",
    "?",
    "!!",
    "??",
    "!?",
    "?!?!",
    ".",
    "...",
    ",",
    ":",
    ";",
    "'",
    '"',
    "(",
    ")",
    "-",
    "*",
    "#",
    "@",
    ":)",
    ":(",
    ":D",
    "<3",
    "!!!!!!",
    "?????",
    "'s",
]


def _case(word):
    return st.sampled_from([word, word.upper(), word.title(), word.swapcase()])


_word = st.one_of(
    st.sampled_from(_LEXICON).flatmap(_case),
    st.sampled_from(_RULE_WORDS).flatmap(_case),
    st.sampled_from(_EMOJI),
    st.sampled_from(_FOREIGN),
    st.sampled_from(_PUNCT),
    st.text(min_size=1, max_size=6),
)
_token = st.tuples(
    st.sampled_from(["", "", "", "'", "(", '"', "#", "@"]),
    _word,
    st.sampled_from(["", "", "", "!", "?", ".", ",", "!!", "?!", "...", "'"]),
).map("".join)
_separator = st.sampled_from([" ", " ", " ", "  ", "\t", "\n", "", "\u00a0", "\u3000", " - "])


@st.composite
def _texts(draw):
    tokens = draw(st.lists(_token, max_size=30))
    seps = draw(st.lists(_separator, min_size=len(tokens), max_size=len(tokens)))
    return draw(_separator) + "".join(t + s for t, s in zip(tokens, seps))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_texts())
@example("")
@example("   ")
def test_generated_rule_text(text):
    """Texts built from lexicon words, rule words, emoji, punctuation and other scripts."""
    assert_same(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_generated_any_text(text):
    """Any Unicode text at all, control characters included."""
    assert_same(text)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(_EMOJI + [" ", "good", "bad", "!", "?", "but"]), max_size=200).map("".join))
def test_generated_emoji_runs(text):
    """Long runs of emoji, glued together or spaced, with a few words."""
    assert_same(text)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "good",
                "bad",
                "great",
                "no",
                "not",
                "very",
                "but",
                "kind",
                "of",
                "least",
                "NEVER",
                "SO",
                "GOOD",
                "BAD",
                "😀",
                "😡",
                ":)",
            ]
        ),
        max_size=60,
    ).map(" ".join)
)
def test_generated_but_and_shouting(text):
    """Dense rule words: repeated scores around "but", ALL-CAPS mixed in."""
    assert_same(text)


_score = st.sampled_from([0, 0.0, -0.0, 1.0, 2.0, 0.5, 4.0, -1.0, -2.0, -0.5, 3, 1.5, 0.75, 2.25])


@settings(max_examples=400, deadline=None)
@given(st.lists(_score, min_size=1, max_size=40), st.data())
def test_but_check_matches_3_3_2(scores, data):
    """The heap version of _but_check leaves the list 3.3.2 leaves, value, type and sign."""
    but = data.draw(st.integers(0, len(scores) - 1))
    words = ["x"] * len(scores)
    words[but] = "but"
    expected = vs.SentimentIntensityAnalyzer._but_check(words, list(scores))
    got = list(scores)
    _but_check(got, but)
    assert [(type(x), repr(x)) for x in got] == [(type(x), repr(x)) for x in expected]


# --- the cache and other inputs -------------------------------------------------


def test_cached_answers_are_fresh_dicts():
    """A repost is answered from the cache, and a caller's edit does not leak into it."""
    scorer = FastVader(REFERENCE, cache_size=8)
    first = scorer.polarity_scores("I love it!")
    first["compound"] = 99.0
    assert scorer.polarity_scores("I love it!") == REFERENCE.polarity_scores("I love it!")
    assert scorer._cached.cache_info().hits == 1


def test_cache_is_bounded():
    """The cache holds at most its size, and never a text over MAX_CACHED_CHARS."""
    from monitor.analysis.vader import MAX_CACHED_CHARS

    scorer = FastVader(REFERENCE, cache_size=4)
    for i in range(20):
        scorer.polarity_scores(f"good {i}")
    scorer.polarity_scores("good " * MAX_CACHED_CHARS)
    info = scorer._cached.cache_info()
    assert info.currsize == 4 and info.misses == 20


def test_not_a_string_goes_to_vader_sentiment():
    """Input that is not a str gets whatever 3.3.2 does with it."""

    class Text(str):
        pass

    assert FAST.polarity_scores(Text("GOOD day")) == REFERENCE.polarity_scores(Text("GOOD day"))
    with pytest.raises(TypeError):
        REFERENCE.polarity_scores(5)
    with pytest.raises(TypeError):
        FAST.polarity_scores(5)


# --- the start-up check ----------------------------------------------------------


class Broken(FastVader):
    """Right on everything but "but"."""

    def _scores(self, text):
        result = super()._scores(text)
        return (result[0], result[1], result[2], 0.0) if "but" in text.lower() else result


def events_logger():
    events = []
    return events, Logger(observer=events.append)


def test_check_passes_the_fast_scorer():
    """A scorer equal to vaderSentiment on the sample is used, and nothing is logged."""
    events, log = events_logger()
    assert isinstance(checked_scorer(REFERENCE, log=log), FastVader)
    assert events == []


def test_check_refuses_a_scorer_that_differs():
    """One wrong answer in the sample and vaderSentiment itself scores, with an error logged."""
    events, log = events_logger()
    chosen = checked_scorer(REFERENCE, Broken(REFERENCE), log=log)
    assert chosen is REFERENCE
    (event,) = events
    assert event["log_level"].name == "error"
    assert event["count"] >= 1 and "but" in event["text"].lower()


def test_check_refuses_a_scorer_that_fails():
    """A scorer that raises is not used either."""

    class Raises(FastVader):
        def _scores(self, text):
            raise KeyError(text)

    events, log = events_logger()
    assert checked_scorer(REFERENCE, Raises(REFERENCE), log=log) is REFERENCE
    assert [e["log_level"].name for e in events] == ["critical"]


def test_process_scorer_is_checked(monkeypatch):
    """analysis.scorer() is checked_scorer's choice, so a failing check reaches every path."""
    monkeypatch.setattr(analysis, "_scorer", None)
    monkeypatch.setattr("monitor.analysis.vader.FastVader", Broken)
    assert analysis.scorer() is not None and not isinstance(analysis.scorer(), FastVader)
    (a,) = analyze_texts(["good but bad"], Classifier())
    assert a.compound == REFERENCE.polarity_scores("good but bad")["compound"] != 0.0
    monkeypatch.undo()
    monkeypatch.setattr(analysis, "_scorer", None)
    assert isinstance(analysis.scorer(), FastVader)


# --- the per-post budget -----------------------------------------------------------


def test_ten_thousand_emoji_post_is_analysed_with_its_batch():
    """A 10,000-emoji post is analysed in its batch with the rest, and the rest score as 3.3.2."""
    emoji = [k for k in REFERENCE.emojis if len(k) == 1]
    rng = random.Random(10_000)
    flood = "".join(rng.choice(emoji) for _ in range(10_000))
    texts = ["I love it", flood, "this is awful!!", flood + " but great"]
    results = analyze_texts(texts, Classifier())
    assert len(results) == 4
    for text in (texts[0], texts[2]):
        assert results[texts.index(text)].compound == REFERENCE.polarity_scores(text)["compound"]
    assert results[1].compound == FAST.polarity_scores(flood)["compound"]
    assert results[3].compound == FAST.polarity_scores(flood + " but great")["compound"]


def test_over_long_post_is_cut_the_same_everywhere():
    """Past MAX_ANALYZED_CHARS a post is analysed on its first MAX_ANALYZED_CHARS characters."""
    head = "terrible day "
    text = head + "x" * (MAX_ANALYZED_CHARS - len(head)) + " wonderful amazing love" * 1000
    (a,) = analyze_texts([text], Classifier())
    expected = REFERENCE.polarity_scores(text[:MAX_ANALYZED_CHARS])
    assert (a.neg, a.neu, a.pos, a.compound) == (
        expected["neg"],
        expected["neu"],
        expected["pos"],
        expected["compound"],
    )
    assert a.compound < 0


def test_over_long_markup_is_cut_before_it_is_stripped():
    """Past MAX_MARKUP_CHARS the raw text is cut before its markup is stripped."""
    text = "<p>awful</p>" + "<b>x</b>" * MAX_MARKUP_CHARS + "<p>wonderful</p>"
    (a,) = analyze_texts([text], Classifier())
    plain = plain_text(text[:MAX_MARKUP_CHARS])[:MAX_ANALYZED_CHARS]
    assert "wonderful" not in plain and a.compound == REFERENCE.polarity_scores(plain)["compound"] < 0


def test_token_table_is_bounded(monkeypatch):
    """The table of lowered tokens is emptied when full and skips long tokens; scores do not change."""
    from monitor.analysis import vader

    monkeypatch.setattr(vader, "MAX_TOKENS", 5)
    scorer = FastVader(REFERENCE, cache_size=0)
    text = " ".join(f"good{i}" for i in range(12)) + " GREAT " + "x" * 100
    assert same_scores(REFERENCE.polarity_scores(text), scorer.polarity_scores(text))
    assert 0 < len(scorer._lowered) <= 5 and all(len(t) <= vader.MAX_TOKEN_CHARS for t in scorer._lowered)


def test_analyzer_checks_the_scorer_when_it_starts(monkeypatch):
    """The hub's LocalAnalyzer chooses (and so checks) the scorer in startService, before any post."""
    from twisted.logger import globalLogPublisher

    from monitor.analysis.local import LocalAnalyzer

    events = []
    globalLogPublisher.addObserver(events.append)
    monkeypatch.setattr(analysis, "_scorer", None)
    monkeypatch.setattr("monitor.analysis.vader.FastVader", Broken)
    service = LocalAnalyzer(Classifier())
    try:
        service.startService()
        assert isinstance(analysis._scorer, vs.SentimentIntensityAnalyzer)
        assert any(
            e.get("log_level") is not None
            and e["log_level"].name == "error"
            and "differs from vaderSentiment" in e.get("log_format", "")
            for e in events
        )
    finally:
        globalLogPublisher.removeObserver(events.append)
        service.stopService()
