"""
The pages of one hub, one area at a time.

Each area (L{monitor.web.pages}: sign-in, dashboard, live feed, map, topics,
alerts, posts, models, sources, admin) is a Klein app of its own that
receives only the collaborators it uses, and shares the session and role
guard of L{monitor.web.pages.base}.  L{WebUI} builds them and finds the area
of a request by its first path segment (the second under C{/ui/}), handing
it the whole path.
"""

from __future__ import annotations

from typing import Optional

from twisted.web.resource import Resource

from monitor.web.pages.admin import AdminPages
from monitor.web.pages.alerts import AlertPages
from monitor.web.pages.auth import AuthPages
from monitor.web.pages.base import RANGES, Area, Shell, StoryView
from monitor.web.pages.dashboard import DashboardPages
from monitor.web.pages.live import LivePages
from monitor.web.pages.map import MapPages
from monitor.web.pages.models import ModelPages
from monitor.web.pages.posts import PostPages
from monitor.web.pages.sources import SourcePages
from monitor.web.pages.topics import TopicPages
from monitor.status import StatusService

__all__ = ["WebUI", "RANGES"]

#: The area of each first path segment (and of each C{/ui/} name).
_BY_SEGMENT = {
    b"": "auth", b"login": "auth", b"logout": "auth", b"setup": "auth", b"account": "auth",
    b"dashboard": "dashboard", b"live": "live", b"map": "map", b"topics": "topics", b"alerts": "alerts",
    b"posts": "posts", b"models": "models", b"sources": "sources", b"admin": "admin",
}  # fmt: skip
_BY_UI_NAME = {
    b"stats.json": "dashboard", b"stories": "dashboard", b"stories.json": "dashboard", b"recent.json": "live",
    b"geo.json": "map", b"feedback": "models", b"feedback.json": "models", b"sources.json": "sources",
}  # fmt: skip


class WebUI:
    """
    The pages of one hub: its areas, built from the parts they use.
    """

    def __init__(
        self,
        users,
        reactor,
        *,
        store,
        topics,
        sources=(),
        status: Optional[StatusService] = None,
        stories: Optional[StoryView] = None,
        alerts=None,
        feedback=None,
        learner=None,
        learning=None,
        rescorer=None,
        setup=None,
        config_path: str = "etc/monitor.toml",
        tile_url: str = "",
        tile_attribution: str = "",
        cookie_secure: bool = False,
    ) -> None:
        shell = Shell(users, reactor, cookie_secure=cookie_secure)
        stories = stories or StoryView()
        self.areas: dict[str, Area] = {
            "auth": AuthPages(shell, setup=setup, config_path=config_path),
            "dashboard": DashboardPages(shell, store, topics, stories, learner, learning),
            "live": LivePages(shell, store, topics, sources, stories),
            "map": MapPages(shell, store, topics, stories, tile_url=tile_url, tile_attribution=tile_attribution),
            "topics": TopicPages(shell, store, topics, sources),
            "alerts": AlertPages(shell, alerts, topics, sources),
            "posts": PostPages(shell, store, topics, sources, stories),
            "models": ModelPages(shell, feedback, learner, rescorer),
            "sources": SourcePages(shell, status),
            "admin": AdminPages(shell),
        }

    @staticmethod
    def area_of(segments: list[bytes]) -> str:
        """
        The name of the area that answers a path, by its segments (the
        sign-in area answers unknown paths with its 404 page).
        """
        if segments and segments[0] == b"ui":
            return _BY_UI_NAME.get(segments[1] if len(segments) > 1 else b"", "auth")
        return _BY_SEGMENT.get(segments[0] if segments else b"", "auth")

    def resource(self) -> Resource:
        return _Areas(self)

    @staticmethod
    def routes():
        """Every area's rules (L{werkzeug.routing.Rule}), for the tests that walk them."""
        for area in (AuthPages, DashboardPages, LivePages, MapPages, TopicPages, AlertPages, PostPages, ModelPages,
                     SourcePages, AdminPages):  # fmt: skip
            yield from area.app.url_map.iter_rules()


class _Areas(Resource):
    """
    Hand a request to its area's Klein app, with the whole path (as
    L{monitor.web.site.Root} hands it here).
    """

    def __init__(self, ui: WebUI) -> None:
        super().__init__()
        self.ui = ui
        self._resources = {name: area.resource() for name, area in ui.areas.items()}

    def getChildWithDefault(self, name, request):
        request.prepath.pop()
        request.postpath.insert(0, name)
        return self._resources[self.ui.area_of(request.postpath)]

    def render(self, request):
        return self._resources["auth"].render(request)
