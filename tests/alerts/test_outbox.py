"""
The outbox on a Clock: order, rate limits, capped backoff, Retry-After,
timeouts, disabled channels, giving up, and notifications that survive a
restart and a failing store.
"""

from twisted.internet.task import Clock

from monitor.alerts.config import channel_defaults
from monitor.alerts.incidents import Incident
from monitor.alerts.notifiers import DISABLE, FAILED, RETRY, SENT, Delivery, Notification
from monitor.alerts.outbox import Outbox
from monitor.metrics import Metrics
from monitor.store.sqlite_alerts import SQLiteAlerts
from monitor.store.writes import WriteQueue
from tests.alerts.helpers import T0, ScriptedNotifier, SyncStore


def spec(name="hook", **overrides):
    s = channel_defaults("webhook", name)
    s.update(url="http://127.0.0.1:9/", secret=None, rate_limit=600, timeout="10s")
    s.update(overrides)
    return s


def setup(script=(), store=None, clock=None, channel=None, **kw):
    clock = clock or Clock()
    if not clock.seconds():
        clock.advance(T0)
    store = store or SyncStore()
    notifier = ScriptedNotifier("hook", script)
    disabled = []
    outbox = Outbox([(channel or spec(), notifier)], SQLiteAlerts(store), WriteQueue(clock), Metrics(), clock,
                    on_disabled=lambda name, reason: disabled.append((name, reason)), **kw)  # fmt: skip
    outbox.startService()
    return clock, store, notifier, outbox, disabled


def notifications(store, clock, count=1, channel="hook"):
    """Persist an incident and C{count} notifications about it, as the engine does."""
    incident = Incident("inc_1", "r", "keyword", "Acme", None, "warning", T0, T0, 60.0)
    out = [Notification(f"msg_{i}", "inc_1", channel, "opened", {"event": "opened", "incident": incident.to_dict()},
                        created_at=clock.seconds(), next_attempt_at=clock.seconds()) for i in range(count)]  # fmt: skip
    SQLiteAlerts(store).save_incidents([incident], out, T0)
    return out


def attempts(store):
    return store.rows("SELECT notification_id, at - ?, outcome, status FROM alert_attempts ORDER BY id", T0)


def test_delivers_in_order_and_records_each_attempt():
    """Notifications go out in order, one at a time; each attempt and the final state are stored."""
    clock, store, notifier, outbox, _ = setup()
    outbox.enqueue(notifications(store, clock, 3))
    for _ in range(3):
        clock.advance(1)
    assert [n.id for n in notifier.sent] == ["msg_0", "msg_1", "msg_2"]
    assert [a[2] for a in attempts(store)] == ["sent"] * 3
    assert store.rows("SELECT DISTINCT state FROM alert_notifications") == [("sent",)]


def test_backoff_doubles_and_is_capped():
    """Failures are retried after 5, 10, 20 s... never more than retry_max apart."""
    script = [Delivery(RETRY, 500, "boom")] * 6
    clock, store, notifier, outbox, _ = setup(script, retry_max=30)
    outbox.enqueue(notifications(store, clock))
    for _ in range(200):
        clock.advance(1)
    times = [a[1] for a in attempts(store)]
    assert times == [0, 5, 15, 35, 65, 95, 125]
    assert attempts(store)[-1][2] == "sent"


def test_retry_after_pauses_the_channel():
    """A 429 with Retry-After waits exactly that long, for every notification of the channel."""
    clock, store, notifier, outbox, _ = setup([Delivery(RETRY, 429, "slow down", retry_after=42)])
    outbox.enqueue(notifications(store, clock, 2))
    clock.advance(41)
    assert len(notifier.calls) == 1
    assert outbox.status()[0]["state"] == "rate limited"
    clock.advance(1)
    clock.advance(1)
    assert [a[1:3] for a in attempts(store)] == [(0, "retry"), (42, "sent"), (43, "sent")]


def test_rate_limit_spaces_messages():
    """At 6 a minute, three notifications go out 10 s apart."""
    clock, store, notifier, outbox, _ = setup(channel=spec(rate_limit=6))
    outbox.enqueue(notifications(store, clock, 3))
    for _ in range(30):
        clock.advance(1)
    assert [a[1] for a in attempts(store)] == [0, 10, 20]


def test_refused_notification_fails_alone():
    """A message the receiver refuses for good is marked failed; the next one goes out."""
    clock, store, notifier, outbox, _ = setup([Delivery(FAILED, 400, "invalid_payload")])
    outbox.enqueue(notifications(store, clock, 2))
    clock.advance(1)
    clock.advance(1)
    assert store.rows("SELECT id, state, last_error FROM alert_notifications ORDER BY id") == [
        ("msg_0", "failed", "invalid_payload"), ("msg_1", "sent", None)]  # fmt: skip


def test_disabled_channel_waits_until_enabled():
    """Gone (404) disables the channel, says why, keeps its notifications, and delivers them once enabled."""
    clock, store, notifier, outbox, disabled = setup([Delivery(DISABLE, 404, "no_service")])
    outbox.enqueue(notifications(store, clock, 2))
    clock.advance(60)
    (status,) = outbox.status()
    assert status["state"] == "disabled" and status["disabled_reason"] == "no_service" and status["pending"] == 2
    assert disabled == [("hook", "no_service")]
    assert store.rows("SELECT disabled_reason FROM alert_channels") == [("no_service",)]
    assert outbox.enable("hook")
    clock.advance(1)
    clock.advance(1)
    assert [n.id for n in notifier.sent] == ["msg_0", "msg_1"]
    assert store.rows("SELECT disabled_reason FROM alert_channels") == [(None,)]


def test_slow_receiver_times_out_and_is_retried():
    """An attempt with no answer is cancelled after the channel's timeout and retried."""
    clock, store, notifier, outbox, _ = setup(["hang"], channel=spec(timeout="3s"))
    outbox.enqueue(notifications(store, clock))
    clock.advance(3)
    assert notifier.hanging[0].called  # cancelled
    assert attempts(store)[0][2:] == ("retry", None)
    assert "no answer within 3s" in store.rows("SELECT detail FROM alert_attempts")[0][0]
    clock.advance(5)
    assert len(notifier.sent) == 1


def test_gives_up_after_a_while():
    """A notification undelivered for give_up_after is marked failed."""
    clock, store, notifier, outbox, _ = setup([Delivery(RETRY, 503, "down")] * 100, retry_max=60, give_up_after=300)
    outbox.enqueue(notifications(store, clock))
    for _ in range(400):
        clock.advance(1)
    (row,) = store.rows("SELECT state, last_error FROM alert_notifications")
    assert row[0] == "failed" and row[1].startswith("gave up after 300s")


def test_pending_notifications_survive_a_restart():
    """What was not delivered before a stop is delivered by the next outbox on the same store."""
    clock, store, notifier, outbox, _ = setup([Delivery(RETRY, None, "connection refused")])
    outbox.enqueue(notifications(store, clock, 2))
    clock.advance(1)
    outbox.stopService()
    assert store.rows("SELECT count(*) FROM alert_notifications WHERE state = 'pending'") == [(2,)]

    clock2 = Clock()
    clock2.advance(T0 + 3600)
    _, _, notifier2, outbox2, _ = setup(store=store, clock=clock2)
    outbox2.stopService()
    outbox2.restore(SQLiteAlerts(store).channel_states().result, SQLiteAlerts(store).pending_notifications().result)
    outbox2.startService()
    clock2.advance(1)
    clock2.advance(1)
    assert sorted(n.id for n in notifier2.sent) == ["msg_0", "msg_1"]
    assert [a[2] for a in attempts(store)] == ["retry", "sent", "sent"]


def test_disabled_channel_stays_disabled_unless_changed():
    """A channel its receiver disabled stays so after a restart, unless its settings changed."""
    clock, store, notifier, outbox, _ = setup([Delivery(DISABLE, 410, "channel_is_archived")])
    outbox.enqueue(notifications(store, clock))
    clock.advance(1)
    states = SQLiteAlerts(store).channel_states().result
    _, _, _, same, _ = setup(store=store, clock=clock)
    same.restore(states, [])
    assert same.status()[0]["state"] == "disabled"
    _, _, _, changed, _ = setup(store=store, clock=clock, channel=spec(url="http://127.0.0.1:9/new"))
    changed.restore(states, [])
    assert changed.status()[0]["state"] == "ok"


def test_a_failing_store_delays_but_loses_nothing():
    """Writes that fail are retried in order until the store takes them."""
    clock, store, notifier, outbox, _ = setup()
    ns = notifications(store, clock, 2)
    store.fail_writes = 3
    outbox.enqueue(ns)
    clock.advance(0)
    assert store.rows("SELECT count(*) FROM alert_attempts") == [(0,)]
    for _ in range(10):
        clock.advance(1)
    assert [a[2] for a in attempts(store)] == ["sent", "sent"]


def test_status_and_metrics():
    """Status lists every channel; metrics count outcomes."""
    clock, store, notifier, outbox, _ = setup([Delivery(RETRY, 500, "boom")])
    outbox.enqueue(notifications(store, clock))
    clock.advance(0)
    (status,) = outbox.status()
    assert status["state"] == "retrying" and status["last_error"] == "boom" and status["pending"] == 1
    text = outbox.metrics.render().decode()
    assert 'monitor_notifications_total{channel="hook",outcome="retry"} 1.0' in text
    assert 'monitor_outbox_pending{channel="hook"} 1.0' in text
    assert SENT == "sent"
