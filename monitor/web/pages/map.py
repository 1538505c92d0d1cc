"""
The map: placed posts coloured by story (C{/ui/geo.json}).
"""

from __future__ import annotations

from klein import Klein

from monitor.web.pages.base import RANGES, Area, Shell, story_brief, page, time_range
from monitor.web.params import Params


class MapPages(Area):
    """
    C{/map} and C{/ui/geo.json}.
    """

    app = Klein()

    def __init__(self, shell: Shell, store, topics, stories, tile_url: str = "", tile_attribution: str = "") -> None:
        super().__init__(shell)
        self.store = store
        self.topics = topics
        self.stories = stories
        self.tile_url = tile_url
        self.tile_attribution = tile_attribution

    @app.route("/map", methods=["GET"])
    @page()
    async def map(self, request, session):
        return self._render(
            request,
            session,
            "map.html",
            active="map",
            stories_enabled=self.stories.enabled,
            topics=self._topic_names(),
            ranges=[(k, v[2]) for k, v in RANGES.items()],
            tile_url=self.tile_url,
            tile_attribution=self.tile_attribution,
        )

    @app.route("/ui/geo.json", methods=["GET"])
    @page(json_api=True)
    async def geo_json(self, request, session):
        params = Params(request)
        topic = params.text("topic")
        since, until, _ = time_range(params, self.reactor.seconds())
        limit = params.integer("limit", 1000, 1, 5000)
        params.finish()
        posts = await self.store.geo_posts(topic, since, until, limit)
        # The stories of these posts, by id, so the map's legend can name them.
        stories = {}
        for sid in {p.get("story") for p in posts} - {None}:
            found = self.stories.get(sid)
            if found is not None:
                stories[sid] = story_brief(found)
        return self._json(request, 200, {"posts": posts, "stories": stories})
