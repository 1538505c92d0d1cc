"""
The live feed (its posts arrive on C{/ws}; C{/ui/recent.json} fills it first).
"""

from __future__ import annotations

from typing import Any, Optional

from klein import Klein

from monitor.model import LABELS, SENTIMENTS
from monitor.store import STORY_ID, PostQuery
from monitor.web.pages.base import STORY_CHOICES, Area, Shell, story_brief, page
from monitor.web.params import Params


class LivePages(Area):
    """
    C{/live} and C{/ui/recent.json}.
    """

    app = Klein()

    def __init__(self, shell: Shell, store, topics, sources, stories) -> None:
        super().__init__(shell)
        self.store = store
        self.topics = topics
        self.sources = sources
        self.stories = stories

    @app.route("/live", methods=["GET"])
    @page()
    async def live(self, request, session):
        return self._render(
            request,
            session,
            "live.html",
            active="live",
            stories_enabled=self.stories.enabled,
            stories=[story_brief(st) for st in self.stories.list(limit=STORY_CHOICES, order="size")],
            story=self._live_story(request),
            topics=self._topic_names(),
            sources=self._sources(),
            sentiments=SENTIMENTS,
            labels=LABELS,
        )

    def _live_story(self, request) -> Optional[dict[str, Any]]:
        """
        The story the address asks the live feed for (C{?story=}), named if
        the hub still holds it.
        """
        wanted = self._one(self._form(request), "story")
        if not STORY_ID.fullmatch(wanted):
            return None
        found = self.stories.get(wanted)
        return story_brief(found) if found else {"id": wanted, "terms": [], "size": 0, "name": f"story {wanted}"}

    @app.route("/ui/recent.json", methods=["GET"])
    @page(json_api=True)
    async def recent_json(self, request, session):
        params = Params(request)
        query = PostQuery(
            topic=params.text("topic"),
            source=params.text("source"),
            sentiment=params.choice("sentiment", SENTIMENTS),
            label=params.choice("label", LABELS),
            limit=params.integer("limit", 50, 1, 200),
            story=params.story("story"),
        )
        params.finish()
        posts, _ = await self.store.query_posts(query)
        return self._json(request, 200, {"posts": posts})
