"""
Trending terms on real posts: the complaints corpus (ordinary tweets as the
baseline, a burst of transport complaints on top) and the CrisisLex tweets
of the 2013 LAX shooting, split at the hours of the event.
"""

import csv
import datetime
from collections import Counter

import pytest

from monitor.analysis.trending import MIN_COUNT, candidates, excluded_words, g2, rank, stop_words
from monitor.model import Topic
from tests.conftest import ROOT

DATA = ROOT.parent / "shared" / "data"
COMPLAINTS = DATA / "complaints" / "complaints-data.csv"
LAX = DATA / "crisislex" / "T26_2013_LA_airport_shootings" / "2013_LA_airport_shootings-tweets_labeled.csv"


def complaints():
    with open(COMPLAINTS, encoding="utf-8", newline="") as f:
        return [(text, domain) for _, text, _, domain in csv.reader(f)]


def count(texts, lang="en", exclude=frozenset()):
    counts, shown = Counter(), {}
    for text in texts:
        terms = candidates(text, lang, exclude)
        for folded, form in terms.items():
            shown.setdefault(folded, form)
        counts.update(terms.keys())
    return counts, shown


def trending(before, now, exclude=frozenset(), limit=10):
    b, shown_b = count(before, exclude=exclude)
    n, shown = count(now, exclude=exclude)
    return rank(n, len(now), b, len(before), {**shown_b, **shown}, limit)


def test_a_burst_of_complaints_trends_by_its_own_words_not_filler():
    """Ordinary tweets in both periods, transport complaints on top now: their words rise, stop words never."""
    rows = complaints()
    ordinary = [t for t, d in rows if d.startswith("random")]
    transport = [t for t, d in rows if d == "transport"]
    before, now = ordinary[::2], ordinary[1::2] + transport
    top = trending(before, now)
    words = [r["term"] for r in top]
    assert words[0] == "flight", words
    assert {"train", "delayed"} <= set(words), words
    english = stop_words("en")
    for r in top:
        assert r["count"] >= MIN_COUNT
        assert not all(w in english for w in r["term"].split()), r
        assert r["count"] / len(now) > r["previous"] / len(before), r
    assert [r["score"] for r in top] == sorted((r["score"] for r in top), reverse=True)
    # The old filler: common words that are in every period.
    for filler in ("keeps", "twice", "just", "really", "today", "the", "amp"):
        assert filler not in words


def test_surprise_beats_raw_count():
    """A word in half the posts of both periods does not trend; a rare one that jumps does."""
    now = Counter({"service": 500, "outage": 30})
    before = Counter({"service": 495, "outage": 1})
    top = rank(now, 1000, before, 1000, {})
    assert [r["term"] for r in top] == ["outage"]
    assert g2(10, 100, 10, 100) == pytest.approx(0)
    assert g2(30, 1000, 1, 1000) > g2(500, 1000, 450, 1000) > 0


def test_the_topics_own_words_are_left_out_and_phrases_carry_the_rise():
    """LAX shooting tweets, 3 hours after the first ones against those 3 hours: names and phrases, not "lax"."""
    with open(LAX, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))[1:]
    # Twitter ids carry their milliseconds since 1288834974657 in the upper bits.
    posts = sorted((((int(row[0]) >> 22) + 1288834974657) / 1000, row[1]) for row in rows)
    start = datetime.datetime(2013, 11, 1, 16, tzinfo=datetime.timezone.utc).timestamp()
    before = [t for at, t in posts if start <= at < start + 3 * 3600]
    now = [t for at, t in posts if start + 3 * 3600 <= at < start + 6 * 3600]
    topic = Topic(name="LAX shooting", terms=("LAX", "#LAXShooting", "airport shooting"), variants=("shootings",))
    exclude = excluded_words([topic])
    top = trending(before, now, exclude)
    words = [r["term"] for r in top]
    for r in top:
        assert not set(r["term"].split()) & {"lax", "shooting", "shootings", "airport", "laxshooting"}, r
    # The suspect's name rose as a phrase, and stands for its words.
    assert "paul ciancia" in words and "ciancia" not in words, words
    assert any(" " in w for w in words)


def test_stop_words_in_the_posts_language():
    """Each post is read with its own language's stop words; a tagged region and an unknown tag work."""
    spanish = candidates(
        "El servicio de Acme está caído otra vez y nadie responde", "es-MX", excluded_words([Topic("Acme", ("acme",))])
    )
    assert {"servicio", "caido", "responde"} <= set(spanish)
    assert not {"el", "de", "esta", "otra", "vez", "nadie", "acme"} & set(spanish)
    german = candidates("Der Server ist schon wieder nicht erreichbar", "de")
    assert "server" in german and "erreichbar" in german and "wieder" not in german and "nicht" not in german
    untagged = candidates("It keeps crashing and I was charged twice", None)
    assert "crashing" in untagged and "charged" in untagged
    assert not {"keeps", "twice", "was"} & set(untagged)
    assert "keeps crashing" in untagged and "charged twice" in untagged
    # Links, handles and hashtags are not words, and a phrase does not span a clause.
    linked = candidates("outage again https://status.example.com/x @acme.help #down. Refund please", "en")
    assert not {"status", "example", "help", "down"} & set(linked)
    assert "outage" in linked and "refund" in linked and "outage refund" not in linked
