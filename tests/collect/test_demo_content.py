"""
Tests for the synthetic post generator, L{monitor.collect.demo_content}.
"""

import random
import re
import string
from collections import Counter

import pytest

from monitor.collect.demo_content import TEMPLATES, DemoContent, brand_terms
from monitor.collect.jsonl import format_post, parse_post
from monitor.model import Post

BRANDS = ["Acme", "Globex", "Initech"]
START = 1_714_560_000.0
SIX_HOURS = 6 * 3600


def content(seed=42, **kw):
    return DemoContent(BRANDS, random.Random(seed), **kw)


def stream(demo, count, start=START, step=0.5):
    """
    C{count} posts, C{step} seconds apart from C{start}.
    """
    return [demo.make_post(start + i * step, "demo") for i in range(count)]


@pytest.fixture(scope="module")
def posts():
    return stream(content(), 2000)


def test_deterministic():
    """The same seed gives the same posts and the same bursts."""
    a, b = content(7), content(7)
    assert stream(a, 300) == stream(b, 300)
    times = [START + t for t in range(0, SIX_HOURS, 30)]
    assert [a.current_burst(t) for t in times] == [b.current_burst(t) for t in times]
    assert stream(content(8), 50) != stream(content(7), 50)


def test_bursts_independent_of_calls():
    """rate and current_burst depend on the time only, not on what was generated."""
    a, b = content(3), content(3)
    stream(a, 500)
    times = [START + t for t in range(0, SIX_HOURS, 60)]
    assert [a.rate(t) for t in times] == [b.rate(t) for t in times]


def test_every_post_mentions_a_brand(posts):
    """Each post names a brand, its handle or its hashtag."""
    slugs = [b.lower() for b in BRANDS]
    for post in posts:
        assert any(s in post.text.lower() for s in slugs), post.text


def test_every_template_names_its_brand():
    """Every template has a placeholder for the brand, so no post is off topic."""
    placeholders = {"brand", "handle", "official", "tag", "downtag"}
    for kinds in TEMPLATES.values():
        for templates in kinds.values():
            for template in templates:
                names = {f[1] for f in string.Formatter().parse(template) if f[1]}
                assert names & placeholders, template


def test_brand_terms():
    """brand_terms lists the name, handles and hashtags posts use."""
    assert brand_terms("Acme Corp") == ("Acme Corp", "@acmecorp", "@acmecorpsupport", "#acmecorp", "#acmecorpdown")


def test_mix_of_kinds(posts):
    """Over 2,000 posts every kind of content shows up."""
    kinds = Counter(p.extra["demo_kind"] for p in posts)
    for kind in ("complaint", "question", "purchase_intent", "praise", "news", "mention", "crisis"):
        assert kinds[kind] >= 20, kinds
    texts = [p.text.lower() for p in posts]
    crisis = re.compile(r"outage|breach|hacked|lawsuit|recall|down\b|panne|cayó")
    assert sum(bool(crisis.search(t)) for t in texts) >= 50
    assert sum("?" in t for t in texts) >= 200
    assert any("alternative" in t for t in texts)
    assert any("not bad at all" in t for t in texts)
    assert any("isn't great" in t for t in texts)
    assert any("https://news.demo.invalid/" in t for t in texts)
    assert any(b.lower() in t and o.lower() in t for t in texts for b in BRANDS for o in BRANDS if b != o)
    emoji = sum(any(ord(c) > 0x2600 for c in t) for t in texts)
    assert 100 <= emoji <= 1000


def test_languages(posts):
    """Mostly English, with German, French and Spanish posts in those languages."""
    langs = Counter(p.lang for p in posts)
    assert langs["en"] > 0.8 * len(posts)
    for lang in ("de", "fr", "es"):
        assert langs[lang] >= 20, langs
    german = [p.text for p in posts if p.lang == "de"]
    assert any(w in t for t in german for w in ("Ist", "Hat", "Suche", "meine", "Ich"))


def test_geotagged(posts):
    """About five percent of posts carry a location near a real city."""
    geo = [p for p in posts if p.lat is not None]
    assert 50 <= len(geo) <= 160
    for p in geo:
        assert p.lon is not None
        assert -90 <= p.lat <= 90 and -180 <= p.lon <= 180
    assert all(p.lon is None for p in posts if p.lat is None)


def test_authors_skewed(posts):
    """Followers are heavy-tailed: influencers are rare, most have few followers."""
    demo = content()
    authors = {p.author: (p.author_followers, p.author_verified) for p in stream(demo, 5000)}
    followers = sorted(f for f, _ in authors.values())
    median = followers[len(followers) // 2]
    assert 10 <= median <= 500
    assert any(f >= 100_000 for f in followers)
    assert sum(f >= 100_000 for f in followers) < 0.1 * len(followers)
    assert any(v for _, v in authors.values())
    assert sum(v for _, v in authors.values()) < 0.1 * len(authors)


def test_engagement_heavy_tailed(posts):
    """Most posts get little engagement, a few get a lot."""
    likes = sorted(p.likes for p in posts)
    assert likes[len(likes) // 2] < 20
    assert likes[-1] > 50 * max(1, likes[len(likes) // 2])
    assert all(p.reposts >= 0 and p.replies >= 0 for p in posts)


def test_ids_unique_and_urls(posts):
    """Native ids are unique, across generators too, and the url names the author."""
    more = stream(content(), 2000)  # same seed, a second generator
    ids = [p.native_id for p in posts] + [p.native_id for p in stream(content(43), 2000)]
    assert len(set(ids)) == len(ids)
    assert [p.native_id for p in more] == [p.native_id for p in posts]
    for p in posts[:100]:
        assert p.url == f"https://demo.invalid/{p.author}/{p.native_id}"


def test_posts_are_valid_replay_lines(posts):
    """Every demo post survives the replay format, so the bench can record them."""
    for p in posts:
        again = parse_post(format_post(p), p.source, p.network, p.received_at)
        assert again.text == p.text and again.native_id == p.native_id
        assert isinstance(p, Post) and p.source == "demo" and p.cursor is None
        assert p.created_at <= p.received_at


def test_bursts_over_six_hours():
    """Bursts of both kinds happen over six hours, with a higher rate during them."""
    demo = content(5)
    seen = {}
    quiet = []
    for t in range(0, SIX_HOURS, 10):
        now = START + t
        burst = demo.current_burst(now)
        if burst is None:
            quiet.append(demo.rate(now))
            continue
        assert burst["started_at"] <= now < burst["ends_at"]
        assert burst["brand"] in BRANDS
        assert 60 <= burst["ends_at"] - burst["started_at"] <= 900
        seen[burst["started_at"]] = burst
        assert demo.rate(now) >= 4 * demo.base_rate
    assert 12 <= len(seen) <= 40
    assert {b["kind"] for b in seen.values()} == {"outage", "viral"}
    assert set(quiet) == {2.0}


def test_outage_content():
    """During an outage most posts are negative posts about the brand that is down."""
    demo = content(5)
    now = next(
        START + t for t in range(0, SIX_HOURS, 10) if (demo.current_burst(START + t) or {}).get("kind") == "outage"
    )
    burst = demo.current_burst(now)
    posts = stream(demo, 200, start=now, step=0.1)
    about = [p for p in posts if burst["brand"].lower() in p.text.lower()]
    assert len(about) > 0.7 * len(posts)
    negative = Counter(p.extra["demo_kind"] for p in posts)
    assert negative["outage"] + negative["crisis"] + negative["complaint"] > 0.5 * len(posts)
    assert any("down for anyone" in p.text for p in posts)


def test_viral_complaint():
    """A viral burst sends one complaint once, then reposts with growing engagement."""
    demo = content(5)
    now = next(
        START + t for t in range(0, SIX_HOURS, 10) if (demo.current_burst(START + t) or {}).get("kind") == "viral"
    )
    burst = demo.current_burst(now)
    length = burst["ends_at"] - now
    early = stream(demo, 300, start=now, step=length / 3000)
    late = stream(demo, 300, start=burst["ends_at"] - length / 10, step=length / 3000)
    viral = [p for p in early + late if p.extra["demo_kind"] == "viral"]
    originals = [p for p in viral if "-viral-" in p.native_id]
    assert len(originals) == 1
    original = originals[0].text
    assert burst["brand"].lower() in original.lower()
    assert sum(original in p.text for p in viral) == len(viral) > 200

    def mean_likes(ps):
        ps = [p for p in ps if p.extra["demo_kind"] == "viral" and p not in originals]
        return sum(p.likes for p in ps) / len(ps)

    assert mean_likes(late) > 3 * mean_likes(early)


def test_no_bursts():
    """burst_every=None turns bursts off."""
    demo = content(burst_every=None, base_rate=5.0)
    assert all(demo.current_burst(START + t) is None for t in range(0, SIX_HOURS, 60))
    assert demo.rate(START) == 5.0


def test_bad_brands():
    """A generator needs at least one brand with a usable name."""
    with pytest.raises(ValueError):
        DemoContent([], random.Random(1))
    with pytest.raises(ValueError):
        DemoContent(["!!!"], random.Random(1))
