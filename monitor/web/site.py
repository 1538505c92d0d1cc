"""
The hub's web endpoint: one C{Site} that serves the pages (L{WebUI}), the
JSON API (L{Api}), the live channel at C{/ws} and the static files, with the
same security headers on every response.
"""

from __future__ import annotations

import json
import os
import re
import socket
from urllib.parse import urlsplit

from twisted.application import strports
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.filepath import FilePath
from twisted.web.pages import errorPage, notFound
from twisted.web.resource import Resource
from twisted.web.static import File

from monitor.service import OrderedMultiService
from monitor.web.hosts import HostCheck
from monitor.web.limits import LimitedSite, body_policy
from monitor.web.push import PushHub
from monitor.web.setup import SetupLink
from monitor.web.ui import WebUI

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


class JsonError(Resource):
    """
    An API refusal made before the API's routes see the request, in the
    API's form: C{{"error": ..., "parameter": ...}}.
    """

    isLeaf = True

    def __init__(self, status: int, message: str, parameter: str) -> None:
        super().__init__()
        self.status = status
        self.body = json.dumps({"error": message, "parameter": parameter}).encode("utf-8")

    def render(self, request):
        request.setResponseCode(self.status)
        request.setHeader(b"content-type", b"application/json; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        return self.body


class Root(Resource):
    """
    Dispatch on the first path segment.  The API and the pages are Klein
    apps that expect the whole path, so the segment is given back to them.
    """

    def __init__(self, ui, api, ws, static, tiles: str = "", hosts: HostCheck | None = None) -> None:
        super().__init__()
        self.hosts = hosts or HostCheck()
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
        if not self.hosts.allows(request.getHeader(b"host"), request.isSecure()):
            # DNS rebinding: see monitor.web.hosts.
            return errorPage(421, "Misdirected Request", "This hub does not answer to that host name; see [web] hosts.")
        if any(b"\x00" in segment for segment in (name, *request.postpath)):
            if name == b"api":
                return JsonError(400, "a path may not contain a NUL byte", "path")
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


class HubSite(LimitedSite):
    """
    The hub's site.  Quiet: no "Starting factory" lines, and a line per
    request only when C{[web] access_log} asks for one ("-": in the hub's
    log; a path: that file, in the combined log format).
    """

    noisy = False

    def __init__(self, resource, policy, access_log: str = "") -> None:
        super().__init__(resource, policy, logPath=access_log if access_log not in ("", "-") else None)
        self.access = access_log != ""

    def log(self, request):
        if self.access:
            super().log(request)


class WebService(OrderedMultiService):
    """
    The hub's one port: the pages (C{ui}), the API (C{api}), the live
    channel (C{push}) and the static files behind the same headers, with
    the users' sessions and the live channel as children, so that they
    start before the port opens and stop after it closes.

    @param web: the C{[web]} section (its endpoint, hosts, limits, access
        log and map tiles).
    @param setup: the one-time link to the first admin, said at start.
    """

    name = "web"
    log = Logger()

    def __init__(self, web: dict, users, push: PushHub, setup: SetupLink, ui: WebUI, api, reactor=None) -> None:
        super().__init__(reactor)
        reactor = self.reactor
        self.endpoint = web["endpoint"]
        self.users = users
        self.push = push
        self.setup = setup
        self.ui = ui
        static = StaticFiles(FilePath(STATIC).path)
        self.root = Root(
            ui.resource(), api.resource(), push.resource, static, web["tile_url"], HostCheck(web["hosts"] or ())
        )
        self.site = HubSite(self.root, body_policy(web), access_log=web["access_log"])
        self.site.displayTracebacks = False
        self.port = strports.service(web["endpoint"], self.site, reactor=reactor)
        self.port.setName("port")
        for child in (users, push, self.port):
            child.setServiceParent(self)

    def listening(self) -> Deferred:
        """
        The listening port, once open (C{None} if it could not be).
        """
        waiting = getattr(self.port, "_waitingForPort", None)
        d = Deferred()
        if waiting is None:
            d.callback(None)
            return d

        def got(port):
            d.callback(port)
            return port

        waiting.addCallbacks(got, lambda f: (d.callback(None), f)[1])
        return d

    async def url(self) -> str:
        """
        The address people open: C{http://127.0.0.1:8080/}.
        """
        port = await self.listening()
        host = port.getHost() if port is not None else None
        if not isinstance(host, (IPv4Address, IPv6Address)):
            return self.endpoint
        name = host.host
        if name in ("0.0.0.0", "::"):
            name = socket.gethostname()
        elif isinstance(host, IPv6Address):
            name = f"[{name}]"
        scheme = "https" if self.endpoint.startswith("ssl:") else "http"
        return f"{scheme}://{name}:{host.port}/"

    async def announce(self) -> None:
        """
        The last lines of the start: while there is no user, the one-time
        setup link; always, where the web UI is.
        """
        url = await self.url()
        token = await self.setup.open_if_needed()
        if token:
            self.log.info(
                "no user yet: create the first admin at {url}setup/{token} (the link is also in {path})",
                url=url,
                token=token,
                path=self.setup.path,
            )
        self.log.info("monitor is running: the web UI and the API are at {url}", url=url)
