"""
Stories on real labelled posts: the CrisisLex LAX-shooting tweets mixed
with the complaint tweets of many brands come out as separate stories whose
words name the event; a link shared on two networks is one story; memory
is bounded.
"""

import csv
import json
import math
import random
from itertools import count
from collections import Counter, defaultdict

import pytest
import pytest_twisted

from monitor.model import Analysis, Post
from monitor.stories import StoryClusterer

LAX = "crisislex/T26_2013_LA_airport_shootings/2013_LA_airport_shootings-tweets_labeled.csv"


def labelled(shared_data):
    rows = []
    with open(shared_data / LAX, encoding="utf-8") as f:
        reader = csv.reader(f)
        next(reader)
        rows += [(row[1], "lax") for row in reader]
    with open(shared_data / "complaints" / "complaints-data.csv", encoding="utf-8") as f:
        rows += [(row[1], row[3]) for row in csv.reader(f)]
    random.Random(1).shuffle(rows)
    return rows


def post(i, text, source="bluesky", **kw):
    p = Post(source=source, network=source, native_id=str(i), text=text, author=f"a{i}", created_at=1.7e9 + i, **kw)
    p.topics = ("T",)
    p.analysis = Analysis(0.0, 0.0, 1.0, 0.0, "neutral", ())
    return p


def nmi(pairs):
    n = len(pairs)
    a, b, ab = Counter(s for s, _ in pairs), Counter(l for _, l in pairs), Counter(pairs)
    mi = sum(c / n * math.log(c * n / (a[s] * b[l])) for (s, l), c in ab.items())
    h = lambda cs: -sum(c / n * math.log(c / n) for c in cs.values())  # noqa: E731
    return 2 * mi / (h(a) + h(b))


def test_an_event_among_complaints_is_its_own_stories_named_by_its_words(shared_data):
    clusterer = StoryClusterer()
    pairs = []
    for i, (text, label) in enumerate(labelled(shared_data)):
        sid = clusterer.add(post(i, text))
        if sid:
            pairs.append((sid, label))
    by_story = defaultdict(Counter)
    for sid, label in pairs:
        by_story[sid][label] += 1
    purity = sum(max(c.values()) for c in by_story.values()) / len(pairs)
    assert purity >= 0.93, purity
    assert nmi(pairs) >= 0.4
    # The largest stories are the shooting, and only the shooting, in its own words.
    largest = clusterer.list(limit=3, min_size=2)
    for story in largest:
        assert set(by_story[story["id"]]) == {"lax"}, by_story[story["id"]]
        assert {"lax", "#lax", "shooting", "airport", "suspect", "tsa"} & set(story["terms"]), story["terms"]
    assert sum(s["size"] for s in largest) >= 200


def test_a_link_shared_on_two_networks_is_one_story():
    clusterer = StoryClusterer()
    a = clusterer.add(post(1, "Wow, read this https://status.acme.example/incidents/42?utm_source=x", source="bluesky"))
    clusterer.add(post(2, "completely unrelated words about gardening tomatoes", source="bluesky"))
    b = clusterer.add(post(3, "acme had an outage: https://status.acme.example/incidents/42/", source="mastodon"))
    assert a == b
    [story] = [s for s in clusterer.list(min_size=2)]
    assert story["sources"] == {"bluesky": 1, "mastodon": 1}
    assert story["links"] == ["status.acme.example/incidents/42"]


def test_place_counts_for_placed_posts():
    clusterer = StoryClusterer(geo_weight=0.5, threshold=0.55)
    paris = clusterer.add(post(1, "huge queue at the acme store downtown", lat=48.85, lon=2.35))
    near = clusterer.add(post(2, "queue at the acme store downtown again", lat=48.86, lon=2.34))
    far = clusterer.add(post(3, "queue at the acme store downtown again", lat=-33.9, lon=151.2))
    assert paris == near != far
    story = [s for s in clusterer.list(min_size=2)][0]
    assert abs(story["centroid"]["lat"] - 48.855) < 0.01


def test_memory_is_bounded_and_stories_fade():
    clusterer = StoryClusterer(max_stories=50, half_life=60)
    rng = random.Random(2)
    words = [f"w{i}" for i in range(5000)]
    for i in range(2000):
        clusterer.add(post(i, " ".join(rng.sample(words, 8))))
        assert len(clusterer.stories) <= 50
    clusterer.now += 24 * 3600
    before = len(clusterer.stories)
    assert clusterer.fade(3600) == before
    assert len(clusterer.stories) == 0
    # Nothing is left pointing at forgotten stories.
    assert all(not sids for sids in clusterer._index.values())
    assert not clusterer._link_index


def test_a_post_without_words_joins_no_story():
    assert StoryClusterer().add(post(1, "the and of ... 123 !!")) is None


async def replaying_hub(reactor, tmp_path, shared_data, more_config=""):
    """
    The end-to-end test's twistd hub with stories on and one topic for every
    post, once it has replayed 2,500 LAX tweets and complaints; the caller
    stops it.
    """
    from tests.test_twistd import CONFIG, Hub

    rows = labelled(shared_data)[:2500]
    with open(tmp_path / "posts.jsonl", "w", encoding="utf-8") as f:
        for i, (text, _) in enumerate(rows):
            f.write(json.dumps({"id": i, "text": text, "author": f"u{i}", "created_at": 1.7e9 + i}) + "\n")
    config = (
        "[stories]\nenabled = true\n"
        + CONFIG.split("[[topics]]")[0]
        + ('[[topics]]\nname = "Everything"\nquery = "the OR a OR lax OR to OR i OR is OR my"\n')
        + more_config
    )
    hub = Hub(reactor, tmp_path, config)
    hub.start()

    async def finished():
        code, body = await hub.get("/healthz", token=None)
        return code == 200 and json.loads(body)["sources"]["archive"] == "finished" and json.loads(body)["queue"] == 0

    try:
        await hub.wait_until(finished, seconds=60)
    except BaseException:
        assert await hub.stop(), hub.output()
        raise
    return hub


@pytest_twisted.ensureDeferred
async def test_a_real_hub_serves_the_stories_of_what_it_stored(reactor, tmp_path, shared_data):
    """A twistd hub replaying the LAX tweets and complaints answers /api/v1/stories with the shooting on top."""
    hub = await replaying_hub(reactor, tmp_path, shared_data)
    try:
        code, body = await hub.get("/api/v1/stories?limit=3")
        assert code == 200
        stories = json.loads(body)["stories"]
        assert len(stories) == 3
        assert stories[0]["size"] >= stories[1]["size"] >= stories[2]["size"]
        assert {"shooting", "lax", "#lax", "airport"} & set(stories[0]["terms"])
        assert stories[0]["topics"] == {"Everything": stories[0]["size"]}
        assert json.loads(body)["enabled"] is True
        code, body = await hub.get("/api/v1/stories?limit=0")
        assert code == 400 and "limit" in body
    finally:
        assert await hub.stop(), hub.output()


def test_a_restored_clusterer_continues_exactly_as_an_uninterrupted_one(shared_data):
    """Half the stream, snapshot through JSON into a new clusterer, the other half: the same stories as one run."""
    rows = labelled(shared_data)[:3000]
    # Some posts are reposts of earlier ones, some share links and places,
    # so that every way into a story is restored too.
    rows = [(f"RT @u{i}: {rows[i - 5][0]}", None) if i % 11 == 10 else row for i, row in enumerate(rows)]
    posts = [
        post(i, text + (f" https://news.example/a/{i % 40}" if i % 7 == 0 else ""),
             **({"lat": 34.0 + (i % 5) / 10, "lon": -118.4} if i % 3 == 0 else {}))
        for i, (text, _) in enumerate(rows)
    ]  # fmt: skip
    whole = StoryClusterer(max_stories=300)
    expected = [whole.add(p) for p in posts]

    first = StoryClusterer(max_stories=300)
    got = [first.add(p) for p in posts[:1500]]
    state = json.loads(json.dumps(first.snapshot()))
    second = StoryClusterer(max_stories=300)
    second.restore(state)
    got += [second.add(p) for p in posts[1500:]]

    assert got == expected
    assert second.list(limit=50) == whole.list(limit=50)
    # Ids count on from the snapshot: a story started after the restart has an id never used before.
    fresh = second.add(post(10_000, "zzyzx quokka marmalade xylophone"))
    assert fresh is not None and fresh not in set(got)


def test_an_older_snapshot_without_some_keys_still_loads():
    clusterer = StoryClusterer()
    a = clusterer.add(post(1, "acme checkout outage again today https://status.acme.example/1"))
    clusterer.add(post(2, "acme checkout outage still broken"))
    state = json.loads(json.dumps(clusterer.snapshot()))
    for key in ("link_index", "serial", "version", "df"):
        del state[key]
    # The copies as an older clusterer kept them (MinHash signatures): forgotten.
    state["near_duplicates"] = {"serial": 2, "posts": [[1, a, [7] * 24], [2, a, [8] * 24]]}
    for story in state["stories"]:
        del story["serial"]
        story["minutes"] = {str(m): c for m, c in story["minutes"]}
    restored = StoryClusterer()
    restored.restore(state)
    assert restored.list(min_size=2) == clusterer.list(min_size=2)
    # The link is found again, and the next new story gets a fresh id.
    assert restored.add(post(3, "read https://status.acme.example/1")) == a
    assert restored.add(post(4, "gardening tomatoes zucchini compost")) not in {a}
    assert len(restored.stories) == 2
    StoryClusterer().restore({})


ORIGINAL = "Acme checkout is down again, my order vanished after paying and support is not answering"


@pytest.mark.parametrize("near_duplicate", [0.6, 0])
def test_reposts_quotes_and_edited_copies_on_other_networks_join_the_original(near_duplicate):
    """Copies join the original's story even where their words alone are too far from it; unrelated posts don't."""
    # So strict a threshold that words alone join none of the copies (the off case shows it).
    clusterer = StoryClusterer(threshold=0.95, near_duplicate=near_duplicate)
    original = clusterer.add(post(1, ORIGINAL, source="bluesky"))
    copies = [
        post(2, "RT @someone: " + ORIGINAL, source="x"),
        post(3, "So this happened to me too. " + ORIGINAL, source="mastodon"),
        post(4, ORIGINAL + " https://acme.example/status/9 #acme #fail", source="rss"),
        post(5, "@friend " + ORIGINAL.replace("again", "AGAIN!!"), source="mastodon"),
    ]
    unrelated = [
        post(6, "Acme checkout is fast today, my order arrived early and support answered kindly", source="x"),
        post(7, "Paying after support vanished is not how my garden grows again", source="bluesky"),
    ]
    joined = [clusterer.add(p) for p in copies]
    others = [clusterer.add(p) for p in unrelated]
    assert original not in others
    if near_duplicate:
        assert joined == [original] * 4
        assert clusterer.get(original)["sources"] == {"bluesky": 1, "x": 1, "mastodon": 2, "rss": 1}
    else:
        assert original not in joined[1:]


def test_reposts_and_quotes_of_labelled_posts_join_their_original(shared_data):
    """Reposting a tenth of the labelled posts (as RT and as quotes) puts each copy with its original."""
    rows = labelled(shared_data)[:2000]
    clusterer = StoryClusterer()
    ids = [clusterer.add(post(i, text)) for i, (text, _) in enumerate(rows)]
    rng = random.Random(3)
    joined = total = 0
    for n, i in enumerate(rng.sample(range(len(rows)), 200)):
        if ids[i] is None or len(rows[i][0].split()) < 6:
            continue
        text = f"RT @user{n}: {rows[i][0]}" if n % 2 else f"wow, look at this {rows[i][0]}"
        total += 1
        joined += clusterer.add(post(5000 + n, text, source="mastodon")) == ids[i]
    assert joined >= 0.9 * total, (joined, total)


def _at(i, text, minute, source="bluesky"):
    p = post(i, text, source=source)
    p.created_at = 1.7e9 + minute * 60
    return p


def test_sparkline_rising_get_and_terms_of():
    clusterer = StoryClusterer()
    n = count()
    # Steady: one post a minute for 70 minutes.
    for minute in range(70):
        clusterer.add(_at(next(n), f"steady harbour ferry timetable delayed {minute % 3}", minute))
    # Waking: one post in the hour before, then eight in the last ten minutes.
    clusterer.add(_at(next(n), "volcano ash cloud grounds flights", 20))
    for minute in range(61, 69):
        clusterer.add(_at(next(n), "volcano ash cloud grounds flights", minute))
    # New: five posts in the last ten minutes.
    for minute in (65, 66, 66, 67, 69):
        clusterer.add(_at(next(n), "stadium concert tickets sold out", minute))
    # Too few to count: two new posts.
    for minute in (68, 69):
        clusterer.add(_at(next(n), "lighthouse keeper retires after decades", minute))
    by_size = clusterer.list(limit=10)
    steady, volcano, concert = (
        next(s for s in by_size if word in s["terms"]) for word in ("harbour", "volcano", "stadium")
    )
    assert by_size[0] == steady and steady["size"] == 70
    assert [s["id"] for s in clusterer.list(order="rising")] == [volcano["id"], concert["id"]]
    assert clusterer.rising(limit=1) == [clusterer.get(volcano["id"])]
    # The last hour, per minute, oldest first, ending at the newest post's minute (69).
    assert concert["sparkline"] == [0] * 55 + [1, 2, 1, 0, 1]
    assert len(steady["sparkline"]) == 60 and steady["sparkline"] == [1] * 60
    assert volcano["sparkline"][-9:-1] == [1] * 8 and volcano["sparkline"][20 - 10] == 1
    assert sum(volcano["sparkline"]) == 9
    assert clusterer.get(concert["id"])["size"] == 5
    assert clusterer.get("nope") is None
    assert {"stadium", "concert", "tickets"} <= set(clusterer.terms_of(concert["id"]))
    assert clusterer.terms_of("nope") == []
    with pytest.raises(ValueError, match="order"):
        clusterer.list(order="newest")


def test_folding_agrees_with_the_matcher():
    from monitor.stories import _fold
    from monitor.words import normalize

    for text in [
        "Crème BRÛLÉE ⅻ",
        "ﬁne Straße",
        "zero\u200bwidth",
        "acmeʼs café",
        "İstanbul ǅ",
        "naïve 東京 😀 e\u0301",
    ]:
        assert _fold(text) == normalize(text)


def test_a_story_lasting_thousands_of_half_lives_still_takes_its_posts():
    """The centroid's lazy decay scale is brought back before it overflows."""
    clusterer = StoryClusterer(half_life=1.0)
    ids = set()
    for i in range(60):
        p = post(i, f"marathon runners cross the bridge at dawn {i % 4}")
        p.created_at = 1.7e9 + 10 * i
        ids.add(clusterer.add(p))
    [story] = clusterer.stories.values()
    assert ids == {story.id} and story.size == 60
    assert story.boost < 1e100 and all(math.isfinite(v) for v in story.centroid.values())


def test_a_post_joining_a_story_silent_for_a_thousand_half_lives_keeps_its_story():
    """
    The decay underflows to 0 after ~1,000 half-lives; the story starts its
    centroid again instead of failing (the post used to get no story).
    """
    c = StoryClusterer(half_life=3600.0)
    first = c.add(post(1, "flood waters at the river https://news.example/flood"))
    later = c.add(post(3600 * 1100, "river flood again https://news.example/flood", source="mastodon"))
    assert first is not None and later == first
    assert c.get(first)["size"] == 2
    again = c.add(post(3600 * 1100 + 60, "river flood again and again"))
    assert again == first


def test_features_worked_out_in_the_analysis_stage_give_the_same_stories(shared_data):
    """
    Posts whose analysis carries their features (worked out where they were
    analysed, pickled across a process) go into exactly the stories of
    posts the clusterer works out itself, topic words left out either way.
    """
    import pickle

    from monitor.stories import features

    rows = labelled(shared_data)[:1500]
    rows = [(f"RT @u{i}: {rows[i - 3][0]}", None) if i % 9 == 8 else row for i, row in enumerate(rows)]
    plain = [
        post(i, text + (f" https://news.example/a/{i % 30}" if i % 5 == 0 else "")) for i, (text, _) in enumerate(rows)
    ]
    carried = [post(i, p.text) for i, p in enumerate(plain)]
    for p in carried:
        p.analysis.features = pickle.loads(pickle.dumps(features(p.text, p.lang)))
    exclude = ("lax", "acme")
    here, there = StoryClusterer(exclude=exclude), StoryClusterer(exclude=exclude)
    expected = [here.add(p) for p in plain]
    got = [there.add(p) for p in carried]
    assert got == expected and len(set(got)) > 100
    assert there.list(limit=30) == here.list(limit=30)
    assert "lax" not in {t for s in there.list(limit=30) for t in s["terms"]}
    # What travels is plain data: words and links.
    words, links = features("RT @x: Acme checkout outage again https://status.acme.example/1/", None)
    assert words == ["acme", "checkout", "outage"] and links == ["status.acme.example/1"]


def test_a_post_keeps_its_features_when_learned_models_answer_again():
    """An analysis the learned models change (here: a language no model knows, so unscored) keeps its story features."""
    from monitor.learn.apply import apply_models
    from monitor.stories import features

    text = "acme checkout outage again for everyone today"
    a = Analysis(0.1, 0.2, 0.8, 0.0, "positive", (), features=features(text, "de"))
    b = apply_models(a, text, "de", {})
    assert b is not a and (b.sentiment, b.by) == (None, "unscored") and b.features == a.features


def test_the_copies_remembered_are_the_latest_and_bounded_through_a_restore(monkeypatch):
    """
    The near-duplicates remember the pairs of the last POSTS to 2 * POSTS
    posts, the oldest generation forgotten whole, also after a restore; a
    copy of a forgotten post finds nothing, a copy of a remembered one finds
    its story.
    """
    from monitor.stories import _NearDuplicates, features

    monkeypatch.setattr(_NearDuplicates, "POSTS", 50)
    rng = random.Random(3)
    words = [f"w{i}" for i in range(4000)]
    texts = [" ".join(rng.sample(words, 10)) for _ in range(130)]
    clusterer = StoryClusterer(threshold=0.99)
    ids = [clusterer.add(post(i, text)) for i, text in enumerate(texts[:70])]
    restored = StoryClusterer(threshold=0.99)
    restored.restore(json.loads(json.dumps(clusterer.snapshot())))
    ids += [restored.add(post(i, text)) for i, text in enumerate(texts[70:], 70)]
    copies = restored.near_duplicates
    # Posts 51-100 are the older generation, 101-130 the newer: 9 pairs each
    # (fewer if two posts share a pair).
    assert copies.posts == 30 and len(copies.older) <= 50 * 9 and len(copies.newer) <= 30 * 9
    assert set(copies.older.values()) == set(ids[50:100]) and set(copies.newer.values()) == set(ids[100:])

    def copied(text):
        words, _ = features(text, None)
        return copies.find(copies.pairs(words))

    assert copied(texts[10]) is None and copied(texts[60]) == ids[60] and copied(texts[120]) == ids[120]
    # A copy with a comment before it and a link and hashtags after it.
    assert copied("so this happened " + texts[120] + " #wow #news") == ids[120]
