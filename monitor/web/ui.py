"""
The pages: login, dashboard, live feed, map, topics, posts, sources, admin.

A Klein app held by an object (C{WebUI}), so the hub's state is injected and
several hubs can run in one process.  Pages are Jinja2 templates with
autoescaping always on; data that scripts need comes from the C{/ui/*.json}
routes or C{data-} attributes, never from text placed inside a script, and
the scripts set post text with C{textContent}.

Every route needs a session, except the login page.  Every request that
changes something must carry the session's CSRF token (a field C{csrf} of
the form body, never the query string, or the header C{X-CSRF-Token}), and
its Origin, when the browser sends one, must be this site.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import hmac
import io
import json
import math
import os
import secrets
from typing import Any, Optional
from urllib.parse import urlencode, urlsplit

import jinja2
from klein import Klein
from markupsafe import Markup, escape
from twisted.internet.defer import CancelledError, Deferred, ensureDeferred, succeed
from twisted.internet.interfaces import IPushProducer
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from werkzeug.exceptions import MethodNotAllowed, NotFound
from zope.interface import implementer

from monitor.analysis.trending import trending_terms
from monitor.model import LABELS, SENTIMENTS, iso8601, parse_time
from monitor.query import parse as parse_query
from monitor.store import MAX_LIMIT, QUERY_SCAN, STORY_ID, PostQuery, StatsQuery
from monitor.web.limits import body_fields
from monitor.web.params import BadParameter, Params, post_query, row_id, store_problem
from monitor.web.forms import (
    BACKTEST_PERIODS,
    rule_fields,
    rule_form,
    rule_problems,
    rule_values,
    topic_form,
    topic_values,
)
from monitor.web.push import SESSION_COOKIE, PushHub, nodes_status
from monitor.web.model_line import sentiment_line
from monitor.web.tryit import post_segments, try_draft
from monitor.web.users import LOGIN_FORM_TTL, ROLES, HashingBusy, LoginGuard, UserError, check_name, check_new_password

__all__ = ["WebUI", "RANGES"]

TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
VENDOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static", "vendor")

#: The login form's pre-session cookie (there is no session yet; see
#: L{monitor.web.users.Users.open_login_form}).
LOGIN_COOKIE = "monitor_login"
#: The same for the first-run setup form.
SETUP_COOKIE = "monitor_setup"

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

#: Most rows one export writes.
EXPORT_MAX = 100_000
#: The posts page counts its matches up to this many ("10,000+").
COUNT_MOST = 10_000
#: Seconds a new API token waits for the page that shows it once.
NEW_TOKEN_TTL = 60
#: Posts a draft topic is tried on.
TRY_POSTS = 2000

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

#: What L{WebUI._check_password} returns for a refused attempt.
_THROTTLED = object()

_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _safe_next(target: Optional[str]) -> str:
    """
    Where to go after logging in: a path on this site only.
    """
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/dashboard"
    if urlsplit(target).netloc or any(ord(c) < 32 for c in target):
        return "/dashboard"
    return target


def _csv_cell(value: Any) -> Any:
    """
    Spreadsheets run a cell that starts with C{=}, C{+}, C{-} or C{@} as a
    formula; post text is written by strangers, so such cells get a quote.
    """
    if isinstance(value, str) and value.startswith(_FORMULA):
        return "'" + value
    return value


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


#: Stories the dashboard's panel shows, and the live feed's choice offers.
PANEL_STORIES = 8
STORY_CHOICES = 30
#: The sparkline's drawing box (SVG user units).
SPARK_W, SPARK_H = 120, 28


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


@implementer(IPushProducer)
class _Flow:
    """
    Backpressure for a long response: the request pauses us when the
    client reads slowly, and the exporter waits before the next page.
    """

    def __init__(self) -> None:
        self._waiting: Optional[Deferred] = None
        self.paused = False
        self.stopped = False

    def pauseProducing(self):
        self.paused = True

    def resumeProducing(self):
        self.paused = False
        if self._waiting is not None:
            d, self._waiting = self._waiting, None
            d.callback(None)

    def stopProducing(self):
        self.stopped = True
        self.resumeProducing()

    def ready(self) -> Deferred:
        if not self.paused:
            return succeed(None)
        self._waiting = Deferred()
        return self._waiting


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


class WebUI:
    """
    The pages of one hub.
    """

    app = Klein()
    log = Logger()

    def __init__(
        self,
        hub,
        users,
        push: PushHub,
        reactor,
        tile_url: str = "",
        tile_attribution: str = "",
        cookie_secure: bool = False,
        setup=None,
    ) -> None:
        self.hub = hub
        self.users = users
        self.push = push
        self.reactor = reactor
        self.tile_url = tile_url
        self.tile_attribution = tile_attribution
        self.cookie_secure = cookie_secure
        #: The first-run setup link (L{monitor.web.setup.SetupLink}), if any.
        self.setup = setup
        self.guard = LoginGuard(reactor)
        #: A token just created, by session key: (name, token, expires).
        self._new_tokens: dict[str, tuple[str, str, float]] = {}
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
                    return self._redirect(request, "/login?" + urlencode({"next": request.uri.decode("utf-8", "replace")}))
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
            if not PushHub.same_origin(origin.decode("latin-1"), (request.getHeader(b"host") or b"").decode("latin-1"), request.isSecure()):
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

    @app.handle_errors(NotFound)
    def not_found(self, request, failure):
        request.setResponseCode(404)
        if request.path.startswith(b"/ui/"):
            return self._json(request, 404, {"error": "no such route"})
        return self._render(request, None, "error.html", status=404, status_code=404, message="There is no such page.")

    @app.handle_errors(MethodNotAllowed)
    def not_allowed(self, request, failure):
        return self._render(request, None, "error.html", status=405, status_code=405, message="That method is not allowed here.")

    # -- login ---------------------------------------------------------------

    @app.route("/", methods=["GET"])
    def home(self, request):
        return self._redirect(request, "/dashboard")

    @app.route("/login", methods=["GET"])
    def login_page(self, request):
        return ensureDeferred(self._login_page(request))

    async def _login_page(self, request, status=200, error="", name=""):
        if status == 200 and await self.session(request) is not None:
            return self._redirect(request, "/dashboard")
        token, csrf = await self.users.open_login_form()
        self._cookie(request, LOGIN_COOKIE, token, max_age=LOGIN_FORM_TTL)
        first_run = (await self.users.count_users()) == 0
        next_page = self._one(self._form(request), "next")
        return self._render(
            request,
            None,
            "login.html",
            status=status,
            login_csrf=csrf,
            error=error,
            name=name,
            next=_safe_next(next_page),
            first_run=first_run,
            setup_file=self.setup.path if self.setup is not None else "",
            add_user=self._add_user_hint(),
        )

    def _add_user_hint(self, role: str = "admin") -> str:
        """
        The command that makes the first admin on the hub's machine, as it
        works when pasted there: this hub's twistd and configuration file.
        """
        from monitor.tap import twistd_command

        config = getattr(getattr(self.hub, "config", None), "path", "etc/monitor.toml")
        return twistd_command(config, "--add-user", "NAME", "--role", role)

    # -- first run -----------------------------------------------------------

    @app.route("/setup/<token>", methods=["GET"])
    def setup_page(self, request, token):
        return ensureDeferred(self._setup_page(request, token))

    async def _setup_page(self, request, token, status=200, errors=None, name=""):
        if self.setup is None or not await self.setup.valid(token):
            return self._setup_gone(request)
        csrf = secrets.token_urlsafe(32)
        self._cookie(request, SETUP_COOKIE, csrf, max_age=3600)
        return self._render(
            request, None, "setup.html", status=status, setup_csrf=csrf, token=token, errors=errors or {}, name=name, error=""
        )

    def _setup_gone(self, request) -> bytes:
        # The same answer for a used link and a wrong one: nothing to guess.
        return self._render(request, None, "setup-gone.html", status=404, add_user=self._add_user_hint("viewer"))

    @app.route("/setup/<token>", methods=["POST"])
    def setup_submit(self, request, token):
        return ensureDeferred(self._setup_submit(request, token))

    async def _setup_submit(self, request, token):
        if self.setup is None or not await self.setup.valid(token):
            return self._setup_gone(request)
        cookie = (request.getCookie(SETUP_COOKIE.encode("ascii")) or b"").decode("ascii", "replace")
        problem = self._forged(request, cookie) if cookie else "The setup form's security token (CSRF) is missing. Reload the page and try again."
        if problem:
            return self._error(request, None, 403, problem)
        form = self._form(request)
        name, password, again = self._one(form, "name").strip(), self._one(form, "password"), self._one(form, "again")
        errors = {}
        for check, value in ((check_name, name), (check_new_password, password)):
            try:
                check(value)
            except UserError as e:
                errors[e.field] = e.message
        if "password" not in errors and password != again:
            errors["again"] = "The two passwords differ."
        if not errors:
            try:
                # One submission at a time, and the store checks again.
                made = await self.setup.lock.run(self._first_admin, token, name, password)
            except UserError as e:
                errors[e.field] = e.message
            else:
                if not made:
                    return self._setup_gone(request)
        if errors:
            return await self._setup_page(request, token, 400, errors, name)
        self.setup.close()
        user_id, name, _ = await self.users.authenticate(name, password)
        session, _ = await self.users.open_session(user_id)
        self._cookie(request, SESSION_COOKIE, session)
        self._cookie(request, SETUP_COOKIE, "", max_age=0)
        self.log.info("first admin {user} created on the setup page", user=name)
        return self._redirect(request, "/dashboard")

    async def _first_admin(self, token: str, name: str, password: str) -> bool:
        if not await self.setup.valid(token):
            return False
        return await self.users.add_first_admin(name, password)

    @app.route("/login", methods=["POST"])
    def login(self, request):
        return ensureDeferred(self._login(request))

    async def _login(self, request):
        form = self._form(request)
        # The pre-session made when the form was served (login CSRF).
        cookie = request.getCookie(LOGIN_COOKIE.encode("ascii")) or b""
        expected = await self.users.take_login_form(cookie.decode("ascii", "replace"))
        problem = self._forged(request, expected) if expected else "missing"
        if problem:
            return self._error(request, None, 403, "The login form's security token (CSRF) is missing or out of date. Reload the page and try again.")
        name = self._one(form, "name").strip()
        password = self._one(form, "password")
        address = request.getClientAddress()
        where = getattr(address, "host", "?")
        try:
            user = await self._check_password(name, password, where)
        except HashingBusy:
            request.setHeader(b"retry-after", b"5")
            return await self._login_page(request, 503, "The hub is checking many passwords at once. Try again in a moment.", name)
        if user is _THROTTLED:
            self.log.warn("login throttled for {user} from {address}", user=name, address=where)
            return await self._login_page(request, 429, "Too many failed attempts. Wait a few minutes and try again.", name)
        if user is None:
            self.log.info("failed login for {user} from {address}", user=name, address=where)
            return await self._login_page(request, 401, "Wrong user name or password.", name)
        user_id, name, role = user
        token, _ = await self.users.open_session(user_id)
        self._cookie(request, SESSION_COOKIE, token)
        self._cookie(request, LOGIN_COOKIE, "", max_age=0)
        self.log.info("{user} logged in from {address}", user=name, address=where)
        return self._redirect(request, _safe_next(self._one(form, "next")))

    async def _check_password(self, name: str, password: str, address: str):
        """
        L{Users.authenticate} behind the login guard: the attempt is
        counted before the password is hashed, so a burst cannot outrun
        the count.  C{_THROTTLED} if refused without a check.
        """
        attempt = self.guard.admit(name, address)
        if attempt is None:
            return _THROTTLED
        user = None
        try:
            # HashingBusy goes up: a 503 from the login or the page wrapper.
            user = await self.users.authenticate(name, password)
        finally:
            attempt.finish(user is not None)
        return user

    @app.route("/logout", methods=["POST"])
    @page()
    async def logout(self, request, session):
        await self.users.close_session(session.key)
        self._cookie(request, SESSION_COOKIE, "", max_age=0)
        return self._redirect(request, "/login")

    # -- account -------------------------------------------------------------

    @app.route("/account", methods=["GET"])
    @page()
    async def account(self, request, session, errors=None, done=False):
        return self._render(request, session, "account.html", errors=errors or {}, done=done, active="account")

    @app.route("/account/password", methods=["POST"])
    @page()
    async def change_password(self, request, session):
        form = self._form(request)
        errors = {}
        where = getattr(request.getClientAddress(), "host", "?")
        checked = await self._check_password(session.user, self._one(form, "current"), where)
        if checked is _THROTTLED:
            errors["current"] = "Too many failed attempts. Wait a few minutes and try again."
        elif checked is None:
            errors["current"] = "That is not your current password."
        elif self._one(form, "new") != self._one(form, "again"):
            errors["again"] = "The two new passwords differ."
        else:
            try:
                await self.users.set_password(session.user, self._one(form, "new"))
            except UserError as e:
                errors["new"] = e.message
        if errors:
            status = 429 if checked is _THROTTLED else 400
            return self._render(request, session, "account.html", status=status, errors=errors, done=False, active="account")
        # The new password ended every session, this one too.
        self._cookie(request, SESSION_COOKIE, "", max_age=0)
        return self._redirect(request, "/login")

    # -- dashboard -----------------------------------------------------------

    def _topic_names(self) -> list[str]:
        return [t.name for t in self.hub.topics.topics]

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
            sentiment_line=await sentiment_line(self.hub.learner, self.hub.learning, topic or None),
            **self._story_panel(topic or None, chosen),
        )

    async def _default_range(self, topic: Optional[str]) -> str:
        """
        The shortest range that holds the posts of the last 30 days, so that
        a fresh start is not one bar at the edge of a day; C{24h} if there
        are none.
        """
        now = self.reactor.seconds()
        oldest = await self.hub.store.oldest_post(topic, now - RANGES["30d"][0])
        if oldest is None:
            return "24h"
        age = now - oldest
        return next((name for name, (span, _, _) in RANGES.items() if span >= age), "30d")

    def _range(self, params: Params) -> tuple[float, float, int]:
        """
        C{(since, until, bucket)} from C{range} or C{since}/C{until}.
        """
        since, until = params.time("since"), params.time("until")
        chosen = params.choice("range", list(RANGES))
        now = self.reactor.seconds()
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

    @app.route("/ui/stats.json", methods=["GET"])
    @page(json_api=True)
    async def stats_json(self, request, session):
        params = Params(request)
        topic = params.text("topic")
        if topic is not None and self.hub.topics.get(topic) is None:
            raise BadParameter("topic", f"no such topic: {topic!r}")
        since, until, bucket = self._range(params)
        params.finish()
        store = self.hub.store
        span = until - since
        current = await store.stats(StatsQuery(topic=topic, since=since, until=until, bucket=bucket, top=100))
        previous = await store.stats(StatsQuery(topic=topic, since=since - span, until=since, bucket=bucket, top=100))
        people = await store.author_sentiment(topic, since, until)
        per_topic = await store.topic_volume(since, until) if topic is None else []
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
        return [self.hub.topics.get(topic)] if topic is not None else list(self.hub.topics.topics)

    # -- stories -------------------------------------------------------------

    def _stories_enabled(self) -> bool:
        config = getattr(self.hub, "config", None)
        return bool(config is not None and config.stories["enabled"])

    def _clusterer(self):
        service = getattr(self.hub, "stories", None)
        return getattr(service, "clusterer", None)

    def _story_list(self, topic: Optional[str] = None, since: Optional[float] = None, limit: int = PANEL_STORIES,
                    order: str = "rising") -> list[dict[str, Any]]:  # fmt: skip
        """Stories as the API gives them; none while stories are off."""
        clusterer = self._clusterer()
        if clusterer is None or not self._stories_enabled():
            return []
        return clusterer.list(topic=topic, since=since, limit=limit, order=order)

    def _story(self, story_id: Optional[str]) -> Optional[dict[str, Any]]:
        clusterer = self._clusterer()
        if not story_id or clusterer is None:
            return None
        return clusterer.get(story_id)

    def _story_panel(self, topic: Optional[str], chosen: str) -> dict[str, Any]:
        """
        What the dashboard's Stories panel shows: the stories seen in the
        range, the rising ones first, then the largest (the panel's
        template, C{_stories.html}, is also served alone for its refresh).
        """
        since = self.reactor.seconds() - RANGES[chosen][0]
        # The clusterer's "rising" are only the stories growing fast against
        # their own past; the panel fills up with the largest of the others.
        rising = self._story_list(topic, since, PANEL_STORIES, "rising")
        seen = {st["id"] for st in rising}
        largest = [st for st in self._story_list(topic, since, PANEL_STORIES, "size") if st["id"] not in seen]
        shown = [{**st, "rising": True} for st in rising] + [{**st, "rising": False} for st in largest]
        return {
            "stories": shown[:PANEL_STORIES],
            "stories_enabled": self._stories_enabled(),
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
        if topic is not None and self.hub.topics.get(topic) is None:
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
            found = [self._story(i) for i in wanted] if self._stories_enabled() else []
            stories = [s for s in found if s is not None]
        else:
            stories = self._story_list(topic, None, limit, order)
        return self._json(request, 200, {"enabled": self._stories_enabled(), "stories": [_story_brief(s) for s in stories]})

    # -- live feed -----------------------------------------------------------

    def _sources(self) -> list[str]:
        return [s.name for s in self.hub.sources]

    @app.route("/live", methods=["GET"])
    @page()
    async def live(self, request, session):
        return self._render(
            request,
            session,
            "live.html",
            active="live",
            stories_enabled=self._stories_enabled(),
            stories=[_story_brief(st) for st in self._story_list(limit=STORY_CHOICES, order="size")],
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
        found = self._story(wanted)
        return _story_brief(found) if found else {"id": wanted, "terms": [], "size": 0, "name": f"story {wanted}"}

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
        posts, _ = await self.hub.store.query_posts(query)
        return self._json(request, 200, {"posts": posts})

    # -- map -------------------------------------------------------------------

    @app.route("/map", methods=["GET"])
    @page()
    async def map(self, request, session):
        return self._render(
            request,
            session,
            "map.html",
            active="map",
            stories_enabled=self._stories_enabled(),
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
        since, until, _ = self._range(params)
        limit = params.integer("limit", 1000, 1, 5000)
        params.finish()
        posts = await self.hub.store.geo_posts(topic, since, until, limit)
        # The stories of these posts, by id, so the map's legend can name them.
        stories = {}
        for sid in {p.get("story") for p in posts} - {None}:
            found = self._story(sid)
            if found is not None:
                stories[sid] = _story_brief(found)
        return self._json(request, 200, {"posts": posts, "stories": stories})

    # -- topics --------------------------------------------------------------

    @app.route("/topics", methods=["GET"])
    @page()
    async def topics(self, request, session):
        form = self._form(request)
        origins = await self.hub.store.topic_origins()
        day = self.reactor.seconds() - 86400
        volume = {v["topic"]: v["count"] for v in await self.hub.store.topic_volume(day, None)}
        rows = [
            {"topic": t, "origin": origins.get(t.name, {}).get("origin", "?"), "day": volume.get(t.name, 0)}
            for t in self.hub.topics.topics
        ]
        return self._render(
            request,
            session,
            "topics.html",
            active="topics",
            rows=rows,
            saved=self._one(form, "saved"),
            deleted=self._one(form, "deleted"),
        )

    @app.route("/topics/new", methods=["GET"])
    @page("editor")
    async def topic_new(self, request, session):
        return self._topic_page(request, session, topic_values(None), {}, original="")

    @app.route("/topics/edit", methods=["GET"])
    @page("editor")
    async def topic_edit(self, request, session):
        name = self._one(self._form(request), "name")
        topic = self.hub.topics.get(name)
        if topic is None:
            return self._error(request, session, 404, "There is no such topic.")
        return self._topic_page(request, session, topic_values(topic), {}, original=name)

    def _topic_page(self, request, session, values, errors, original, status=200, tried=None):
        return self._render(
            request,
            session,
            "topic_form.html",
            status=status,
            active="topics",
            values=values,
            errors=errors,
            original=original,
            sources=self._sources(),
            tried=tried,
        )

    @app.route("/topics/save", methods=["POST"])
    @page("editor")
    async def topic_save(self, request, session):
        form = self._form(request)
        original = self._one(form, "original")
        action = self._one(form, "action", "save")
        taken = {name for name in self._topic_names() if name != original}
        topic, errors, values = topic_form(form, self._sources(), taken)
        if errors:
            return self._topic_page(request, session, values, errors, original, status=400)
        if action == "try":
            tried = await self._try_topic(topic, original)
            return self._topic_page(request, session, values, {}, original, tried=tried)
        store = self.hub.store
        await store.save_topic(topic)
        if original and original != topic.name:
            await store.delete_topic(original)
        await self.hub.topics.reload()
        self.log.info("{user} saved topic {topic}", user=session.user, topic=topic.name)
        return self._redirect(request, "/topics?" + urlencode({"saved": topic.name}))

    async def _try_topic(self, topic, original: str) -> dict[str, Any]:
        posts = await self.hub.store.recent_posts(TRY_POSTS)
        current = self.hub.topics.get(original) if original else None
        return await deferToThreadPool(self.reactor, self.reactor.getThreadPool(), try_draft, topic, current, posts)

    @app.route("/topics/delete", methods=["POST"])
    @page("editor")
    async def topic_delete(self, request, session):
        name = self._one(self._form(request), "name")
        if not await self.hub.store.delete_topic(name):
            return self._error(request, session, 404, "There is no such topic.")
        await self.hub.topics.reload()
        self.log.info("{user} deleted topic {topic}", user=session.user, topic=name)
        return self._redirect(request, "/topics?" + urlencode({"deleted": name}))

    # -- alerts: rules, incidents, channels (monitor.alerts) ----------------------

    def _alerts(self):
        return getattr(self.hub, "alerts", None)

    @app.route("/alerts", methods=["GET"])
    @page()
    async def alerts(self, request, session):
        engine = self._alerts()
        if engine is None:
            return self._error(request, session, 404, "Alerts are not running on this hub.")
        form = self._form(request)
        active, _ = await engine.incidents({"state": "active"}, 50)
        recent, _ = await engine.incidents({"state": "resolved"}, 20)
        return self._render(
            request,
            session,
            "alerts.html",
            active="alerts",
            rules=sorted(engine.list_rules(), key=lambda r: r["name"]),
            open_incidents=active,
            recent_incidents=recent,
            channels=await engine.channels(),
            done=self._one(form, "done"),
            problem=self._one(form, "problem"),
        )

    @app.route("/alerts/incidents/<incident_id>", methods=["GET"])
    @page()
    async def incident_page(self, request, session, incident_id):
        from monitor.alerts.notifiers import explanation_lines, headline, summary_lines

        engine = self._alerts()
        incident = await engine.incident(incident_id) if engine is not None else None
        if incident is None:
            return self._error(request, session, 404, "There is no such incident.")
        rule = engine.get_rule(incident["rule"])
        payload = {"event": "opened", "incident": incident}
        # The posts of its time span, for the search page.
        search = {"since": incident["opened_at"], "until": incident["resolved_at"] or ""}
        if incident["topic"]:
            search["topic"] = incident["topic"]
        if incident["source"] and not incident["source"].startswith("story:"):
            search["source"] = incident["source"]
        return self._render(
            request,
            session,
            "incident.html",
            active="alerts",
            incident=incident,
            headline=headline(payload).split(": ", 1)[-1],
            why=summary_lines(payload)[:-2] if incident["type"] in _SIGNAL_TYPES else [],
            conditions=_rule_conditions(rule.spec) if rule is not None else None,
            signal=_facts(incident["signal"]) if incident["type"] in _SIGNAL_TYPES else [],
            peak=_facts(incident["peak"]) if incident["type"] in _SIGNAL_TYPES else [],
            explanation=incident.get("explanation") or {},
            because=explanation_lines(incident, posts=0),
            posts_url="/posts?" + urlencode({k: v for k, v in search.items() if v}),
        )

    def _back(self, request, done: str = "", problem: str = "") -> bytes:
        return self._redirect(request, "/alerts?" + urlencode({"problem": problem} if problem else {"done": done}))

    async def _alert_action(self, request, call, done: str):
        """
        Run an engine change and go back to the alerts page, saying what
        happened or why it was refused.
        """
        from monitor.alerts.engine import AlertError

        try:
            await call
        except AlertError as e:
            return self._back(request, problem="; ".join(e.problems) or "Refused.")
        return self._back(request, done=done)

    @app.route("/alerts/rules/new", methods=["GET"])
    @page("editor")
    async def rule_new(self, request, session):
        if self._alerts() is None:
            return self._error(request, session, 404, "Alerts are not running on this hub.")
        return self._rule_page(request, session, rule_values(None), {}, original="")

    @app.route("/alerts/rules/<name>/edit", methods=["GET"])
    @page("editor")
    async def rule_edit(self, request, session, name):
        engine = self._alerts()
        rule = engine.get_rule(name) if engine is not None else None
        if rule is None:
            return self._error(request, session, 404, "There is no such rule.")
        return self._rule_page(request, session, rule_values(rule.spec), {}, original=name, origin=rule.origin)

    def _rule_page(self, request, session, values, errors, original, status=200, backtest=None, origin=None, period="7d"):
        from monitor.alerts.rules import RULE_TYPES, SEVERITIES

        return self._render(
            request,
            session,
            "rule_form.html",
            status=status,
            active="alerts",
            values=values,
            errors=errors,
            original=original,
            origin=origin,
            types=RULE_TYPES,
            severities=SEVERITIES,
            topics=sorted(set(self._topic_names()) | set(values.get("topics") or ())),
            fields=rule_fields(),
            labels=LABELS,
            sentiments=SENTIMENTS,
            sources=self._sources(),
            channels=sorted(self._alerts().outbox.channels),
            periods=[(k, v[1]) for k, v in BACKTEST_PERIODS.items()],
            period=period,
            backtest=backtest,
        )

    @app.route("/alerts/rules/save", methods=["POST"])
    @page("editor")
    async def rule_save(self, request, session):
        from monitor.alerts.engine import AlertError

        engine = self._alerts()
        if engine is None:
            return self._error(request, session, 404, "Alerts are not running on this hub.")
        form = self._form(request)
        original = self._one(form, "original")
        if original and engine.get_rule(original) is None:
            return self._error(request, session, 404, "There is no such rule.")
        action = self._one(form, "action", "save")
        period = self._one(form, "period", "7d")
        if period not in BACKTEST_PERIODS:
            period = "7d"
        spec, errors, values = rule_form(form, original)
        origin = engine.get_rule(original).origin if original else None
        if not errors:
            rule, problems = engine.check_rule(spec)
            errors = rule_problems(problems)
        if errors:
            return self._rule_page(request, session, values, errors, original, status=400, origin=origin, period=period)
        if action == "backtest":
            until = self.reactor.seconds()
            try:
                result = await engine.backtest(rule, until - BACKTEST_PERIODS[period][0], until)
            except AlertError as e:
                return self._rule_page(
                    request, session, values, rule_problems(e.problems), original, status=400, origin=origin, period=period
                )
            return self._rule_page(request, session, values, {}, original, backtest=result, origin=origin, period=period)
        try:
            if original:
                await engine.save_rule(spec, name=original)
            else:
                await engine.save_rule(spec, create=True)
        except AlertError as e:
            return self._rule_page(
                request, session, values, rule_problems(e.problems), original, status=400, origin=origin, period=period
            )
        self.log.info("{user} saved alert rule {rule}", user=session.user, rule=spec["name"])
        return self._back(request, done=f"Rule {spec['name']} saved.")

    @app.route("/alerts/rules/<name>/enable", methods=["POST"])
    @page("editor")
    async def rule_enable(self, request, session, name):
        return await self._alert_action(request, self._alerts().set_rule_enabled(name, True), f"Rule {name} enabled.")

    @app.route("/alerts/rules/<name>/disable", methods=["POST"])
    @page("editor")
    async def rule_disable(self, request, session, name):
        return await self._alert_action(request, self._alerts().set_rule_enabled(name, False), f"Rule {name} disabled.")

    @app.route("/alerts/rules/<name>/delete", methods=["POST"])
    @page("editor")
    async def rule_delete(self, request, session, name):
        self.log.info("{user} deletes alert rule {rule}", user=session.user, rule=name)
        return await self._alert_action(request, self._alerts().delete_rule(name), f"Rule {name} deleted.")

    @app.route("/alerts/incidents/<incident_id>/acknowledge", methods=["POST"])
    @page("editor")
    async def incident_acknowledge(self, request, session, incident_id):
        call = self._alerts().acknowledge(incident_id, session.user)
        return await self._alert_action(request, call, f"Incident {incident_id} acknowledged.")

    @app.route("/alerts/incidents/<incident_id>/resolve", methods=["POST"])
    @page("editor")
    async def incident_resolve(self, request, session, incident_id):
        call = self._alerts().resolve(incident_id, session.user)
        return await self._alert_action(request, call, f"Incident {incident_id} resolved.")

    @app.route("/alerts/channels/<name>/enable", methods=["POST"])
    @page("editor")
    async def channel_enable(self, request, session, name):
        engine = self._alerts()

        async def enable():
            return engine.enable_channel(name)

        return await self._alert_action(request, enable(), f"Channel {name} enabled.")

    # -- posts -----------------------------------------------------------------

    @staticmethod
    def _post_query(request, limit: int) -> tuple[PostQuery, dict[str, str]]:
        """
        The posts page's search, read by the API's parser: the query and
        the problems by field (a deleted topic's posts keep its name, so any
        topic may be searched).
        """
        params = Params(request, collect=True)
        query = post_query(params, limit, limit)
        return query, params.errors

    # -- corrections and learned models (monitor.web.learn) ----------------

    @app.route("/ui/feedback", methods=["POST"])
    @page("editor", json_api=True)
    async def ui_feedback(self, request, session):
        from monitor.web.learn import correct

        return self._json(request, 200, await correct(self.hub, request, session.user))

    @app.route("/ui/feedback.json", methods=["GET"])
    @page("editor", json_api=True)
    async def ui_feedback_of(self, request, session):
        ids = [v.decode("utf-8", "replace") for v in request.args.get(b"post_id", [])][:500]
        return self._json(request, 200, {"feedback": await self.hub.feedback.many(ids)})

    @app.route("/models", methods=["GET"])
    @page()
    async def models_page(self, request, session):
        from monitor.web.learn import models_view

        form = self._form(request)
        return self._render(request, session, "models.html", active="models",
                            models=models_view(await self.hub.learner.models()), rescore=self.hub.rescorer.status,
                            done=self._one(form, "done"), problem=self._one(form, "problem"))  # fmt: skip

    @app.route("/models/rescore", methods=["POST"])
    @page("admin")
    async def models_rescore(self, request, session):
        started = self.hub.rescorer.start(session.user)
        message = {"done": "Re-scoring the stored posts."} if started else {"problem": "A re-scoring job is running already."}
        return self._redirect(request, "/models?" + urlencode(message))

    @app.route("/models/<name>/<verb>", methods=["POST"])
    @page("admin")
    async def model_switch(self, request, session, name, verb):
        if verb not in ("activate", "deactivate"):
            return self._error(request, session, 404, "There is no such page.")
        language = self._one(self._form(request), "language") or "en"
        found = await self.hub.learner.set_active(name, language, verb == "activate", session.user)
        if found is None:
            return self._redirect(request, "/models?" + urlencode({"problem": f"No trained model {name} ({language})."}))
        return self._redirect(request, "/models?" + urlencode({"done": f"Model {name} ({language}): {found['state']}."}))

    @app.route("/posts", methods=["GET"])
    @page()
    async def posts(self, request, session):
        form = self._form(request)
        query, errors = self._post_query(request, 50)
        posts, following, total = [], None, 0
        if not errors:
            try:
                posts, following = await self.hub.store.query_posts(query)
                total = await self.hub.store.count_matching(query, COUNT_MOST + 1)
            except ValueError as e:
                problem = store_problem(e, "q")
                errors[problem.name] = problem.message
        tree = parse_query(query.query) if query.query else None
        marks = {p["id"]: post_segments(tree, p) for p in posts} if tree is not None else {}
        filters = {
            k: self._one(form, k) for k in ("q", "query", "topic", "source", "sentiment", "label", "since", "until", "story")
        }
        present = {k: v for k, v in filters.items() if v}
        story = self._story_heading(query.story) if query.story and "story" not in errors else None
        return self._render(
            request,
            session,
            "posts.html",
            status=400 if errors else 200,
            active="posts",
            posts=posts,
            story=story,
            marks=marks,
            query_scan=QUERY_SCAN,
            total=min(total, COUNT_MOST),
            total_capped=total > COUNT_MOST,
            errors=errors,
            filters=filters,
            topics=sorted(set(self._topic_names()) | ({filters["topic"]} if filters["topic"] else set())),
            sources=self._sources(),
            sentiments=SENTIMENTS,
            labels=LABELS,
            next_url="/posts?" + urlencode({**present, "cursor": following}) if following else None,
            first_url="/posts?" + urlencode(present) if self._one(form, "cursor") else None,
            export_csv="/posts/export.csv?" + urlencode(present),
            export_json="/posts/export.json?" + urlencode(present),
        )

    def _story_heading(self, story_id: str) -> dict[str, Any]:
        """
        What the posts page says of the story it shows: its words, size and
        sources while the hub still holds it (a faded story keeps its posts).
        """
        story = self.hub.stories.clusterer.get(story_id)
        if story is None:
            return {"id": story_id, "known": False}
        return {"id": story_id, "known": True, "terms": story.get("terms") or [], "size": story.get("size"),
                "sources": story.get("sources") or {}}  # fmt: skip

    @app.route("/posts/export.csv", methods=["GET"])
    @page()
    async def export_csv(self, request, session):
        return await self._export(request, "csv")

    @app.route("/posts/export.json", methods=["GET"])
    @page()
    async def export_json(self, request, session):
        return await self._export(request, "json")

    async def _export(self, request, kind: str):
        query, errors = self._post_query(request, MAX_LIMIT)
        query = dataclasses.replace(query, cursor=None)
        if errors:
            field, message = next(iter(errors.items()))
            return self._json(request, 400, {"error": message, "parameter": field})
        try:
            posts, following = await self.hub.store.query_posts(query)
        except ValueError as e:
            raise store_problem(e, "q")
        stamp = iso8601(self.reactor.seconds()).replace(":", "").replace(".000", "")
        if kind == "csv":
            request.setHeader(b"content-type", b"text/csv; charset=utf-8")
        else:
            request.setHeader(b"content-type", b"application/json; charset=utf-8")
        request.setHeader(b"content-disposition", f'attachment; filename="posts-{stamp}.{kind}"'.encode("ascii"))
        request.setHeader(b"cache-control", b"no-store")
        flow = _Flow()
        request.registerProducer(flow, True)
        written = 0
        first = True
        try:
            if kind == "json":
                request.write(b'{"posts":[')
            else:
                request.write(_csv_rows(None))
            while True:
                if kind == "json":
                    chunk = ",".join(json.dumps(p, ensure_ascii=False, separators=(",", ":")) for p in posts)
                    if chunk:
                        request.write(((",") if not first else "").encode() + chunk.encode("utf-8"))
                        first = False
                else:
                    request.write(_csv_rows(posts))
                written += len(posts)
                if not following or written >= EXPORT_MAX or flow.stopped:
                    break
                await flow.ready()
                if flow.stopped:
                    break
                posts, following = await self.hub.store.query_posts(
                    PostQuery(**{**_fields(query), "cursor": following, "limit": min(MAX_LIMIT, EXPORT_MAX - written)})
                )
            if kind == "json":
                request.write(b"]}")
        finally:
            request.unregisterProducer()
        return b""

    # -- sources ---------------------------------------------------------------

    @app.route("/sources", methods=["GET"])
    @page()
    async def sources(self, request, session):
        status = self.push.source_status()
        nodes = nodes_status(getattr(self.hub, "nodes", None))
        return self._render(
            request,
            session,
            "sources.html",
            active="sources",
            sources=status["sources"],
            nodes=_table(nodes),
            has_nodes=nodes is not None,
            queue=self.hub.queue.size(),
        )

    @app.route("/ui/sources.json", methods=["GET"])
    @page(json_api=True)
    async def sources_json(self, request, session):
        Params(request).finish()
        return self._json(request, 200, {**self.push.source_status(), "queue": self.hub.queue.size()})

    # -- admin -------------------------------------------------------------------

    @app.route("/admin", methods=["GET"])
    @page("admin")
    async def admin(self, request, session):
        return await self._admin_page(request, session)

    async def _admin_page(self, request, session, errors=None, status=200, values=None):
        form = self._form(request)
        new_token = None
        held = self._new_tokens.pop(session.key, None)
        if held is not None and held[2] >= self.reactor.seconds():
            new_token = {"name": held[0], "token": held[1]}
        return self._render(
            request,
            session,
            "admin.html",
            status=status,
            active="admin",
            users=await self.users.list_users(),
            tokens=await self.users.list_tokens(),
            roles=ROLES,
            errors=errors or {},
            new_token=new_token,
            values=values or {},
            done=self._one(form, "done"),
        )

    @app.route("/admin/users", methods=["POST"])
    @page("admin")
    async def admin_add_user(self, request, session):
        form = self._form(request)
        name, role, password = self._one(form, "name").strip(), self._one(form, "role"), self._one(form, "password")
        try:
            await self.users.add_user(name, role, password)
        except UserError as e:
            return await self._admin_page(
                request, session, errors={e.field: e.message}, status=400, values={"name": name, "role": role}
            )
        self.log.info("{admin} added user {user} ({role})", admin=session.user, user=name, role=role)
        return self._redirect(request, "/admin?" + urlencode({"done": f"User {name} added."}))

    @app.route("/admin/users/role", methods=["POST"])
    @page("admin")
    async def admin_set_role(self, request, session):
        form = self._form(request)
        name = self._one(form, "name")
        try:
            await self.users.set_role(name, self._one(form, "role"))
        except UserError as e:
            return await self._admin_page(request, session, errors={"users": e.message}, status=400)
        return self._redirect(request, "/admin?" + urlencode({"done": f"{name} is now {self._one(form, 'role')}."}))

    @app.route("/admin/users/password", methods=["POST"])
    @page("admin")
    async def admin_set_password(self, request, session):
        form = self._form(request)
        name = self._one(form, "name")
        try:
            await self.users.set_password(name, self._one(form, "password"))
        except UserError as e:
            return await self._admin_page(request, session, errors={"users": f"{name}: {e.message}"}, status=400)
        if name == session.user:
            self._cookie(request, SESSION_COOKIE, "", max_age=0)
            return self._redirect(request, "/login")
        return self._redirect(request, "/admin?" + urlencode({"done": f"Password of {name} changed."}))

    @app.route("/admin/users/delete", methods=["POST"])
    @page("admin")
    async def admin_delete_user(self, request, session):
        name = self._one(self._form(request), "name")
        if name == session.user:
            return await self._admin_page(request, session, errors={"users": "You cannot delete yourself."}, status=400)
        try:
            await self.users.delete_user(name)
        except UserError as e:
            return await self._admin_page(request, session, errors={"users": e.message}, status=400)
        return self._redirect(request, "/admin?" + urlencode({"done": f"User {name} deleted."}))

    @app.route("/admin/tokens", methods=["POST"])
    @page("admin")
    async def admin_create_token(self, request, session):
        name = self._one(self._form(request), "token_name")
        try:
            token = await self.users.create_token(name, session.user)
        except UserError as e:
            return await self._admin_page(request, session, errors={e.field: e.message}, status=400)
        # Shown once, on the page this redirects to (a reload shows it no
        # more); held in memory for that one GET only.
        self._new_tokens[session.key] = (name.strip(), token, self.reactor.seconds() + NEW_TOKEN_TTL)
        return self._redirect(request, "/admin?created=token")

    @app.route("/admin/tokens/revoke", methods=["POST"])
    @page("admin")
    async def admin_revoke_token(self, request, session):
        token_id = row_id(self._one(self._form(request), "id"))
        if token_id is None or not await self.users.revoke_token(token_id, session.user):
            return await self._admin_page(request, session, errors={"tokens": "No such live token."}, status=400)
        return self._redirect(request, "/admin?" + urlencode({"done": "Token revoked."}))


#: Rule types whose incidents carry a measured signal (a window's numbers).
_SIGNAL_TYPES = ("volume_spike", "sentiment_shift", "source_health", "channel_health", "story")


def _story_brief(story: dict[str, Any]) -> dict[str, Any]:
    """What a page needs to name a story and rank it."""
    return {"id": story["id"], "terms": list(story.get("terms") or []), "size": story.get("size", 0),
            "name": _story_name(story)}  # fmt: skip


def _rule_conditions(spec: dict[str, Any]) -> list[tuple[str, str]]:
    """
    What a rule asks for, as (setting, value) pairs a person reads: the
    "why" of its incidents, for types without a measured signal.
    """
    out = []
    for key, value in spec.items():
        if key in ("name", "enabled", "type", "severity", "topics") or value in (None, [], ""):
            continue
        if isinstance(value, bool):
            value = "yes" if value else "no"
        elif isinstance(value, list):
            value = ", ".join(str(v).replace("_", " ") for v in value)
        out.append((key.replace("_", " "), str(value)))
    return out


def _facts(values: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(k.replace("_", " "), ", ".join(map(str, v)) if isinstance(v, list) else v) for k, v in values.items()]


def _fields(query: PostQuery) -> dict[str, Any]:
    return {name: getattr(query, name) for name in PostQuery.__dataclass_fields__}


_CSV_COLUMNS = (
    "id", "created_at", "source", "author", "text", "url", "lang", "topics", "labels", "sentiment",
    "compound", "likes", "reposts", "replies", "author_followers", "author_verified", "lat", "lon", "story",
)  # fmt: skip


def _csv_value(value: Any) -> Any:
    """
    One CSV cell: booleans as C{true}/C{false} (as in the JSON export),
    text made spreadsheet-safe.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    return _csv_cell(value)


def _csv_rows(posts) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    if posts is None:
        writer.writerow(_CSV_COLUMNS)
    else:
        for p in posts:
            row = dict(p)
            row["topics"] = " ".join(p["topics"])
            row["labels"] = " ".join(p["labels"])
            row["sentiment"] = p["sentiment"]["label"]
            row["compound"] = p["sentiment"]["compound"]
            writer.writerow([_csv_value(row.get(c)) for c in _CSV_COLUMNS])
    return out.getvalue().encode("utf-8")


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


def _table(value) -> Optional[dict[str, Any]]:
    """
    Whatever C{nodes.status()} returned, as headings and rows for a table
    (and other facts as key/value pairs), without assuming its shape.
    """
    if value is None:
        return None
    rows: list = []
    facts: dict = {}
    if isinstance(value, list):
        rows = value
    elif isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, list) and all(isinstance(i, dict) for i in v) and not rows:
                rows = v
            elif isinstance(v, dict) and all(isinstance(i, dict) for i in v.values()) and not rows:
                rows = [{"name": name, **item} for name, item in v.items()]
            else:
                facts[k] = v
    else:
        facts["status"] = value
    rows = [r if isinstance(r, dict) else {"value": r} for r in rows]
    headings: list[str] = []
    for r in rows:
        for k in r:
            if k not in headings:
                headings.append(k)
    return {
        "headings": headings,
        "rows": [[_plain(r.get(h)) for h in headings] for r in rows],
        "facts": {k: _plain(v) for k, v in facts.items()},
    }


def _plain(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)
