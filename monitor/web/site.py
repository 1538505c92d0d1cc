"""
The hub's web endpoint: one C{Site} that serves the pages (L{WebUI}), the
JSON API (L{Api}), the live channel at C{/ws} and the static files, with the
same security headers on every response.
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

from twisted.application import strports
from twisted.python.filepath import FilePath
from twisted.web.pages import errorPage, notFound
from twisted.web.resource import Resource
from twisted.web.static import File

from monitor.service import OrderedMultiService
from monitor.web.limits import LimitedSite, body_policy
from monitor.web.push import PushHub
from monitor.web.ui import WebUI
from monitor.web.users import Users

__all__ = ["Root", "StaticFiles", "WebService", "STATIC", "content_security_policy"]

#: The static files (CSS, our scripts, and the vendor/ folder the build fills).
STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")

_HOST = re.compile(r"[A-Za-z0-9.\-]+(:\d{1,5})?|\[[0-9A-Fa-f:.]+\](:\d{1,5})?")


def tile_origin(tile_url: str) -> str:
    """
    The CSP source that allows a Leaflet tile URL template: its scheme and
    host, with a C{{s}} subdomain placeholder widened to C{*.}.
    """
    if not tile_url:
        return ""
    parts = urlsplit(tile_url.replace("{s}.", "sub."))
    host = parts.netloc
    if tile_url.split("//", 1)[-1].startswith("{s}."):
        host = "*." + host.split(".", 1)[1]
    return f"{parts.scheme}://{host}"


def content_security_policy(host: bytes | None, tiles: str) -> bytes:
    """
    No inline script or style, nothing from other sites except map tiles,
    never in a frame.  The WebSocket is allowed explicitly because browsers
    differ on whether C{'self'} covers C{ws:}.
    """
    connect = "'self'"
    if host:
        h = host.decode("latin-1")
        if _HOST.fullmatch(h):
            connect += f" ws://{h} wss://{h}"
    images = "'self' data:" + (f" {tiles}" if tiles else "")
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; "
        f"img-src {images}; connect-src {connect}; font-src 'self'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"
    ).encode("ascii")


class StaticFiles(File):
    """
    C{/static/}: files only, never a directory listing, with the types a
    browser needs under C{nosniff}.
    """

    contentTypes = dict(
        File.contentTypes,
        **{
            ".js": "text/javascript; charset=utf-8",
            ".css": "text/css; charset=utf-8",
            ".json": "application/json",
            ".svg": "image/svg+xml",
            ".png": "image/png",
            ".map": "application/json",
        },
    )

    def directoryListing(self):
        return notFound()

    def render_GET(self, request):
        request.setHeader(b"cache-control", b"no-cache")
        return super().render_GET(request)


class Root(Resource):
    """
    Dispatch on the first path segment.  The API and the pages are Klein
    apps that expect the whole path, so the segment is given back to them.
    """

    def __init__(self, ui, api, ws, static, tiles: str = "") -> None:
        super().__init__()
        self.ui = ui
        self.api = api
        self.ws = ws
        self.static = static
        self.tiles = tile_origin(tiles)

    def getChildWithDefault(self, name, request):
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"x-frame-options", b"DENY")
        request.setHeader(b"referrer-policy", b"same-origin")
        request.setHeader(b"cross-origin-opener-policy", b"same-origin")
        request.setHeader(b"content-security-policy", content_security_policy(request.getHeader(b"host"), self.tiles))
        if any(b"\x00" in segment for segment in (name, *request.postpath)):
            return errorPage(400, "Bad path", "A path may not contain a NUL byte.")
        if name == b"ws":
            return self.ws
        if name == b"static":
            return self.static
        request.prepath.pop()
        request.postpath.insert(0, name)
        if name in (b"api", b"healthz", b"metrics"):
            return self.api
        return self.ui


class WebService(OrderedMultiService):
    """
    Users, the live channel and the listening port, as one child of the hub.
    Sets C{hub.push} (for C{publish}) and C{hub.users}, registers the live
    channel as a sink of the pipeline, and lets stored API tokens in.
    """

    name = "web"

    def __init__(self, hub, reactor=None) -> None:
        super().__init__(reactor)
        reactor = self.reactor
        web = hub.config.web
        self.users = Users(hub.store, reactor, idle=web.get("session_hours", 12) * 3600)
        self.push = PushHub(
            reactor,
            users=self.users,
            sessions=self.users.sockets,
            per_user=web.get("ws_per_user", 16),
            sources=hub.sources,
            nodes=_Lazy(hub, "nodes"),
            queue=hub.queue,
            metrics=hub.metrics,
            queue_limit=web.get("ws_queue", 1000),
            interval=web.get("ws_interval", 0.25),
            stall_timeout=web.get("ws_stall_timeout", 30.0),
            ping_interval=web.get("ws_ping_interval", 20.0),
            max_message=web.get("ws_max_message", 16384),
            message_rate=web.get("ws_message_rate", 2.0),
            message_burst=web.get("ws_message_burst", 20),
        )
        hub.users = self.users
        hub.push = self.push
        hub.pipeline.add_sink(self.push)
        auth = getattr(hub.api, "auth", None)
        if auth is not None and hasattr(auth, "stored"):
            auth.stored = self.users
        self.ui = WebUI(
            hub,
            self.users,
            self.push,
            reactor,
            tile_url=web.get("tile_url", ""),
            tile_attribution=web.get("tile_attribution", ""),
            cookie_secure=web.get("cookie_secure", False),
        )
        static = StaticFiles(FilePath(STATIC).path)
        self.root = Root(self.ui.resource(), hub.api.resource(), self.push.resource, static, web.get("tile_url", ""))
        self.site = LimitedSite(self.root, body_policy(web))
        self.site.displayTracebacks = False
        self.port = strports.service(web["endpoint"], self.site, reactor=reactor)
        self.port.setName("port")
        for child in (self.users, self.push, self.port):
            child.setServiceParent(self)


class _Lazy:
    """
    C{hub.nodes}, looked up when needed: the nodes part may be attached to
    the hub after the web service is built, or not at all.
    """

    def __init__(self, hub, name: str) -> None:
        self._hub = hub
        self._name = name

    @property
    def status(self):
        target = getattr(self._hub, self._name, None)
        return getattr(target, "status", None)
