"""
The JSON API (C{/api/v1/...}), C{/healthz} and C{/metrics}, as a Klein app.

Every C{/api/} route needs C{Authorization: Bearer <token>}.  Parameters are
checked strictly: an unknown or malformed one is a 400 that names it, so a
typo in a dashboard's query does not silently return everything.
"""

from __future__ import annotations

import functools
import hmac
import json
from typing import Any, Callable, Optional, Sequence

from klein import Klein
from twisted.internet.defer import ensureDeferred
from twisted.logger import Logger

from monitor.store import MAX_LIMIT, StatsQuery
from monitor.stories import STORY_ORDERS
from monitor.web.openapi import openapi as describe_api
from monitor.web.pages.base import StoryView
from monitor.web.params import BadParameter, Params, json_body, parse_any_time, post_query, store_problem

__all__ = ["Api", "ApiError", "BadParameter", "Params", "TokenAuth", "api_route", "json_body"]


class ApiError(Exception):
    """
    A refusal other than a bad parameter (404 no such thing, 409 conflict,
    400 with a list of problems); the API answers C{status} with C{error}
    and any C{extra} fields.
    """

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        self.status = status
        self.message = message
        if status == 400:
            # Every 400 names what was wrong; a refusal that is not a
            # BadParameter is about the body (a rule, a topic).
            extra.setdefault("parameter", "body")
        self.extra = extra
        super().__init__(message)


def _json(request, status: int, body: Any) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
    request.setHeader(b"Cache-Control", b"no-store")
    request.setHeader(b"X-Content-Type-Options", b"nosniff")
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def api_route(method: Callable) -> Callable:
    """
    Wrap an API handler: check the bearer token, turn L{BadParameter} into a
    400, and encode the handler's result (a dict, maybe from a coroutine) as
    JSON.
    """

    @functools.wraps(method)
    def wrapper(self, request, *args, **kwargs):
        if not self.auth.check(request):
            request.setHeader(b"WWW-Authenticate", b'Bearer realm="monitor"')
            return _json(request, 401, {"error": "a valid bearer token is required"})

        async def run():
            try:
                params = Params(request)
                result = await method(self, request, params, *args, **kwargs)
            except BadParameter as e:
                return _json(request, 400, {"error": e.message, "parameter": e.name})
            except ApiError as e:
                return _json(request, e.status, {"error": e.message, **e.extra})
            if isinstance(result, Raw):
                request.setHeader(b"Content-Type", result.content_type)
                request.setHeader(b"Cache-Control", b"no-store")
                request.setHeader(b"X-Content-Type-Options", b"nosniff")
                if result.next:
                    request.setHeader(b"X-Next-Cursor", result.next.encode("ascii"))
                return result.body
            return _json(request, 200, result)

        return ensureDeferred(run())

    return wrapper


class Raw:
    """
    A non-JSON answer (an export): its bytes, type, and the cursor of the
    next page, sent as C{X-Next-Cursor}.
    """

    def __init__(self, body: bytes, content_type: bytes, next: Optional[str] = None) -> None:
        self.body = body
        self.content_type = content_type
        self.next = next


class TokenAuth:
    """
    Bearer tokens for machines.  Compared in constant time.

    @ivar stored: anything with C{check_token(bytes) -> bool} (the web UI's
        L{monitor.web.users.Users}): tokens created on the admin page, which
        work alongside the configured one.
    """

    def __init__(self, tokens, stored=None) -> None:
        self.tokens = [t.encode("utf-8") for t in tokens if t]
        self.stored = stored

    def check(self, request) -> bool:
        header = request.getHeader(b"authorization") or b""
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer" or not token.strip():
            return False
        given = token.strip()
        # Check every token, so timing does not tell which one was close.
        if any([hmac.compare_digest(given, t) for t in self.tokens]):
            return True
        return self.stored is not None and self.stored.check_token(given)

    def who(self, request) -> str:
        """
        Who a checked request speaks for: C{token:NAME} for a token made on
        the admin page, C{api} for the configured one.
        """
        token = (request.getHeader(b"authorization") or b"").partition(b" ")[2].strip()
        name = self.stored.token_name(token) if self.stored is not None and hasattr(self.stored, "token_name") else None
        return f"token:{name}" if name else "api"


class Api:
    """
    The hub's HTTP API, over the parts it reads and changes (the hub gives
    them all, L{monitor.hub}; a test gives those its routes use).  State
    lives on the instance, not in module globals, so several hubs can run
    in one process (tests do).
    """

    app = Klein()
    log = Logger()

    def __init__(
        self,
        auth: TokenAuth,
        *,
        store=None,
        topics=None,
        sources: Sequence = (),
        queue=None,
        metrics=None,
        feedback=None,
        learner=None,
        rescorer=None,
        stories: Optional[StoryView] = None,
        nodes=None,
        cluster=None,
        alerts=None,
    ) -> None:
        self.auth = auth
        self._store = store
        self._topics = topics
        self._sources = sources
        self._queue = queue
        self._metrics = metrics
        self._feedback = feedback
        self._learner = learner
        self._rescorer = rescorer
        self._stories = stories or StoryView()
        self._nodes = nodes
        self._cluster = cluster
        self._alerts = alerts

    def resource(self):
        return self.app.resource()

    @app.route("/healthz", methods=["GET"])
    def healthz(self, request):
        sources = {s.name: s.state for s in self._sources}
        return _json(request, 200, {"status": "ok", "queue": self._queue.size(), "sources": sources})

    @app.route("/metrics", methods=["GET"])
    def metrics(self, request):
        self._metrics.queue_depth.set(self._queue.size())
        self._metrics.queue_blocked.set(self._queue.waiting_puts())
        request.setHeader(b"Content-Type", b"text/plain; version=0.0.4; charset=utf-8")
        return self._metrics.render()

    def _topic(self, params: Params) -> Optional[str]:
        topic = params.text("topic")
        if topic is not None and self._topics.get(topic) is None:
            raise BadParameter("topic", f"no such topic: {topic!r}")
        return topic

    @app.route("/api/v1/openapi.json", methods=["GET"])
    @api_route
    async def openapi(self, request, params: Params):
        params.finish()
        return describe_api()

    @app.route("/api/v1/posts", methods=["GET"])
    @api_route
    async def posts(self, request, params: Params):
        self._topic(params)
        query = post_query(params, 50, MAX_LIMIT)
        params.finish()
        try:
            posts, cursor = await self._store.query_posts(query)
        except ValueError as e:
            raise store_problem(e, "q")
        return {"posts": posts, "next": cursor}

    # -- corrections and learned models (monitor.learn) -------------------

    @app.route("/api/v1/posts/<path:post_id>/feedback", methods=["GET"])
    @api_route
    async def feedback_get(self, request, params: Params, post_id):
        params.finish()
        found = await self._feedback.get(post_id)
        if found is None:
            raise ApiError(404, f"no correction of post {post_id!r}")
        return {"feedback": found}

    @app.route("/api/v1/posts/<path:post_id>/feedback", methods=["PUT"])
    @api_route
    async def feedback_put(self, request, params: Params, post_id):
        params.finish()
        found = await self._feedback.put(post_id, json_body(request), self.auth.who(request))
        if found is None:
            raise ApiError(404, f"no post {post_id!r}")
        return {"feedback": found}

    @app.route("/api/v1/posts/<path:post_id>/feedback", methods=["DELETE"])
    @api_route
    async def feedback_delete(self, request, params: Params, post_id):
        params.finish()
        if not await self._feedback.delete(post_id):
            raise ApiError(404, f"no correction of post {post_id!r}")
        return {"deleted": post_id}

    @app.route("/api/v1/feedback", methods=["GET"])
    @api_route
    async def feedback_list(self, request, params: Params):
        from monitor.learn.feedback import feedback_csv

        form = params.choice("format", ("json", "csv")) or "json"
        by, label = params.text("by"), params.text("label")
        limit = params.integer("limit", 100, 1, MAX_LIMIT)
        cursor = params.text("cursor")
        params.finish()
        rows, following = await self._feedback.page(limit, cursor, by, label)
        if form == "csv":
            return Raw(feedback_csv(rows), b"text/csv; charset=utf-8", following)
        return {"feedback": rows, "next": following}

    @app.route("/api/v1/models", methods=["GET"])
    @api_route
    async def model_list(self, request, params: Params):
        params.finish()
        return {"models": await self._learner.models()}

    async def _model_switch(self, request, params: Params, name: str, on: bool):
        language = params.text("language") or "en"
        params.finish()
        body = json_body(request, required=False)
        version = body.get("version") if isinstance(body, dict) else None
        if version is not None and not isinstance(version, str):
            raise BadParameter("version", "must be a version string such as sentiment-3")
        found = await self._learner.set_active(name, language, on, self.auth.who(request), version)
        if found is None:
            raise ApiError(
                404, f"no trained model {name!r} ({language})" + (f" of version {version!r}" if version else "")
            )
        return {"model": found}

    @app.route("/api/v1/rescore", methods=["GET"])
    @api_route
    async def rescore_status(self, request, params: Params):
        params.finish()
        return {"rescore": self._rescorer.status}

    @app.route("/api/v1/rescore", methods=["POST"])
    @api_route
    async def rescore_start(self, request, params: Params):
        params.finish()
        started = self._rescorer.start(self.auth.who(request))
        if started is None:
            raise ApiError(409, "a re-scoring job is running", rescore=self._rescorer.status)
        return {"rescore": started}

    @app.route("/api/v1/models/<name>/activate", methods=["POST"])
    @api_route
    async def model_activate(self, request, params: Params, name):
        return await self._model_switch(request, params, name, True)

    @app.route("/api/v1/models/<name>/deactivate", methods=["POST"])
    @api_route
    async def model_deactivate(self, request, params: Params, name):
        return await self._model_switch(request, params, name, False)

    @app.route("/api/v1/topics", methods=["GET"])
    @api_route
    async def topic_list(self, request, params: Params):
        params.finish()
        return {"topics": [t.to_dict() for t in self._topics.topics]}

    @app.route("/api/v1/topics/<name>", methods=["GET"])
    @api_route
    async def topic_get(self, request, params: Params, name):
        params.finish()
        topic = self._topics.get(name)
        if topic is None:
            raise ApiError(404, f"no topic named {name!r}")
        return {"topic": topic.to_dict()}

    @app.route("/api/v1/topics/<name>", methods=["PUT"])
    @api_route
    async def topic_put(self, request, params: Params, name):
        """
        Create or replace a topic, checked like C{[[topics]]}; saved with
        origin C{web}, so the configuration file no longer overrides it.
        """
        from monitor.config import check_topic_spec

        params.finish()
        body = json_body(request)
        if isinstance(body, dict):
            if body.setdefault("name", name) != name:
                raise ApiError(
                    400, "the topic is not valid", problems=[f"topic.name: must be the name in the address, {name!r}"]
                )
        topic, problems = check_topic_spec(body, {s.name for s in self._sources})
        if topic is None:
            raise ApiError(400, "the topic is not valid", problems=problems)
        await self._store.save_topic(topic)
        await self._topics.reload()
        return {"topic": topic.to_dict()}

    @app.route("/api/v1/topics/<name>", methods=["DELETE"])
    @api_route
    async def topic_delete(self, request, params: Params, name):
        params.finish()
        if not await self._store.delete_topic(name):
            raise ApiError(404, f"no topic named {name!r}")
        await self._topics.reload()
        return {"deleted": name}

    @app.route("/api/v1/stats", methods=["GET"])
    @api_route
    async def stats(self, request, params: Params):
        query = StatsQuery(
            topic=self._topic(params),
            since=params.time("since"),
            until=params.time("until"),
            bucket=params.duration("bucket", 3600),
            top=params.integer("top", 10, 1, 100),
        )
        params.finish()
        if query.since is not None and query.until is not None:
            if query.until <= query.since:
                raise BadParameter("until", "must be after since")
            if (query.until - query.since) / query.bucket > 10000:
                raise BadParameter("bucket", "too small for the range (more than 10,000 buckets)")
        return await self._store.stats(query)

    @app.route("/api/v1/stories", methods=["GET"])
    @api_route
    async def stories(self, request, params: Params):
        topic = self._topic(params)
        since, until = params.time("since"), params.time("until")
        limit = params.integer("limit", 20, 1, 200)
        order = params.choice("order", STORY_ORDERS) or "size"
        params.finish()
        if since is not None and until is not None and until <= since:
            raise BadParameter("until", "must be after since")
        stories = self._stories.list(topic=topic, since=since, until=until, limit=limit, order=order)
        return {"stories": stories, "enabled": self._stories.enabled}

    @app.route("/api/v1/sources", methods=["GET"])
    @api_route
    async def sources(self, request, params: Params):
        params.finish()
        return {"sources": [s.status() for s in self._sources]}

    @app.route("/api/v1/nodes", methods=["GET"])
    @api_route
    async def nodes(self, request, params: Params):
        params.finish()
        return {"nodes": self._nodes.status()}

    @app.route("/api/v1/hubs", methods=["GET"])
    @api_route
    async def hubs(self, request, params: Params):
        """The hubs of the cluster, from their heartbeats (monitor.cluster)."""
        params.finish()
        try:
            hubs = await self._cluster.hubs()
        except Exception as e:
            raise ApiError(503, f"cannot reach Redis for the hubs' heartbeats: {e}")
        return {"hubs": hubs}

    @app.route("/api/v1/dead-letters", methods=["GET"])
    @api_route
    async def dead_letters(self, request, params: Params):
        source = params.text("source")
        limit = params.integer("limit", 100, 1, 1000)
        params.finish()
        return {"dead_letters": await self._store.dead_letters(source, limit)}

    # -- alerts: rules, backtest, incidents, channels (monitor.alerts) -----

    async def _alerts_call(self, call):
        """
        Run an alert engine call, turning its refusals into API errors.
        """
        from monitor.alerts.engine import AlertError

        try:
            return await call
        except AlertError as e:
            if e.status == 400:
                raise ApiError(400, "the rule is not valid", problems=e.problems)
            raise ApiError(e.status, e.problems[0] if e.problems else "refused")

    @app.route("/api/v1/rules", methods=["GET"])
    @api_route
    async def rule_list(self, request, params: Params):
        params.finish()
        return {"rules": self._alerts.list_rules()}

    @app.route("/api/v1/rules", methods=["POST"])
    @api_route
    async def rule_create(self, request, params: Params):
        params.finish()
        rule = await self._alerts_call(self._alerts.save_rule(json_body(request), create=True))
        return {"rule": rule.to_dict()}

    @app.route("/api/v1/rules/<name>", methods=["GET"])
    @api_route
    async def rule_get(self, request, params: Params, name):
        params.finish()
        rule = self._alerts.get_rule(name)
        if rule is None:
            raise ApiError(404, f"no rule named {name!r}")
        return {"rule": rule.to_dict()}

    @app.route("/api/v1/rules/<name>", methods=["PUT"])
    @api_route
    async def rule_replace(self, request, params: Params, name):
        params.finish()
        rule = await self._alerts_call(self._alerts.save_rule(json_body(request), name=name))
        return {"rule": rule.to_dict()}

    @app.route("/api/v1/rules/<name>", methods=["DELETE"])
    @api_route
    async def rule_delete(self, request, params: Params, name):
        params.finish()
        await self._alerts_call(self._alerts.delete_rule(name))
        return {"deleted": name}

    @app.route("/api/v1/rules/<name>/enable", methods=["POST"])
    @api_route
    async def rule_enable(self, request, params: Params, name):
        params.finish()
        rule = await self._alerts_call(self._alerts.set_rule_enabled(name, True))
        return {"rule": rule.to_dict()}

    @app.route("/api/v1/rules/<name>/disable", methods=["POST"])
    @api_route
    async def rule_disable(self, request, params: Params, name):
        params.finish()
        rule = await self._alerts_call(self._alerts.set_rule_enabled(name, False))
        return {"rule": rule.to_dict()}

    @app.route("/api/v1/backtest", methods=["POST"])
    @api_route
    async def backtest(self, request, params: Params):
        from monitor.alerts.backtest import MAX_PERIOD

        params.finish()
        body = json_body(request)
        if not isinstance(body, dict):
            raise BadParameter("body", "must be a JSON object")
        unknown = sorted(set(body) - {"rule", "since", "until"})
        if unknown:
            raise BadParameter(unknown[0], "unknown field")
        times = {}
        for name in ("since", "until"):
            value = body.get(name)
            try:
                times[name] = parse_any_time(value)
            except ValueError:
                raise BadParameter(name, "must be an ISO 8601 time (2026-01-31T12:00:00Z) or unix seconds")
        if times["until"] <= times["since"]:
            raise BadParameter("until", "must be after since")
        if times["until"] - times["since"] > MAX_PERIOD:
            raise BadParameter("until", f"the period may be at most {MAX_PERIOD // 86400} days")
        rule = body.get("rule")
        if isinstance(rule, str):
            found = self._alerts.get_rule(rule)
            if found is None:
                raise ApiError(404, f"no rule named {rule!r}")
            rule = found
        elif rule is None:
            raise BadParameter("rule", "give a rule name or a rule")
        return await self._alerts_call(self._alerts.backtest(rule, times["since"], times["until"]))

    @app.route("/api/v1/incidents", methods=["GET"])
    @api_route
    async def incident_list(self, request, params: Params):
        filters = {
            "state": params.choice("state", ("open", "acknowledged", "resolved", "active")),
            "rule": params.text("rule"),
            "topic": params.text("topic"),
            "source": params.text("source"),
            "severity": params.choice("severity", ("info", "warning", "critical")),
            "since": params.time("since"),
            "until": params.time("until"),
        }
        limit = params.integer("limit", 50, 1, MAX_LIMIT)
        cursor = params.text("cursor")
        params.finish()
        try:
            incidents, following = await self._alerts.incidents(filters, limit, cursor)
        except ValueError as e:
            raise store_problem(e, "cursor")
        return {"incidents": incidents, "next": following}

    @app.route("/api/v1/incidents/<incident_id>", methods=["GET"])
    @api_route
    async def incident_get(self, request, params: Params, incident_id):
        params.finish()
        incident = await self._alerts.incident(incident_id)
        if incident is None:
            raise ApiError(404, f"no incident {incident_id!r}")
        return {"incident": incident}

    def _by(self, request) -> str:
        body = json_body(request, required=False)
        by = body.get("by", "api") if isinstance(body, dict) else None
        if not isinstance(by, str) or not 0 < len(by) <= 100:
            raise BadParameter("by", "must be a name of 1 to 100 characters")
        return by

    @app.route("/api/v1/incidents/<incident_id>/acknowledge", methods=["POST"])
    @api_route
    async def incident_acknowledge(self, request, params: Params, incident_id):
        params.finish()
        by = self._by(request)
        return {"incident": await self._alerts_call(self._alerts.acknowledge(incident_id, by))}

    @app.route("/api/v1/incidents/<incident_id>/resolve", methods=["POST"])
    @api_route
    async def incident_resolve(self, request, params: Params, incident_id):
        params.finish()
        by = self._by(request)
        return {"incident": await self._alerts_call(self._alerts.resolve(incident_id, by))}

    @app.route("/api/v1/channels", methods=["GET"])
    @api_route
    async def channel_list(self, request, params: Params):
        params.finish()
        return {"channels": await self._alerts.channels()}

    @app.route("/api/v1/channels/<name>/enable", methods=["POST"])
    @api_route
    async def channel_enable(self, request, params: Params, name):
        params.finish()

        async def enable():
            return self._alerts.enable_channel(name)

        was_disabled = await self._alerts_call(enable())
        return {"channel": name, "was_disabled": was_disabled}
