"""
History is not news: incidents opened by posts that arrive long after they
were written ([alerts] backfill_age) are recorded and shown as backfill but
not notified, unless [alerts] notify_backfill; one still going when the
posts catch up with the present is sent then.
"""

import pytest

from monitor.config import ConfigError
from tests.alerts.helpers import T0, config, make_engine, post, settle
from tests.alerts.test_engine import CRISIS, clock_at, run

DAY = 86400.0


def crisis_posts(start, n, first=0):
    return [post(first + i, start + i, labels=("crisis",), text="acme breach") for i in range(n)]


def test_incident_from_old_posts_is_recorded_as_backfill_and_not_notified():
    """Posts written three days before they arrive open an incident marked backfill; no channel hears of it."""
    clock = clock_at(T0 + 3 * DAY)
    engine = make_engine(clock, [CRISIS])
    hook = engine.outbox.channels["hook"].notifier
    engine.posts_stored(crisis_posts(T0, 5))
    settle(clock)
    (incident,), _ = run(engine.incidents({}))
    assert incident["rule"] == "crisis" and incident["posts"] == 5
    assert incident["backfill"] is True
    assert hook.calls == []
    assert engine.store.store.rows("SELECT count(*) FROM alert_notifications") == [(0,)]
    # Resolving (in post time, once the clock moves on) is not sent either.
    for _ in range(100):
        clock.advance(10)
    assert run(engine.incidents({}))[0][0]["state"] == "resolved"
    assert hook.calls == []


def test_fresh_posts_notify_as_before():
    """Posts a minute old are news: the incident is not backfill and is sent."""
    clock = clock_at(T0 + 60)
    engine = make_engine(clock, [CRISIS])
    hook = engine.outbox.channels["hook"].notifier
    engine.posts_stored(crisis_posts(T0, 3))
    settle(clock)
    (incident,), _ = run(engine.incidents({}))
    assert incident["backfill"] is False
    assert [n.event for n in hook.calls] == ["opened"]


def test_notify_backfill_sends_history_too():
    """[alerts] notify_backfill = true: the backfill incident is marked and still sent."""
    clock = clock_at(T0 + 3 * DAY)
    engine = make_engine(clock, [CRISIS], alerts={"notify_backfill": True})
    hook = engine.outbox.channels["hook"].notifier
    engine.posts_stored(crisis_posts(T0, 2))
    settle(clock)
    (incident,), _ = run(engine.incidents({}))
    assert incident["backfill"] is True
    assert [n.event for n in hook.calls] == ["opened"]
    assert hook.calls[0].payload["incident"]["backfill"] is True


def test_backfill_age_sets_what_long_after_means():
    """With backfill_age = "1d", posts three hours old are news; with the default hour they are history."""
    for age, expected_calls in (("1d", ["opened"]), (None, [])):
        clock = clock_at(T0 + 3 * 3600)
        engine = make_engine(clock, [CRISIS], alerts={"backfill_age": age} if age else None)
        hook = engine.outbox.channels["hook"].notifier
        engine.posts_stored(crisis_posts(T0, 2))
        settle(clock)
        assert [n.event for n in hook.calls] == expected_calls, age


def test_backfill_incident_still_going_when_posts_catch_up_is_sent_then():
    """A catch-up after an outage: the incident opens as backfill, a fresh post keeps it open, it is sent once, live."""
    clock = clock_at(T0 + 2 * 3600)
    engine = make_engine(clock, [CRISIS])
    hook = engine.outbox.channels["hook"].notifier
    now = clock.seconds()
    # The collector catches up: a post every two minutes from two hours ago, in batches.
    backlog = [post(i, now - 7200 + 120 * i, labels=("crisis",), text="acme breach") for i in range(60)]
    engine.posts_stored(backlog[:30])
    settle(clock)
    assert hook.calls == [] and run(engine.incidents({}))[0][0]["backfill"] is True
    engine.posts_stored(backlog[30:])
    settle(clock)
    (incident,), _ = run(engine.incidents({}))
    assert incident["backfill"] is False and incident["posts"] == 60
    assert [n.event for n in hook.calls] == ["opened"]
    engine.posts_stored(crisis_posts(clock.seconds() - 1, 1, first=100))
    settle(clock)
    assert [n.event for n in hook.calls] == ["opened"]


def test_backfill_survives_a_restart():
    """The mark is stored: an engine reading the open incidents back keeps it (and still does not send)."""
    clock = clock_at(T0 + 3 * DAY)
    engine = make_engine(clock, [CRISIS])
    engine.posts_stored(crisis_posts(T0, 2))
    settle(clock)
    run(engine.flush())
    again = make_engine(clock, [CRISIS], store=engine.store.store)
    (incident,) = again.detector.book.open.values()
    assert incident.backfill is True


def test_backfill_keys_are_checked():
    """The defaults are 1h and false; a bad value names its key."""
    assert config().alerts["backfill_age"] == "1h" and config().alerts["notify_backfill"] is False
    with pytest.raises(ConfigError) as e:
        config(alerts={"backfill_age": "soon", "notify_backfill": "yes"})
    text = str(e.value)
    assert "alerts.backfill_age" in text and "alerts.notify_backfill" in text
