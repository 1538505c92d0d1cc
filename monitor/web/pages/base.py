"""
What every area of the pages shares: the templates, the session and role
guard (with CSRF and Origin checks) in L{page}, and the small helpers the
templates use.  An area (L{Area}) is a Klein app of its own, held by an
object that receives only the collaborators it uses; L{monitor.web.ui}
mounts them.

Pages are Jinja2 templates with autoescaping always on; data that scripts
need comes from the C{/ui/*.json} routes or C{data-} attributes, never from
text placed inside a script, and the scripts set post text with
C{textContent}.

Every route needs a session, except the login and setup pages.  Every
request that changes something must carry the session's CSRF token (a field
C{csrf} of the form body, never the query string, or the header
C{X-CSRF-Token}), and its Origin, when the browser sends one, must be this
site.
"""

from __future__ import annotations

import functools
import hmac
import json
import os
from typing import Any, Optional
from urllib.parse import urlencode, urlsplit

import jinja2
from klein import Klein
from markupsafe import Markup, escape
from twisted.internet.defer import CancelledError, ensureDeferred
from twisted.logger import Logger
from werkzeug.exceptions import MethodNotAllowed, NotFound

from monitor.model import iso8601, parse_time
from monitor.web.limits import body_fields
from monitor.web.params import BadParameter, Params
from monitor.web.push import SESSION_COOKIE, PushHub
from monitor.web.users import HashingBusy

__all__ = ["Area", "Shell", "StoryView", "page", "RANGES", "NAV", "time_range"]

TEMPLATES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "templates")
VENDOR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "static", "vendor")

#: Dashboard ranges: name -> (seconds, bucket seconds, label).
RANGES = {
    "15m": (900, 15, "Last 15 minutes"),
    "1h": (3600, 60, "Last hour"),
    "6h": (6 * 3600, 300, "Last 6 hours"),
    "24h": (86400, 1800, "Last 24 hours"),
    "7d": (7 * 86400, 3 * 3600, "Last 7 days"),
    "30d": (30 * 86400, 12 * 3600, "Last 30 days"),
}
_NICE_BUCKETS = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400)

NAV = (
    ("dashboard", "/dashboard", "Dashboard", "viewer"),
    ("live", "/live", "Live feed", "viewer"),
    ("map", "/map", "Map", "viewer"),
    ("posts", "/posts", "Posts", "viewer"),
    ("topics", "/topics", "Topics", "viewer"),
    ("sources", "/sources", "Sources", "viewer"),
    ("alerts", "/alerts", "Alerts", "viewer"),
    ("models", "/models", "Models", "viewer"),
    ("admin", "/admin", "Admin", "admin"),
)

#: Stories the dashboard's panel shows, and the live feed's choice offers.
PANEL_STORIES = 8
STORY_CHOICES = 30
#: The sparkline's drawing box (SVG user units).
SPARK_W, SPARK_H = 120, 28


def safe_next(target: Optional[str]) -> str:
    """
    Where to go after logging in: a path on this site only.
    """
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/dashboard"
    if urlsplit(target).netloc or any(ord(c) < 32 for c in target):
        return "/dashboard"
    return target


def _when(ts: Optional[float]) -> str:
    return iso8601(ts) if ts else ""


def _stamp(value: Any, empty: str = "") -> Markup:
    """
    A time (unix seconds or ISO 8601) as C{<time class="ago">}: the page's
    script shows it as "5 min ago" with the exact local time on hover;
    without script it reads as UTC.
    """
    if value is None or value == "":
        return Markup(escape(empty))
    try:
        ts = float(value) if isinstance(value, (int, float)) else parse_time(str(value))
    except (ValueError, OverflowError):
        return Markup(escape(str(value)))
    iso = iso8601(ts)
    return Markup('<time class="ago" datetime="{}">{} UTC</time>').format(iso, iso[:16].replace("T", " "))


def _link(url: Optional[str]) -> str:
    """
    A post's link only if it is http or https: a C{javascript:} URL from
    some source must never become a clickable link.
    """
    if not isinstance(url, str):
        return ""
    try:
        scheme = urlsplit(url.strip()).scheme.lower()
    except ValueError:
        return ""
    return url.strip() if scheme in ("http", "https") else ""


def _sparkline(counts: Any) -> dict[str, Any]:
    """
    A story's posts per minute as an SVG polyline and the area under it
    (drawn by the page, no script): the points, the peak and the total.
    """
    values = [max(0, int(v)) for v in counts or () if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not values:
        values = [0]
    peak = max(values)
    step = SPARK_W / max(1, len(values) - 1)
    points = []
    for i, v in enumerate(values):
        y = SPARK_H - 1 - (v / peak * (SPARK_H - 3) if peak else 0)
        points.append(f"{i * step:.1f},{y:.1f}")
    line = " ".join(points)
    area = f"0,{SPARK_H} {line} {(len(values) - 1) * step:.1f},{SPARK_H}"
    return {"line": line, "area": area, "peak": peak, "total": sum(values), "minutes": len(values),
            "width": SPARK_W, "height": SPARK_H}  # fmt: skip


def _split(sentiment: Any) -> list[dict[str, Any]]:
    """
    A story's sentiment counts as bar segments (x and width in percent of
    the bar, and the share rounded for its label), positive first.
    """
    counts = {k: int((sentiment or {}).get(k) or 0) for k in ("positive", "neutral", "negative")}
    total = sum(counts.values())
    out, x = [], 0.0
    for k, n in counts.items():
        width = 100.0 * n / total if total else 0.0
        out.append({"label": k, "count": n, "x": round(x, 2), "width": round(width, 2),
                    "share": round(width) if total else 0})  # fmt: skip
        x += width
    return out


def _story_name(story: dict[str, Any], most: int = 4) -> str:
    """A story as a person reads it: its first keywords."""
    terms = [str(t) for t in (story.get("terms") or [])[:most]]
    return " · ".join(terms) if terms else f"story {story.get('id', '')}"


def story_brief(story: dict[str, Any]) -> dict[str, Any]:
    """What a page needs to name a story and rank it."""
    return {"id": story["id"], "terms": list(story.get("terms") or []), "size": story.get("size", 0),
            "name": _story_name(story)}  # fmt: skip


def time_range(params: Params, now: float) -> tuple[float, float, int]:
    """
    C{(since, until, bucket)} from C{range} or C{since}/C{until}.
    """
    since, until = params.time("since"), params.time("until")
    chosen = params.choice("range", list(RANGES))
    if since is not None or until is not None:
        until = now if until is None else until
        since = until - 86400 if since is None else since
        if until <= since:
            raise BadParameter("until", "must be after since")
        span = until - since
        bucket = next((b for b in _NICE_BUCKETS if span / b <= 120), _NICE_BUCKETS[-1])
        return since, until, bucket
    span, bucket, _ = RANGES[chosen or "24h"]
    return now - span, now, bucket


class StoryView:
    """
    The stories as the pages read them (L{monitor.stories.StoryClusterer}),
    or none while stories are off.
    """

    def __init__(self, clusterer=None, enabled: bool = False) -> None:
        self.clusterer = clusterer
        self.enabled = bool(enabled and clusterer is not None)

    def list(self, topic: Optional[str] = None, since: Optional[float] = None, limit: int = PANEL_STORIES,
             order: str = "rising", until: Optional[float] = None) -> list[dict[str, Any]]:  # fmt: skip
        """Stories as the API gives them; none while stories are off."""
        if not self.enabled:
            return []
        return self.clusterer.list(topic=topic, since=since, until=until, limit=limit, order=order)

    def get(self, story_id: Optional[str]) -> Optional[dict[str, Any]]:
        """One story the hub still holds (a faded one is C{None})."""
        if not story_id or self.clusterer is None:
            return None
        return self.clusterer.get(story_id)


class Shell:
    """
    What the areas share: the sessions (L{monitor.web.users.Users}), the
    templates and their filters, the reactor and the cookie policy.
    """

    def __init__(self, users, reactor, cookie_secure: bool = False) -> None:
        self.users = users
        self.reactor = reactor
        self.cookie_secure = cookie_secure
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["when"] = _when
        self.env.filters["stamp"] = _stamp
        self.env.filters["link"] = _link
        self.env.filters["number"] = lambda n: f"{n:,}" if isinstance(n, int) else n
        self.env.filters["sparkline"] = _sparkline
        self.env.filters["split"] = _split
        self.env.filters["story_name"] = _story_name


def page(role: str = "viewer", json_api: bool = False):
    """
    Wrap a handler: find the session (or send the visitor to log in), check
    the role, check the CSRF token and Origin of anything but GET, and turn
    errors into an error page.  The handler gets C{(request, session, ...)}.
    """

    def decorate(method):
        @functools.wraps(method)
        def wrapper(self, request, *args, **kwargs):
            return ensureDeferred(self._guarded(method, role, json_api, request, *args, **kwargs))

        return wrapper

    return decorate


class Area:
    """
    One area of the pages: a subclass has its own C{app = Klein()}, its
    routes, and the collaborators it uses; this base gives it the guard,
    rendering and the error pages.
    """

    app = Klein()
    log = Logger()

    def __init__(self, shell: Shell) -> None:
        self.shell = shell
        self.users = shell.users
        self.reactor = shell.reactor
        self.env = shell.env
        self.cookie_secure = shell.cookie_secure

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        # Every area answers a wrong path or method with the same pages.
        cls.app.handle_errors(NotFound)(Area.not_found)
        cls.app.handle_errors(MethodNotAllowed)(Area.not_allowed)

    def resource(self):
        return self.app.resource()

    # -- plumbing ------------------------------------------------------------

    async def _guarded(self, method, role, json_api, request, *args, **kwargs):
        try:
            session = await self.session(request)
            if session is None:
                if json_api:
                    return self._json(request, 401, {"error": "log in first"})
                if request.method in (b"GET", b"HEAD"):
                    return self._redirect(
                        request, "/login?" + urlencode({"next": request.uri.decode("utf-8", "replace")})
                    )
                return self._error(request, None, 403, "Your session has ended. Log in again.")
            if not session.may(role):
                message = f"This needs the {role} role; you are {session.role}."
                if json_api:
                    return self._json(request, 403, {"error": message})
                return self._error(request, session, 403, message)
            if request.method not in (b"GET", b"HEAD"):
                problem = self._forged(request, session.csrf)
                if problem:
                    if json_api:
                        return self._json(request, 403, {"error": problem})
                    return self._error(request, session, 403, problem)
            return await method(self, request, session, *args, **kwargs)
        except CancelledError:
            raise
        except BadParameter as e:
            return self._json(request, 400, {"error": e.message, "parameter": e.name})
        except HashingBusy:
            request.setHeader(b"retry-after", b"5")
            return self._error(request, None, 503, "The hub is checking many passwords at once. Try again in a moment.")
        except Exception:
            self.log.failure("page {uri} failed", uri=request.uri)
            if json_api:
                return self._json(request, 500, {"error": "internal error; see the hub's log"})
            return self._error(request, None, 500, "Something went wrong on the hub. The details are in its log.")

    def _forged(self, request, expected: str) -> Optional[str]:
        """
        Why a state-changing request must be refused, or C{None}.
        """
        origin = request.getHeader(b"origin")
        if origin is not None and origin != b"null":
            if not PushHub.same_origin(
                origin.decode("latin-1"), (request.getHeader(b"host") or b"").decode("latin-1"), request.isSecure()
            ):
                return "This request came from another site and was refused."
        given = request.getHeader(b"x-csrf-token")
        if given is None:
            # Never from the query string: URLs end up in logs and Referer.
            values = body_fields(request).get(b"csrf") or [b""]
            given = values[-1]
        if not given or not hmac.compare_digest(given, expected.encode("ascii")):
            return "The form's security token (CSRF) is missing or out of date. Reload the page and try again."
        return None

    async def session(self, request):
        token = request.getCookie(SESSION_COOKIE.encode("ascii"))
        if not token:
            return None
        try:
            return await self.users.session(token.decode("ascii"))
        except UnicodeDecodeError:
            return None

    @staticmethod
    def _form(request) -> dict[str, list[str]]:
        form: dict[str, list[str]] = {}
        for k, vs in request.args.items():
            form[k.decode("utf-8", "replace")] = [v.decode("utf-8", "replace") for v in vs]
        return form

    @staticmethod
    def _one(form, name: str, default: str = "") -> str:
        values = form.get(name)
        return values[-1] if values else default

    def _render(self, request, session, template: str, status: int = 200, **context) -> bytes:
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        nav = [item for item in NAV if session is not None and session.may(item[3])]
        html = self.env.get_template(template).render(
            session=session,
            csrf=session.csrf if session else "",
            nav=nav,
            active=context.pop("active", ""),
            vendor=self._vendor(),
            **context,
        )
        return html.encode("utf-8")

    @staticmethod
    def _vendor() -> dict[str, bool]:
        """
        Which front-end libraries the build put in place, so a page can say
        what is missing instead of failing.
        """
        return {
            "chart": os.path.exists(os.path.join(VENDOR, "chart.umd.min.js")),
            "leaflet": os.path.exists(os.path.join(VENDOR, "leaflet", "leaflet.js")),
            "cluster": os.path.exists(os.path.join(VENDOR, "leaflet", "leaflet.markercluster.js")),
            "world": os.path.exists(os.path.join(VENDOR, "countries-50m.json")),
        }

    def _error(self, request, session, status: int, message: str) -> bytes:
        return self._render(request, session, "error.html", status=status, status_code=status, message=message)

    @staticmethod
    def _json(request, status: int, body: Any) -> bytes:
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"application/json; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")

    @staticmethod
    def _redirect(request, location: str) -> bytes:
        request.setResponseCode(303)
        request.setHeader(b"location", location.encode("utf-8"))
        request.setHeader(b"cache-control", b"no-store")
        return b""

    def _cookie(self, request, name: str, value: str, max_age: Optional[int] = None) -> None:
        request.addCookie(
            name,
            value,
            path="/",
            max_age=str(max_age) if max_age is not None else None,
            secure=bool(self.cookie_secure or request.isSecure()),
            httpOnly=True,
            sameSite="lax",
        )

    def not_found(self, request, failure):
        request.setResponseCode(404)
        if request.path.startswith(b"/ui/"):
            return self._json(request, 404, {"error": "no such route"})
        return self._render(request, None, "error.html", status=404, status_code=404, message="There is no such page.")

    def not_allowed(self, request, failure):
        return self._render(
            request, None, "error.html", status=405, status_code=405, message="That method is not allowed here."
        )

    def _topic_names(self) -> list[str]:
        return [t.name for t in self.topics.topics]

    def _sources(self) -> list[str]:
        return [s.name for s in self.sources]
