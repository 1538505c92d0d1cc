"""
The alert routes of the JSON API, through a real Agent and Site in memory
(treq's StubTreq) over an engine on a Clock and a synchronous store: rules
CRUD, backtest, incidents with their notifications, acknowledge, resolve,
channels.  Every route needs the bearer token; mistakes are 400s that say
what is wrong.
"""

import json

import pytest
from treq.testing import StubTreq
from twisted.internet.task import Clock

from monitor.alerts.notifiers import DISABLE, RETRY, Delivery
from monitor.web.api import Api, TokenAuth
from tests.alerts.helpers import T0, ScriptedNotifier, make_engine, post, settle

TOKEN = "t0ken"
BASE = "http://monitor.test"
CRISIS = {"name": "crisis", "type": "keyword", "labels": ["crisis"]}


class Client:
    def __init__(self, engine, clock):
        self.engine, self.clock = engine, clock
        # The parts of a hub the API uses, around this engine.
        api = Api(
            TokenAuth([TOKEN]),
            store=engine.store.store,
            metrics=engine.metrics,
            topics=engine.topics,
            sources=engine.sources,
            alerts=engine,
        )
        self.stub = StubTreq(api.resource())

    def call(self, method, path, body=None, token=TOKEN, raw=None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if data is not None:
            headers["Content-Type"] = "application/json"
        d = self.stub.request(method, BASE + path, headers=headers, data=data)
        self.stub.flush()
        out = []
        d.addBoth(out.append)
        assert out, f"{method} {path} did not answer"
        response = out[0]
        content = []
        response.content().addBoth(content.append)
        self.stub.flush()
        return response.code, json.loads(content[0])


@pytest.fixture
def api():
    clock = Clock()
    clock.advance(T0)
    hook = ScriptedNotifier("hook", [Delivery(RETRY, 500, "boom")])
    engine = make_engine(clock, [CRISIS], notifiers={"hook": hook})
    return Client(engine, clock)


def open_incident(api, n=1):
    api.engine.posts_stored([post(i, T0 + i, labels=("crisis",)) for i in range(n)])
    settle(api.clock, 10)
    (incident_id,) = [i.id for i in api.engine.detector.book.open.values() if i.rule == "crisis"]
    return incident_id


def test_every_alert_route_needs_the_token(api):
    """Without the bearer token: 401, for reads and writes."""
    for method, path in [("GET", "/api/v1/rules"), ("POST", "/api/v1/rules"), ("GET", "/api/v1/incidents"),
                         ("POST", "/api/v1/incidents/x/resolve"), ("POST", "/api/v1/backtest"),
                         ("DELETE", "/api/v1/rules/crisis"), ("GET", "/api/v1/channels")]:  # fmt: skip
        code, body = api.call(method, path, token=None)
        assert code == 401 and "error" in body, path


def test_rules_crud(api):
    """Create, read, replace, disable, enable and delete a rule; the list shows origin and open incidents."""
    code, body = api.call("POST", "/api/v1/rules", {"name": "vip", "type": "influencer", "min_followers": 5000})
    assert code == 200 and body["rule"]["origin"] == "web" and body["rule"]["sentiment"] == "negative"
    code, body = api.call("GET", "/api/v1/rules/vip")
    assert code == 200 and body["rule"]["min_followers"] == 5000
    # What GET gives can be PUT back, changed.
    spec = dict(body["rule"], min_followers=100)
    code, body = api.call("PUT", "/api/v1/rules/vip", spec)
    assert code == 200 and body["rule"]["min_followers"] == 100
    code, body = api.call("POST", "/api/v1/rules/vip/disable")
    assert code == 200 and body["rule"]["enabled"] is False
    code, body = api.call("POST", "/api/v1/rules/vip/enable")
    assert body["rule"]["enabled"] is True
    code, body = api.call("GET", "/api/v1/rules")
    assert sorted((r["name"], r["origin"], r["open_incidents"]) for r in body["rules"]) == [
        ("crisis", "file", 0), ("vip", "web", 0)]  # fmt: skip
    code, body = api.call("DELETE", "/api/v1/rules/vip")
    assert code == 200 and body == {"deleted": "vip"}
    code, body = api.call("GET", "/api/v1/rules/vip")
    assert code == 404


def test_rule_mistakes(api):
    """Invalid rules list every problem; duplicates conflict; unknown names are 404; bad JSON names the body."""
    code, body = api.call("POST", "/api/v1/rules", {"name": "x", "type": "volume_spike", "window": "7s",
                                                    "topics": ["Nope"], "wat": 1})  # fmt: skip
    assert code == 400 and body["error"] == "the rule is not valid"
    assert sorted(body["problems"]) == ["rule.wat: unknown key (allowed here: baseline, channels, cooldown, drops, "
                                        "enabled, escalate_at, factor, min_count, name, severity, topics, type, "
                                        "warmup, window)"]  # fmt: skip
    code, body = api.call("POST", "/api/v1/rules", {"name": "x", "type": "volume_spike", "window": "90s",
                                                    "topics": ["Nope"]})  # fmt: skip
    assert sorted(body["problems"]) == [
        "rule.topics: names no configured topic: 'Nope'",
        "rule.window: must be whole minutes",
    ]
    code, body = api.call("POST", "/api/v1/rules", dict(CRISIS))
    assert code == 409
    code, body = api.call("PUT", "/api/v1/rules/ghost", {"type": "keyword", "labels": ["crisis"]})
    assert code == 404
    code, body = api.call("PUT", "/api/v1/rules/crisis", {"name": "other", "type": "keyword", "labels": ["crisis"]})
    assert code == 400 and "name in the address" in body["problems"][0]
    code, body = api.call("POST", "/api/v1/rules", raw=b"{nope")
    assert code == 400 and body["parameter"] == "body"
    code, body = api.call("POST", "/api/v1/rules?dry=1", CRISIS)
    assert code == 400 and body["parameter"] == "dry"


def test_incidents_with_their_notifications(api):
    """An incident lists rule, topic, severity, post-time times, counts, samples and every attempt with its outcome."""
    open_incident(api, 3)
    code, body = api.call("GET", "/api/v1/incidents")
    assert code == 200 and body["next"] is None
    (incident,) = body["incidents"]
    assert (incident["rule"], incident["topic"], incident["severity"], incident["state"]) == (
        "crisis", "Acme", "warning", "open")  # fmt: skip
    assert incident["opened_at"] == "2023-11-14T22:00:00.000Z" and incident["posts"] == 3
    assert len(incident["samples"]) == 3
    (note,) = incident["notifications"]
    assert note["channel"] == "hook" and note["event"] == "opened" and note["state"] == "sent"
    assert [(a["outcome"], a["status"], a["detail"]) for a in note["log"]] == [("retry", 500, "boom"),
                                                                              ("sent", 200, "ok")]  # fmt: skip
    code, one = api.call("GET", f"/api/v1/incidents/{incident['id']}")
    assert code == 200 and one["incident"]["id"] == incident["id"]
    code, body = api.call("GET", "/api/v1/incidents/inc_nope")
    assert code == 404


def test_incidents_explain_themselves(api):
    """A spike's incident carries its explanation in the list and on its own: what rose, top posts, sources."""
    spike = {"name": "spike", "type": "volume_spike", "min_count": 10, "warmup": 0, "baseline": "1h"}
    code, _ = api.call("POST", "/api/v1/rules", spike)
    assert code == 200
    api.clock.advance(3600)
    api.engine.posts_stored([post(i, T0 + i * 300, text="acme calm") for i in range(12)])
    api.engine.posts_stored([post(100 + i, T0 + 3600 + i * 5, text="acme refund <script>x</script>", likes=i)
                             for i in range(30)] + [post(999, T0 + 3600 + 300)])  # fmt: skip
    settle(api.clock, 10)
    code, body = api.call("GET", "/api/v1/incidents?rule=spike")
    (incident,) = body["incidents"]
    why = incident["explanation"]
    assert why["window"] == "5m" and why["posts"] == 30 and why["baseline_posts"] == 12
    assert "refund" in why["terms"][0]["term"].split() and why["terms"][0]["count"] == 30
    assert why["top_posts"][0]["id"] == "s:129" and why["top_posts"][0]["text"] == "acme refund <script>x</script>"
    assert why["sources"] == [{"source": "s", "network": "s", "count": 30}] and why["stories"] == []
    code, one = api.call("GET", f"/api/v1/incidents/{incident['id']}")
    assert one["incident"]["explanation"] == why
    # As the OpenAPI description says.
    from jsonschema import Draft202012Validator

    from monitor.web.openapi import openapi

    schema = openapi()["components"]["schemas"]["Incident"]
    assert sorted(schema["properties"]["explanation"]["properties"]) == sorted(why)
    Draft202012Validator(schema).validate(one["incident"])
    # Post-rule incidents have none.
    api.engine.posts_stored([post(1000, T0 + 3600 + 310, labels=("crisis",))])
    settle(api.clock, 10)
    code, body = api.call("GET", "/api/v1/incidents?rule=crisis")
    assert body["incidents"][0]["explanation"] == {}


def test_incident_filters_and_pages(api):
    """Filters by state, rule, topic and time; pages with a cursor; bad values are 400s."""
    for k in range(3):
        api.clock.advance(3600 if k else 0)
        api.engine.posts_stored([post(k, T0 + k * 3600, labels=("crisis",), topic="Globex" if k == 1 else "Acme")])
        settle(api.clock)
    code, body = api.call("GET", "/api/v1/incidents?topic=Acme&limit=1")
    assert [i["opened_at"] for i in body["incidents"]] == ["2023-11-15T00:00:00.000Z"]
    code, body = api.call("GET", f"/api/v1/incidents?topic=Acme&limit=1&cursor={body['next']}")
    assert [i["opened_at"] for i in body["incidents"]] == ["2023-11-14T22:00:00.000Z"] and body["next"] is None
    code, body = api.call("GET", "/api/v1/incidents?state=active")
    assert len(body["incidents"]) == 1
    code, body = api.call("GET", "/api/v1/incidents?state=resolved&since=2023-11-14T22:30:00Z")
    assert [i["topic"] for i in body["incidents"]] == ["Globex"]
    for bad, name in [("state=gone", "state"), ("cursor=xyz", "cursor"), ("limit=0", "limit"), ("since=soon", "since"),
                      ("colour=red", "colour")]:  # fmt: skip
        code, body = api.call("GET", f"/api/v1/incidents?{bad}")
        assert code == 400 and body["parameter"] == name, bad


def test_acknowledge_and_resolve(api):
    """Acknowledge then resolve by hand, saying who; resolving again is a conflict."""
    incident_id = open_incident(api)
    code, body = api.call("POST", f"/api/v1/incidents/{incident_id}/acknowledge", {"by": "alice"})
    assert (
        code == 200 and body["incident"]["state"] == "acknowledged" and body["incident"]["acknowledged_by"] == "alice"
    )
    code, body = api.call("POST", f"/api/v1/incidents/{incident_id}/resolve")
    assert code == 200 and body["incident"]["state"] == "resolved" and body["incident"]["resolved_by"] == "api"
    settle(api.clock)
    code, body = api.call("GET", f"/api/v1/incidents/{incident_id}")
    assert [n["event"] for n in body["incident"]["notifications"]] == ["opened", "resolved"]
    code, body = api.call("POST", f"/api/v1/incidents/{incident_id}/resolve")
    assert code == 409 and "resolved" in body["error"]
    code, body = api.call("POST", f"/api/v1/incidents/{incident_id}/acknowledge", {"by": ""})
    assert code == 400 and body["parameter"] == "by"


def test_backtest(api):
    """A backtest by name or with a rule not saved; times checked; source health refused."""
    api.engine.store.store.add_posts([post(i, T0 + i * 600, labels=("crisis",)) for i in range(6)])
    code, body = api.call("POST", "/api/v1/backtest", {"rule": "crisis", "since": T0, "until": "2023-11-15T00:00:00Z"})
    assert code == 200 and body["posts"] == 6 and body["fired"] == 1
    (incident,) = body["incidents"]
    assert incident["posts"] == 6 and incident["state"] == "resolved"
    assert incident["resolved_at"] == "2023-11-14T23:20:00.000Z"  # last post + 30m of quiet
    assert [e["event"] for e in incident["events"]] == ["opened", "resolved"]
    code, body = api.call("POST", "/api/v1/backtest", {"rule": {"name": "try", "type": "keyword", "phrases": ["fine"],
                                                                "cooldown": "5m"},
                                                       "since": T0, "until": T0 + 7200})  # fmt: skip
    assert body["fired"] == 6
    assert api.engine.store.store.rows("SELECT count(*) FROM alert_incidents") == [(0,)]
    for payload, status, name in [
        ({"rule": "ghost", "since": T0, "until": T0 + 1}, 404, None),
        ({"rule": "crisis", "since": T0, "until": T0}, 400, "until"),
        ({"rule": "crisis", "since": "yesterday", "until": T0}, 400, "since"),
        ({"rule": "crisis", "since": T0, "until": T0 + 40 * 86400}, 400, "until"),
        ({"since": T0, "until": T0 + 1}, 400, "rule"),
        ({"rule": "crisis", "since": T0, "until": T0 + 1, "extra": 1}, 400, "extra"),
        ({"rule": {"name": "h", "type": "source_health"}, "since": T0, "until": T0 + 1}, 400, None),
    ]:
        code, body = api.call("POST", "/api/v1/backtest", payload)
        assert code == status, (payload, body)
        if name:
            assert body["parameter"] == name


def test_channels_status_and_enable(api):
    """Channels show why they are disabled; enabling one sends what waited."""
    api.engine.outbox.channels["hook"].notifier.script = [Delivery(DISABLE, 404, "no_service")]
    open_incident(api)
    code, body = api.call("GET", "/api/v1/channels")
    (hook,) = body["channels"]
    assert hook["state"] == "disabled" and "no_service" in hook["disabled_reason"] and hook["pending"] == 1
    code, body = api.call("POST", "/api/v1/channels/hook/enable")
    assert code == 200 and body == {"channel": "hook", "was_disabled": True}
    settle(api.clock)
    code, body = api.call("GET", "/api/v1/channels")
    assert body["channels"][0]["state"] == "ok" and body["channels"][0]["sent"] == 1
    code, body = api.call("POST", "/api/v1/channels/nope/enable")
    assert code == 404
