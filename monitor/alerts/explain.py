"""
Why an incident fired, in the terms a person asks about: which stories and
words rose against the baseline, which posts carried it (by reach), from
which sources, and where.

Computed from what the detector keeps anyway, so memory stays bounded: the
topic's newest posts (L{monitor.alerts.detector.RECENT} of them, split at
the window's start into "now" and "before") and the story clusterer's
per-minute counts of each story (two hours of them).  Nothing here scans
the store.

The result is plain JSON, stored with the incident, shown on its page,
returned by the API and summed up in every notification
(L{monitor.alerts.notifiers.explanation_lines}).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable, Optional

from monitor.analysis.trending import candidates, rank
from monitor.model import iso8601

__all__ = ["explain_posts", "explain_story", "reach", "rising_stories", "story_terms"]

#: How many of each part an explanation keeps.
STORIES, TERMS, POSTS, SOURCES, PLACES = 3, 8, 3, 6, 5
#: Longest post text kept in an explanation.
TEXT = 280
#: Words of a story shown as its name.
STORY_TERMS = 5
#: Minutes before the window a story's baseline is measured over.
STORY_BASELINE = 60


def _top(counts, n: int) -> list[tuple[str, int]]:
    """
    The C{n} largest of a story's counts (a Counter or a plain dict), most
    first, ties by name so the order is the same on every run.
    """
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


def story_terms(story, n: int = 5) -> list[str]:
    """
    A story's name: its C{n} most used words.
    """
    return [t for t, _ in _top(story.terms, n)]


def _story_samples(story) -> list[dict[str, Any]]:
    """
    A story's representative posts, best first, as dicts: the clusterer
    keeps them as C{(reach, dict)} or as C{(reach, id, author, text,
    source, created_at, url)}.
    """
    out = []
    for s in sorted(story.samples, key=lambda s: -s[0]):
        if len(s) == 2 and isinstance(s[1], dict):
            out.append(dict(s[1]))
        else:
            _, uid, author, text, source, t, url = s[:7]
            created = iso8601(t) if isinstance(t, (int, float)) else t
            out.append({"id": uid, "author": author, "text": text, "source": source, "created_at": created, "url": url})
    return out


def reach(post) -> float:
    """
    How far a post went: its likes and reposts (a repost counts twice) and
    a share of its author's followers, as the story clusterer ranks its
    representative posts.
    """
    return int(post.likes or 0) + 2 * int(post.reposts or 0) + (post.author_followers or 0) / 100


def _post(post) -> dict[str, Any]:
    return {
        "id": post.uid,
        "author": post.author,
        "text": (post.text or "")[:TEXT],
        "url": post.url,
        "source": post.source,
        "network": post.network,
        "created_at": iso8601(post.created_at),
        "likes": int(post.likes or 0),
        "reposts": int(post.reposts or 0),
        "author_followers": post.author_followers,
    }


def _sources(pairs: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    counts = Counter(pairs)
    return [{"source": s, "network": n, "count": c}
            for (s, n), c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:SOURCES]]  # fmt: skip


def _places(posts) -> list[dict[str, Any]]:
    """
    Placed posts by whole degree of latitude and longitude (about 100 km):
    the busiest cells, each with its posts' mean position.
    """
    cells: dict[tuple[int, int], list[float]] = {}
    for p in posts:
        if p.lat is None or p.lon is None:
            continue
        cell = cells.setdefault((round(p.lat), round(p.lon)), [0, 0.0, 0.0])
        cell[0] += 1
        cell[1] += p.lat
        cell[2] += p.lon
    best = sorted(cells.values(), key=lambda c: -c[0])[:PLACES]
    return [{"lat": round(c[1] / c[0], 2), "lon": round(c[2] / c[0], 2), "count": int(c[0])} for c in best]


def _terms(now, before, scale: float, exclude: frozenset, terms_of=None) -> list[dict[str, Any]]:
    """
    The terms whose share of posts rose most (L{monitor.analysis.trending.rank}),
    each with its posts now and its posts before scaled to a window.
    C{terms_of(post)} gives a post's terms (a cache), else they are read.
    """
    shown: dict[str, str] = {}
    if terms_of is None:
        terms_of = lambda p: candidates(p.text, p.lang, exclude)  # noqa: E731

    def count(posts):
        counts: Counter[str] = Counter()
        for p in posts:
            terms = terms_of(p)
            for folded, form in terms.items():
                shown.setdefault(folded, form)
            counts.update(terms.keys())
        return counts

    rows = rank(count(now), len(now), count(before), len(before), shown, TERMS)
    return [{"term": r["term"], "count": r["count"], "baseline": round(r["previous"] * scale, 1)} for r in rows]


def _story(story, count: int, baseline: float) -> dict[str, Any]:
    return {
        "id": story.id,
        "terms": story_terms(story, STORY_TERMS),
        "count": int(count),
        "baseline": round(baseline, 1),
        "size": story.size,
    }


def rising_stories(clusterer, topic: Optional[str], start: float, end: float) -> list[dict[str, Any]]:
    """
    The stories of C{topic} with the most posts in C{[start, end)} beyond
    their own rate in the hour before (scaled to the window), from the
    clusterer's per-minute counts.
    """
    if clusterer is None:
        return []
    m0, m1 = int(start // 60), int(end // 60)
    width = max(1, m1 - m0)
    rows = []
    for story in list(clusterer.stories.values()):
        if story.last_seen < start or (topic is not None and topic not in story.topics):
            continue
        minutes = story.minutes
        count = sum(minutes.get(m, 0) for m in range(m0, m1))
        if count < 2:
            continue
        before = sum(minutes.get(m, 0) for m in range(m0 - STORY_BASELINE, m0))
        baseline = before / STORY_BASELINE * width
        if count <= baseline:
            continue
        rows.append((count - baseline, story, count, baseline))
    rows.sort(key=lambda r: (-r[0], r[1].id))
    return [_story(s, c, b) for _, s, c, b in rows[:STORIES]]


def explain_posts(
    recent: Iterable,
    start: float,
    end: float,
    since: float,
    window: str,
    exclude: frozenset = frozenset(),
    keep=None,
    clusterer=None,
    topic: Optional[str] = None,
    terms_of=None,
) -> dict[str, Any]:
    """
    The explanation of a window incident over C{[start, end)}: the posts
    of C{recent} in it (those C{keep} accepts) against those from C{since}
    to C{start}.  C{terms_of}: see L{_terms}.
    """
    now, before = [], []
    for p in recent:
        t = p.created_at
        if keep is not None and not keep(p):
            continue
        if start <= t < end:
            now.append(p)
        elif since <= t < start:
            before.append(p)
    known = (start - min(p.created_at for p in before)) if before else 0.0
    scale = (end - start) / known if known > 0 else 0.0
    top = sorted(now, key=lambda p: (-reach(p), p.uid))[:POSTS]
    return {
        "window": window,
        "from": iso8601(start),
        "until": iso8601(end),
        "posts": len(now),
        "baseline_posts": len(before),
        "stories": rising_stories(clusterer, topic, start, end),
        "terms": _terms(now, before, scale, exclude, terms_of),
        "top_posts": [_post(p) for p in top],
        "sources": _sources((p.source, p.network) for p in now),
        "places": _places(now),
    }


def explain_story(story, count: int, baseline: float, start: float, end: float, window: str,
                  recent: Iterable = ()) -> dict[str, Any]:  # fmt: skip
    """
    The explanation of a story incident: the story itself, its words, its
    representative posts (and those of C{recent} known to be in it), its
    sources and its place.
    """
    mine = [p for p in recent if getattr(p, "story", None) == story.id and start <= p.created_at < end]
    posts = [_post(p) for p in sorted(mine, key=lambda p: (-reach(p), p.uid))[:POSTS]]
    seen = {p["id"] for p in posts}
    for s in _story_samples(story):
        if len(posts) >= POSTS:
            break
        if s["id"] not in seen:
            posts.append({"likes": 0, "reposts": 0, "author_followers": None, "network": None, **s})
            seen.add(s["id"])
    places = []
    if story.placed:
        places = [{"lat": round(story.lat_sum / story.placed, 2), "lon": round(story.lon_sum / story.placed, 2),
                   "count": story.placed}]  # fmt: skip
    return {
        "window": window,
        "from": iso8601(start),
        "until": iso8601(end),
        "posts": int(count),
        "baseline_posts": None,
        "stories": [_story(story, count, baseline)],
        "terms": [{"term": t, "count": c, "baseline": None} for t, c in _top(story.terms, TERMS)],
        "top_posts": posts,
        "sources": [{"source": s, "network": None, "count": c} for s, c in _top(story.sources, SOURCES)],
        "places": places,
    }
