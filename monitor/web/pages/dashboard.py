"""
The dashboard: volume, sentiment, share of voice, people, trending terms
(C{/ui/stats.json}) and the Stories panel (C{/ui/stories}, C{/ui/stories.json}).
"""

from __future__ import annotations

import math
from typing import Any, Optional

from klein import Klein

from monitor.analysis.trending import trending_terms
from monitor.model import iso8601
from monitor.store import STORY_ID, StatsQuery
from monitor.web import queries
from monitor.web.model_line import sentiment_line
from monitor.web.pages.base import PANEL_STORIES, RANGES, STORY_CHOICES, Area, Shell, story_brief, page, time_range
from monitor.web.params import BadParameter, Params


class DashboardPages(Area):
    """
    C{/dashboard} and the data its charts and panels load.
    """

    app = Klein()

    def __init__(self, shell: Shell, store, topics, stories, learner) -> None:
        super().__init__(shell)
        self.store = store
        #: The topics (L{monitor.topics.TopicSet}).
        self.topics = topics
        #: L{monitor.web.pages.base.StoryView}.
        self.stories = stories
        #: Names the learned sentiment model, if one is active.
        self.learner = learner

    @app.route("/dashboard", methods=["GET"])
    @page()
    async def dashboard(self, request, session):
        form = self._form(request)
        topic = self._one(form, "topic")
        if topic and topic not in self._topic_names():
            topic = ""
        chosen = self._one(form, "range")
        if chosen not in RANGES:
            chosen = await self._default_range(topic or None)
        return self._render(
            request,
            session,
            "dashboard.html",
            active="dashboard",
            topics=self._topic_names(),
            topic=topic,
            ranges=[(k, v[2]) for k, v in RANGES.items()],
            range=chosen,
            sentiment_line=await sentiment_line(self.learner, self.store, topic or None),
            **self._story_panel(topic or None, chosen),
        )

    async def _default_range(self, topic: Optional[str]) -> str:
        """
        The shortest range that holds the posts of the last 30 days, so that
        a fresh start is not one bar at the edge of a day; C{24h} if there
        are none.
        """
        now = self.reactor.seconds()
        oldest = await queries.oldest_post(self.store, topic, now - RANGES["30d"][0])
        if oldest is None:
            return "24h"
        age = now - oldest
        return next((name for name, (span, _, _) in RANGES.items() if span >= age), "30d")

    @app.route("/ui/stats.json", methods=["GET"])
    @page(json_api=True)
    async def stats_json(self, request, session):
        params = Params(request)
        topic = params.text("topic")
        if topic is not None and self.topics.get(topic) is None:
            raise BadParameter("topic", f"no such topic: {topic!r}")
        since, until, bucket = time_range(params, self.reactor.seconds())
        params.finish()
        store = self.store
        span = until - since
        current = await store.stats(StatsQuery(topic=topic, since=since, until=until, bucket=bucket, top=100))
        previous = await store.stats(StatsQuery(topic=topic, since=since - span, until=since, bucket=bucket, top=100))
        people = await queries.author_sentiment(store, topic, since, until)
        per_topic = await queries.topic_volume(store, since, until) if topic is None else []
        terms = await trending_terms(store, topic, since, until, self._own_topics(topic))
        return self._json(
            request,
            200,
            {
                "topic": topic,
                "since": iso8601(since),
                "until": iso8601(until),
                "bucket": bucket,
                "count": current["count"],
                "previous_count": previous["count"],
                "sentiment": current["sentiment"],
                "labels": current["labels"],
                "engagement": current["engagement"],
                "volume": current["volume"],
                "top_authors": {k: v[:10] for k, v in current["top_authors"].items()},
                "advocates": people["advocates"],
                "detractors": people["detractors"],
                "share_of_voice": current["share_of_voice"],
                "topics": per_topic,
                "top_hashtags": current["top_hashtags"][:10],
                "top_terms": terms["top"],
                "trending": {
                    "hashtags": trending(current["top_hashtags"], previous["top_hashtags"], "tag"),
                    "terms": terms["trending"],
                },
            },
        )

    def _own_topics(self, topic: Optional[str]) -> list:
        """The topics whose own words trending terms leave out."""
        return [self.topics.get(topic)] if topic is not None else list(self.topics.topics)

    # -- stories -------------------------------------------------------------

    def _story_panel(self, topic: Optional[str], chosen: str) -> dict[str, Any]:
        """
        What the dashboard's Stories panel shows: the stories seen in the
        range, the rising ones first, then the largest (the panel's
        template, C{_stories.html}, is also served alone for its refresh).
        """
        since = self.reactor.seconds() - RANGES[chosen][0]
        # The clusterer's "rising" are only the stories growing fast against
        # their own past; the panel fills up with the largest of the others.
        rising = self.stories.list(topic, since, PANEL_STORIES, "rising")
        seen = {st["id"] for st in rising}
        largest = [st for st in self.stories.list(topic, since, PANEL_STORIES, "size") if st["id"] not in seen]
        shown = [{**st, "rising": True} for st in rising] + [{**st, "rising": False} for st in largest]
        return {
            "stories": shown[:PANEL_STORIES],
            "stories_enabled": self.stories.enabled,
            "stories_topic": topic or "",
            "stories_range": chosen,
            "stories_range_label": RANGES[chosen][2],
        }

    @app.route("/ui/stories", methods=["GET"])
    @page()
    async def stories_panel(self, request, session):
        """The dashboard's Stories panel alone, as HTML, for its refresh."""
        params = Params(request)
        topic = params.text("topic")
        if topic is not None and self.topics.get(topic) is None:
            raise BadParameter("topic", f"no such topic: {topic!r}")
        chosen = params.choice("range", list(RANGES)) or "24h"
        params.finish()
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        html = self.env.get_template("_stories.html").render(**self._story_panel(topic, chosen))
        return html.encode("utf-8")

    @app.route("/ui/stories.json", methods=["GET"])
    @page(json_api=True)
    async def stories_json(self, request, session):
        """
        Stories for the live feed's choice and the map's legend: the
        largest (or C{order=rising}) of a topic, or those named by C{ids}
        (comma-separated).
        """
        params = Params(request)
        topic = params.text("topic")
        order = params.choice("order", ("size", "rising")) or "size"
        limit = params.integer("limit", STORY_CHOICES, 1, 200)
        ids = params.text("ids")
        params.finish()
        if ids is not None:
            wanted = [i for i in ids.split(",") if i][:200]
            if not all(STORY_ID.fullmatch(i) for i in wanted):
                raise BadParameter("ids", "must be story ids separated by commas")
            found = [self.stories.get(i) for i in wanted] if self.stories.enabled else []
            stories = [s for s in found if s is not None]
        else:
            stories = self.stories.list(topic, None, limit, order)
        return self._json(request, 200, {"enabled": self.stories.enabled, "stories": [story_brief(s) for s in stories]})


def trending(current: list[dict], previous: list[dict], key: str, limit: int = 10) -> list[dict]:
    """
    What rose against its own baseline: counts in the range against the
    previous range of the same length.  Needs at least 2 mentions now and
    half as many again as before; ranked by the ratio, weighted by volume.
    """
    before = {row[key]: row["count"] for row in previous}
    rising = []
    for row in current:
        now, then = row["count"], before.get(row[key], 0)
        if now < 2 or now < 1.5 * then + 1:
            continue
        ratio = (now + 1) / (then + 1)
        rising.append(
            {key: row[key], "count": now, "previous": then, "change": None if then == 0 else (now - then) / then,
             "score": ratio * math.log1p(now)}
        )  # fmt: skip
    rising.sort(key=lambda r: (-r["score"], r[key]))
    return rising[:limit]
