"""
The alert engine in a hub, on a Clock and a synchronous store: the sink
stays cheap, incidents and their notifications are written together,
routing, the timer (idle clock, source health, channel health), restarts,
rules edited at run time, acknowledging, resolving and backtests.
"""

import pytest
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import Clock

from monitor.alerts.engine import AlertError
from monitor.alerts.notifiers import DISABLE, RETRY, Delivery
from tests.alerts.helpers import T0, FakePush, FakeSource, ScriptedNotifier, SyncStore, make_engine, post, settle

CRISIS = {"name": "crisis", "type": "keyword", "labels": ["crisis"], "cooldown": "10m"}
SPIKE = {"name": "spike", "type": "volume_spike", "min_count": 20, "cooldown": "10m"}


def clock_at(t=T0):
    clock = Clock()
    clock.advance(t)
    return clock


def result(d):
    """The result of a Deferred that must have fired (synchronous store)."""
    out = []
    d.addBoth(out.append)
    assert out, "expected the Deferred to have fired"
    if hasattr(out[0], "raiseException"):
        out[0].raiseException()
    return out[0]


def run(coro):
    return result(ensureDeferred(coro))


def steady(start, minutes, per_minute, first=0, topic="Acme"):
    out, n = [], first
    for m in range(minutes):
        for k in range(per_minute):
            n += 1
            out.append(post(n, start + m * 60 + k * 60 / per_minute, topic=topic))
    return out


def test_sink_is_cheap_and_writes_incident_with_its_notification():
    """posts_stored writes nothing itself; the next turn writes the incident and its notification together."""
    clock = clock_at()
    hook = ScriptedNotifier("hook")
    engine = make_engine(clock, [CRISIS], notifiers={"hook": hook})
    writes = engine.store.store.writes
    engine.posts_stored([post(1, T0, labels=("crisis",), text="acme breach")])
    assert engine.store.store.writes == writes and not hook.calls
    clock.advance(0)
    (incident,) = engine.store.store.rows("SELECT rule, topic, state, posts FROM alert_incidents")
    assert incident == ("crisis", "Acme", "open", 1)
    assert engine.store.store.rows("SELECT channel, event, state FROM alert_notifications") == [
        ("hook", "opened", "sent")
    ]
    assert hook.calls[0].payload["incident"]["samples"][0]["text"] == "acme breach"


def test_one_notification_per_incident_event_not_per_post():
    """Fifty matching posts make one incident and one notification; resolving sends one more."""
    clock = clock_at()
    hook = ScriptedNotifier("hook")
    engine = make_engine(clock, [CRISIS], notifiers={"hook": hook})
    for i in range(50):
        engine.posts_stored([post(i, T0 + i, labels=("crisis",))])
        clock.advance(1)
    assert [n.event for n in hook.calls] == ["opened"]
    assert engine.store.store.rows("SELECT posts, hits FROM alert_incidents") == [(50, 50)]
    # No more posts: the engine's clock follows the wall clock, the incident resolves.
    for _ in range(80):
        clock.advance(10)
    assert [n.event for n in hook.calls] == ["opened", "resolved"]
    (row,) = engine.store.store.rows("SELECT state, resolved_at - ? FROM alert_incidents", T0)
    assert row == ("resolved", 49 + 600)


def test_routing_by_rule_and_severity():
    """Channels take what their min_severity, their rule list and the rule's channel list allow."""
    clock = clock_at()
    rules = [
        dict(CRISIS, severity="critical"),
        {"name": "leads", "type": "purchase_intent", "severity": "info", "channels": ["sales"]},
    ]
    channels = [
        {"name": "pager", "kind": "webhook", "url": "http://127.0.0.1:9/p", "min_severity": "critical"},
        {"name": "sales", "kind": "webhook", "url": "http://127.0.0.1:9/s"},
        {"name": "crisis-only", "kind": "webhook", "url": "http://127.0.0.1:9/c", "rules": ["crisis"]},
    ]
    notifiers = {c["name"]: ScriptedNotifier(c["name"]) for c in channels}
    engine = make_engine(clock, rules, channels=channels, notifiers=notifiers)
    engine.posts_stored([post(1, T0, labels=("crisis",)), post(2, T0, labels=("purchase_intent",))])
    settle(clock)
    got = {name: sorted(n.incident["rule"] for n in notifier.calls) for name, notifier in notifiers.items()}
    assert got == {"pager": ["crisis"], "sales": ["crisis", "leads"], "crisis-only": ["crisis"]}


def test_escalation_notifies_unless_acknowledged():
    """Escalating sends a notification; after an acknowledgement it does not."""
    clock = clock_at()
    hook = ScriptedNotifier("hook")
    engine = make_engine(clock, [dict(CRISIS, escalate_at=3)], notifiers={"hook": hook})
    engine.posts_stored([post(i, T0 + i, labels=("crisis",)) for i in range(3)])
    settle(clock)
    assert [n.event for n in hook.calls] == ["opened", "escalated"]

    clock2 = clock_at()
    hook2 = ScriptedNotifier("hook")
    engine2 = make_engine(clock2, [dict(CRISIS, escalate_at=3)], notifiers={"hook": hook2})
    engine2.posts_stored([post(1, T0, labels=("crisis",))])
    clock2.advance(1)
    (incident_id,) = [i.id for i in engine2.detector.book.open.values()]
    acked = run(engine2.acknowledge(incident_id, "alice"))
    assert acked["state"] == "acknowledged" and acked["acknowledged_by"] == "alice"
    engine2.posts_stored([post(i, T0 + 10 + i, labels=("crisis",)) for i in range(2, 5)])
    clock2.advance(1)
    assert [n.event for n in hook2.calls] == ["opened"]
    assert engine2.store.store.rows("SELECT severity, state FROM alert_incidents") == [("critical", "acknowledged")]


def test_resolve_by_hand_and_errors():
    """Resolving by hand notifies; resolving twice is a conflict; an unknown id is not found."""
    clock = clock_at()
    hook = ScriptedNotifier("hook")
    engine = make_engine(clock, [CRISIS], notifiers={"hook": hook})
    engine.posts_stored([post(1, T0, labels=("crisis",))])
    clock.advance(1)
    (incident_id,) = [i.id for i in engine.detector.book.open.values()]
    done = run(engine.resolve(incident_id, "bob"))
    assert (done["state"], done["resolved_by"]) == ("resolved", "bob")
    clock.advance(1)
    assert [n.event for n in hook.calls] == ["opened", "resolved"]
    with pytest.raises(AlertError) as e:
        run(engine.resolve(incident_id, "bob"))
    assert e.value.status == 409
    with pytest.raises(AlertError) as e:
        run(engine.acknowledge("inc_nope", "bob"))
    assert e.value.status == 404


def test_source_health_failing_and_silent():
    """A collector failing, or silent, longer than `after` opens an incident that resolves once it recovers."""
    clock = clock_at()
    hook = ScriptedNotifier("hook")
    broken = FakeSource("x-search", state="failing", last_error="HTTP 503", last_post_at=T0 + 100)
    quiet = FakeSource("rss", state="idle", last_post_at=T0)
    done = FakeSource("archive", state="finished", last_post_at=T0 - 86400)
    rule = {"name": "collectors", "type": "source_health", "after": "5m", "cooldown": "2m"}
    make_engine(clock, [rule], notifiers={"hook": hook}, sources=[broken, quiet, done])
    for _ in range(29):
        clock.advance(10)
    assert not hook.calls
    clock.advance(10)
    clock.advance(10)
    opened = sorted((n.incident["source"], n.incident["signal"]["why"]) for n in hook.calls)
    assert opened == [("rss", "silent"), ("x-search", "failing")]
    assert hook.calls[0].incident["clock"] == "wall"
    broken.state, broken.last_post_at, quiet.last_post_at = "connected", T0 + 310, T0 + 310
    for _ in range(20):
        clock.advance(10)
    assert sorted(n.event for n in hook.calls) == ["opened", "opened", "resolved", "resolved"]


def test_channel_disabled_by_its_receiver_is_an_incident():
    """A channel gone (404) opens a critical incident sent to the other channels; enabling it resolves it."""
    clock = clock_at()
    channels = [
        {"name": "slack", "kind": "webhook", "url": "http://127.0.0.1:9/s"},
        {"name": "mail", "kind": "webhook", "url": "http://127.0.0.1:9/m"},
    ]
    slack = ScriptedNotifier("slack", [Delivery(DISABLE, 404, "no_service")])
    mail = ScriptedNotifier("mail")
    engine = make_engine(clock, [CRISIS], channels=channels, notifiers={"slack": slack, "mail": mail})
    engine.posts_stored([post(1, T0, labels=("crisis",))])
    clock.advance(1)
    clock.advance(1)
    about = [(n.incident["type"], n.event) for n in mail.calls]
    assert about == [("keyword", "opened"), ("channel_health", "opened")]
    assert mail.calls[1].incident["severity"] == "critical"
    status = {c["name"]: c for c in run(engine.channels())}
    assert status["slack"]["state"] == "disabled" and "no_service" in status["slack"]["disabled_reason"]
    engine.enable_channel("slack")
    clock.advance(1)
    clock.advance(1)
    assert [(n.incident["type"], n.event) for n in mail.calls][-1] == ("channel_health", "resolved")
    assert [n.event for n in slack.sent] == ["opened"]  # the crisis notification, delivered late


def test_restart_continues_incidents_history_and_deliveries():
    """A new engine on the same store continues the open incident, keeps the baseline, and delivers what was pending."""
    store = SyncStore()
    clock = clock_at()
    down = ScriptedNotifier("hook", [Delivery(RETRY, None, "connection refused")] * 100)
    engine = make_engine(clock, [CRISIS, SPIKE], notifiers={"hook": down}, store=store)
    history = steady(T0 - 180 * 60, 180, 2)
    store.add_posts(history)
    engine.posts_stored(history)
    crisis = post(10_000, T0, labels=("crisis",))
    store.add_posts([crisis])
    engine.posts_stored([crisis])
    clock.advance(1)
    ensureDeferred(engine._stop())
    engine.stopService()
    assert store.rows("SELECT count(*) FROM alert_notifications WHERE state = 'pending'") == [(1,)]

    clock2 = clock_at(T0 + 30)
    up = ScriptedNotifier("hook")
    engine2 = make_engine(clock2, [CRISIS, SPIKE], notifiers={"hook": up}, store=store)
    clock2.advance(1)
    assert [n.event for n in up.sent] == ["opened"]
    # The same incident goes on.
    engine2.posts_stored([post(10_001, T0 + 60, labels=("crisis",))])
    clock2.advance(1)
    assert store.rows("SELECT count(*), max(posts) FROM alert_incidents WHERE rule = 'crisis'") == [(1, 2)]
    # The baseline came from the store: a surge fires at once, without a new warm-up.
    engine2.posts_stored(steady(T0 + 120, 5, 30, first=20_000))
    engine2.posts_stored([post(30_000, T0 + 120 + 5 * 60)])
    clock2.advance(1)
    assert store.rows("SELECT count(*) FROM alert_incidents WHERE rule = 'spike'") == [(1,)]


def test_rules_edited_at_run_time():
    """Rules are created, replaced, disabled and deleted through the engine; the file does not undo edits."""
    store = SyncStore()
    clock = clock_at()
    engine = make_engine(clock, [CRISIS], store=store)
    rule = run(engine.save_rule({"name": "vip", "type": "influencer", "min_followers": 5000}, create=True))
    assert rule.origin == "web" and "vip" in engine.rules
    with pytest.raises(AlertError) as e:
        run(engine.save_rule({"name": "vip", "type": "influencer"}, create=True))
    assert e.value.status == 409
    with pytest.raises(AlertError) as e:
        run(engine.save_rule({"name": "bad", "type": "keyword", "topics": ["Nope"]}, create=True))
    assert e.value.status == 400 and len(e.value.problems) == 2
    run(engine.set_rule_enabled("crisis", False))
    engine.posts_stored([post(1, T0, labels=("crisis",)), post(2, T0, sentiment="negative", followers=9000)])
    clock.advance(1)
    assert [r for (r,) in store.rows("SELECT rule FROM alert_incidents")] == ["vip"]
    run(engine.delete_rule("vip"))
    assert store.rows("SELECT state, resolved_by FROM alert_incidents") == [("resolved", "rule deleted")]
    # A restart with the same file keeps the edited (disabled) crisis rule.
    engine2 = make_engine(clock, [CRISIS], store=store)
    assert engine2.rules["crisis"].enabled is False and engine2.rules["crisis"].origin == "web"
    assert "vip" not in engine2.rules
    # A rule removed from the file goes; an edited one stays.
    engine3 = make_engine(clock, [], store=store)
    assert list(engine3.rules) == ["crisis"]


def test_backtest_shows_when_a_rule_would_have_fired():
    """A backtest over stored posts lists the incidents the rule would have opened, and writes nothing."""
    store = SyncStore()
    clock = clock_at()
    engine = make_engine(clock, [], store=store)
    posts = (
        steady(T0, 180, 2) + steady(T0 + 180 * 60, 20, 30, first=10_000) + steady(T0 + 200 * 60, 60, 2, first=50_000)
    )
    store.add_posts(posts)
    report = run(engine.backtest({"name": "try", "type": "volume_spike", "min_count": 20, "enabled": False},
                                 T0 + 60 * 60, T0 + 260 * 60))  # fmt: skip
    assert report["posts"] == len([p for p in posts if p.created_at >= T0 + 3600])
    (incident,) = report["incidents"]
    assert [e["event"] for e in incident["events"]] == ["opened", "resolved"]
    assert incident["opened_at"] <= "2023-11-15T01:05" and incident["signal"]["baseline"] > 0
    assert store.rows("SELECT count(*) FROM alert_incidents") == [(0,)]
    with pytest.raises(AlertError):
        run(engine.backtest({"name": "h", "type": "source_health"}, T0, T0 + 60))


def test_live_channel_publishes_to_the_push_hub():
    """With a push hub, the live channel publishes each incident event as an alert."""
    clock = clock_at()
    push = FakePush()
    engine = make_engine(clock, [CRISIS], channels=[], alerts={"live": True}, push=push)
    engine.posts_stored([post(1, T0, labels=("crisis",))])
    clock.advance(1)
    ((kind, payload),) = push.published
    assert kind == "alert" and payload["event"] == "opened" and payload["topic"] == "Acme"
    assert engine.store.store.rows("SELECT channel, state FROM alert_notifications") == [("live", "sent")]


def test_live_channel_without_push_hub_is_skipped():
    """Without a push hub the live attempt is recorded as skipped, not retried."""
    clock = clock_at()
    engine = make_engine(clock, [CRISIS], channels=[], alerts={"live": True})
    engine.posts_stored([post(1, T0, labels=("crisis",))])
    clock.advance(1)
    assert engine.store.store.rows("SELECT state FROM alert_notifications") == [("skipped",)]


def test_a_failing_store_never_reaches_the_pipeline():
    """With the store failing, posts_stored still returns at once; the incident is written when it recovers."""
    clock = clock_at()
    engine = make_engine(clock, [CRISIS])
    engine.store.store.fail_writes = 4
    engine.posts_stored([post(1, T0, labels=("crisis",))])
    clock.advance(0)
    assert engine.store.store.rows("SELECT count(*) FROM alert_incidents") == [(0,)]
    for _ in range(20):
        clock.advance(1)
    assert engine.store.store.rows("SELECT count(*) FROM alert_incidents") == [(1,)]


def test_metrics():
    """Hits, incident events and open incidents are counted."""
    clock = clock_at()
    engine = make_engine(clock, [CRISIS])
    engine.posts_stored([post(i, T0 + i, labels=("crisis",)) for i in range(3)])
    clock.advance(1)
    text = engine.metrics.render().decode()
    assert 'monitor_alert_hits_total{rule="crisis"} 3.0' in text
    assert 'monitor_incidents_total{event="opened",rule="crisis"} 1.0' in text
    assert "monitor_incidents_open 1.0" in text


def test_posts_sent_again_after_a_restart_count_once():
    """A source re-sending its last posts after a restart adds nothing to windows or incidents."""
    store = SyncStore()
    clock = clock_at()
    engine = make_engine(clock, [CRISIS, SPIKE], store=store)
    last = steady(T0 - 300, 5, 4) + [post(10_000, T0, labels=("crisis",))]
    store.add_posts(last)
    engine.posts_stored(last)
    clock.advance(1)
    engine2 = make_engine(clock_at(T0 + 30), [CRISIS, SPIKE], store=store)
    before = dict(engine2.detector.histories["Acme"].counts)
    engine2.posts_stored(last)
    engine2.flush()
    assert engine2.detector.histories["Acme"].counts == before
    assert store.rows("SELECT posts, hits FROM alert_incidents") == [(1, 1)]
