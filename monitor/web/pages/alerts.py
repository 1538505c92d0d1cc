"""
Alerts: the rules and their editor with a backtest, incidents, and the channels.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from klein import Klein

from monitor.model import LABELS, SENTIMENTS
from monitor.web.forms import BACKTEST_PERIODS, rule_fields, rule_form, rule_problems, rule_values
from monitor.web.pages.base import Area, Shell, page


class AlertPages(Area):
    """
    C{/alerts} and below; a 404 page while no alert engine runs.
    """

    app = Klein()

    def __init__(self, shell: Shell, engine, topics, sources) -> None:
        super().__init__(shell)
        #: L{monitor.alerts.engine.AlertEngine}, or C{None}.
        self.engine = engine
        self.topics = topics
        self.sources = sources

    @app.route("/alerts", methods=["GET"])
    @page()
    async def alerts(self, request, session):
        engine = self.engine
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

        engine = self.engine
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
        if self.engine is None:
            return self._error(request, session, 404, "Alerts are not running on this hub.")
        return self._rule_page(request, session, rule_values(None), {}, original="")

    @app.route("/alerts/rules/<name>/edit", methods=["GET"])
    @page("editor")
    async def rule_edit(self, request, session, name):
        engine = self.engine
        rule = engine.get_rule(name) if engine is not None else None
        if rule is None:
            return self._error(request, session, 404, "There is no such rule.")
        return self._rule_page(request, session, rule_values(rule.spec), {}, original=name, origin=rule.origin)

    def _rule_page(
        self, request, session, values, errors, original, status=200, backtest=None, origin=None, period="7d"
    ):
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
            channels=sorted(self.engine.outbox.channels),
            periods=[(k, v[1]) for k, v in BACKTEST_PERIODS.items()],
            period=period,
            backtest=backtest,
        )

    @app.route("/alerts/rules/save", methods=["POST"])
    @page("editor")
    async def rule_save(self, request, session):
        from monitor.alerts.engine import AlertError

        engine = self.engine
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
                    request,
                    session,
                    values,
                    rule_problems(e.problems),
                    original,
                    status=400,
                    origin=origin,
                    period=period,
                )
            return self._rule_page(
                request, session, values, {}, original, backtest=result, origin=origin, period=period
            )
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
        return await self._alert_action(request, self.engine.set_rule_enabled(name, True), f"Rule {name} enabled.")

    @app.route("/alerts/rules/<name>/disable", methods=["POST"])
    @page("editor")
    async def rule_disable(self, request, session, name):
        return await self._alert_action(request, self.engine.set_rule_enabled(name, False), f"Rule {name} disabled.")

    @app.route("/alerts/rules/<name>/delete", methods=["POST"])
    @page("editor")
    async def rule_delete(self, request, session, name):
        self.log.info("{user} deletes alert rule {rule}", user=session.user, rule=name)
        return await self._alert_action(request, self.engine.delete_rule(name), f"Rule {name} deleted.")

    @app.route("/alerts/incidents/<incident_id>/acknowledge", methods=["POST"])
    @page("editor")
    async def incident_acknowledge(self, request, session, incident_id):
        call = self.engine.acknowledge(incident_id, session.user)
        return await self._alert_action(request, call, f"Incident {incident_id} acknowledged.")

    @app.route("/alerts/incidents/<incident_id>/resolve", methods=["POST"])
    @page("editor")
    async def incident_resolve(self, request, session, incident_id):
        call = self.engine.resolve(incident_id, session.user)
        return await self._alert_action(request, call, f"Incident {incident_id} resolved.")

    @app.route("/alerts/channels/<name>/enable", methods=["POST"])
    @page("editor")
    async def channel_enable(self, request, session, name):
        engine = self.engine

        async def enable():
            return engine.enable_channel(name)

        return await self._alert_action(request, enable(), f"Channel {name} enabled.")


#: Rule types whose incidents carry a measured signal (a window's numbers).
_SIGNAL_TYPES = ("volume_spike", "sentiment_shift", "source_health", "channel_health", "story")


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
