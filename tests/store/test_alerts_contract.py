"""
The contract of L{monitor.store.interfaces.IAlertStore}, run against every
store provider (see C{conftest.PROVIDERS}).
"""

from __future__ import annotations

import dataclasses
import threading

import pytest
import pytest_twisted
from zope.interface.verify import verifyObject

from monitor.alerts.incidents import Incident
from monitor.alerts.notifiers import Notification
from monitor.store.interfaces import Claim, DeliveryAttempt, IAlertStore, StoredRule
from tests.alerts.helpers import post

T0 = 1_700_000_000.0 - (1_700_000_000.0 % 3600)


def incident(n, opened_at, state="open", rule="r", topic="Acme", severity="warning", **kw):
    return Incident(f"inc_{n}", rule, "keyword", topic, None, severity, opened_at, opened_at, 60.0, state=state, **kw)


def note(n, incident_id, created_at, channel="hook", event="opened"):
    return Notification(f"msg_{n}", incident_id, channel, event, {"event": event, "text": "a <b>"},
                        created_at=created_at, next_attempt_at=created_at)  # fmt: skip


def test_provides_the_interface(backend):
    """Every method of IAlertStore is there with its signature."""
    assert verifyObject(IAlertStore, backend.alerts)


@pytest_twisted.ensureDeferred
async def test_file_rules_sync_and_web_rules_stay(backend):
    """Syncing the file's rules adds, updates and removes file rules only; a rule saved through the API stays."""
    a = backend.alerts
    assert await a.sync_file_rules([{"name": "b", "type": "keyword"}, {"name": "a", "type": "volume_spike"}], T0) == []
    await a.save_rule("web", {"name": "web", "type": "keyword", "phrases": ["x"]}, "web", T0)
    assert await a.list_rules() == [
        StoredRule("a", {"name": "a", "type": "volume_spike"}, "file"),
        StoredRule("b", {"name": "b", "type": "keyword"}, "file"),
        StoredRule("web", {"name": "web", "type": "keyword", "phrases": ["x"]}, "web"),
    ]
    # A file rule edited through the API keeps its version.
    await a.save_rule("a", {"name": "a", "type": "keyword"}, "web", T0 + 1)
    removed = await a.sync_file_rules([{"name": "a", "type": "volume_spike", "x": 1}], T0 + 2)
    assert removed == ["b"]
    assert [(r.name, r.spec, r.origin) for r in await a.list_rules()] == [
        ("a", {"name": "a", "type": "keyword"}, "web"),
        ("web", {"name": "web", "type": "keyword", "phrases": ["x"]}, "web"),
    ]
    assert await a.delete_rule("web") is True
    assert await a.delete_rule("web") is False
    assert [r.name for r in await a.list_rules()] == ["a"]


@pytest_twisted.ensureDeferred
async def test_incidents_upsert_and_notifications_are_kept_once(backend):
    """An incident saved again is updated; a notification saved again is left as first stored."""
    a = backend.alerts
    first = incident(1, T0, signal={"value": 3}, samples=[{"text": "<script>"}])
    await a.save_incidents([first, incident(2, T0 - 60)], [note(1, "inc_1", T0)], T0)
    assert [i.id for i in await a.open_incidents()] == ["inc_2", "inc_1"]
    (loaded,) = [i for i in await a.open_incidents() if i.id == "inc_1"]
    assert (loaded.signal, loaded.samples, loaded.state, loaded.rule) == (
        {"value": 3},
        [{"text": "<script>"}],
        "open",
        "r",
    )
    first.state, first.resolved_at, first.resolved_by, first.posts = "resolved", T0 + 600, "api", 7
    changed = note(1, "inc_1", T0)
    changed.state = "sent"
    await a.save_incidents([first], [changed], T0 + 600)
    assert [i.id for i in await a.open_incidents()] == ["inc_2"]
    assert await a.incident_state("inc_1") == "resolved"
    assert await a.incident_state("inc_9") is None
    got = await a.get_incident("inc_1")
    assert (got["state"], got["resolved_by"], got["posts"]) == ("resolved", "api", 7)
    assert [(n["id"], n["state"]) for n in got["notifications"]] == [("msg_1", "pending")]
    assert await a.get_incident("inc_9") is None


@pytest_twisted.ensureDeferred
async def test_incident_pages_newest_first_with_filters_and_cursor(backend):
    """Pages go newest opened first and never repeat; filters select; a foreign cursor is a ValueError naming it."""
    a = backend.alerts
    await a.save_incidents(
        [incident(n, T0 + n * 60, rule="spike" if n % 2 else "words", severity="critical" if n == 3 else "warning",
                  state="resolved" if n == 4 else "open") for n in range(7)],
        [], T0)  # fmt: skip
    seen, cursor = [], None
    while True:
        page, cursor = await a.query_incidents({}, 3, cursor)
        seen += [i["id"] for i in page]
        if cursor is None:
            break
    assert seen == [f"inc_{n}" for n in range(6, -1, -1)]
    spikes, _ = await a.query_incidents({"rule": "spike"}, 50, None)
    assert [i["id"] for i in spikes] == ["inc_5", "inc_3", "inc_1"]
    active, _ = await a.query_incidents({"state": "active"}, 50, None)
    assert "inc_4" not in [i["id"] for i in active] and len(active) == 6
    window, _ = await a.query_incidents({"since": T0 + 120, "until": T0 + 240, "severity": "critical"}, 50, None)
    assert [i["id"] for i in window] == ["inc_3"]
    with pytest.raises(ValueError, match="^cursor"):
        await a.query_incidents({}, 3, "not-a-cursor")


@pytest_twisted.ensureDeferred
async def test_pending_notifications_and_attempts(backend):
    """Pending notifications come oldest first; an attempt is logged and a finished one is no longer pending."""
    a = backend.alerts
    await a.save_incidents([incident(1, T0)], [note(2, "inc_1", T0 + 5), note(1, "inc_1", T0)], T0)
    pending = await a.pending_notifications()
    assert [n.id for n in pending] == ["msg_1", "msg_2"]
    assert pending[0].payload == {"event": "opened", "text": "a <b>"}
    n = pending[0]
    n.attempts, n.next_attempt_at = 1, T0 + 30
    await a.record_attempt(n, DeliveryAttempt(n.id, T0 + 1, "retry", 503, "busy", 0.25))
    assert [(p.id, p.attempts, p.next_attempt_at) for p in await a.pending_notifications()] == [
        ("msg_1", 1, T0 + 30),
        ("msg_2", 0, T0 + 5),
    ]
    n.state, n.attempts, n.finished_at = "sent", 2, T0 + 31
    await a.record_attempt(n, DeliveryAttempt(n.id, T0 + 31, "sent", 200, "ok", 0.1))
    second = (await a.pending_notifications())[0]
    second.state, second.finished_at, second.last_error = "failed", T0 + 40, "gave up"
    await a.record_attempt(second, None)
    assert await a.pending_notifications() == []
    got = await a.get_incident("inc_1")
    (sent, failed) = got["notifications"]
    assert [e["outcome"] for e in sent["log"]] == ["retry", "sent"] and sent["state"] == "sent"
    assert (failed["state"], failed["last_error"], failed["log"]) == ("failed", "gave up", [])
    assert await a.channel_counts() == {"hook": {"sent": 1, "failed": 1}}


@pytest_twisted.ensureDeferred
async def test_channel_state_upserts(backend):
    a = backend.alerts
    assert await a.channel_states() == {}
    await a.save_channel("hook", "fp1", "receiver said gone", T0)
    await a.save_channel("slack", "fp2", None, None)
    await a.save_channel("hook", "fp3", None, None)
    assert await a.channel_states() == {"hook": ("fp3", None, None), "slack": ("fp2", None, None)}


async def _posts(backend):
    posts = [post(n, T0 + n * 60, topic="Acme", sentiment="negative" if n % 3 == 0 else "neutral", likes=n)
             for n in range(10)]  # fmt: skip
    posts += [post(100 + n, T0 + n * 90, topic="Globex") for n in range(3)]
    await backend.store.store_batch(posts, {})
    return posts


@pytest_twisted.ensureDeferred
async def test_post_reads_for_warm_up(backend):
    """The latest post time, per-minute history per topic and the newest posts, as the engine warms up."""
    a = backend.alerts
    assert await a.latest_post_time() is None
    await _posts(backend)
    assert await a.latest_post_time() == T0 + 9 * 60
    counts, first = await a.minute_history(["Acme", "Globex", "Nobody"], T0 + 120)
    minute = int(T0 // 60)
    assert first == {"Acme": T0, "Globex": T0}
    assert counts["Acme"] == {minute + n: (1, 1 if n % 3 == 0 else 0) for n in range(2, 10)}
    assert sum(n for n, _ in counts["Globex"].values()) == 1  # only the one at T0 + 180
    counts, _ = await a.minute_history(["Acme"], T0, until=T0 + 180)
    assert sorted(counts["Acme"]) == [minute, minute + 1, minute + 2]
    recent = await a.recent_posts(T0 + 300, 3)
    assert [(uid, engagement) for uid, engagement, _ in recent] == [("s:9", 9), ("s:8", 8), ("s:7", 7)]


@pytest_twisted.ensureDeferred
async def test_replay_runs_off_the_reactor_over_the_period(backend):
    """A replay sees the chosen topics' posts of the period oldest first, at most the limit, with the history before."""
    a = backend.alerts
    await _posts(backend)
    calls = []

    def run(topics, history, posts):
        calls.append(threading.current_thread() is threading.main_thread())
        return topics, history, [(p.uid, p.created_at, p.topics) for p in posts]

    topics, history, seen = await a.replay(["Acme"], T0 + 120, T0 + 480, T0, 100, run)
    assert topics == ["Acme"] and calls == [False]
    assert [uid for uid, _, _ in seen] == [f"s:{n}" for n in range(2, 8)]
    counts, first = history
    assert first == {"Acme": T0} and sum(n for n, _ in counts["Acme"].values()) == 2
    topics, history, seen = await a.replay(None, T0, T0 + 200, None, 3, run)
    assert topics == ["Acme", "Globex"] and history is None
    assert sorted(uid for uid, _, _ in seen) == ["s:0", "s:1", "s:100"]
    assert [t for _, t, _ in seen] == [T0, T0, T0 + 60]


@pytest_twisted.ensureDeferred
async def test_claims_and_attempts_recorded_twice(backend):
    """A pending notification can be taken for delivery, a finished one not; an attempt recorded twice is logged once."""
    a = backend.alerts
    await a.save_incidents([incident(1, T0)], [note(1, "inc_1", T0)], T0)
    assert await a.claim_notification("msg_1", 30) == Claim(True)
    assert await a.claim_notification("msg_1", 30) == Claim(True)  # this hub holds it already
    assert await a.claim_notification("msg_9", 30) == Claim(False)
    (n,) = await a.pending_notifications()
    n.state, n.attempts, n.finished_at = "sent", 1, T0 + 1
    attempt = DeliveryAttempt(n.id, T0 + 1, "sent", 200, "ok", 0.1)
    await a.record_attempt(n, attempt)
    await a.record_attempt(n, attempt)  # a retried commit
    # A finished notification stays finished, whatever is recorded later.
    late = dataclasses.replace(n, state="pending", attempts=2, finished_at=None)
    await a.record_attempt(late, None)
    assert await a.pending_notifications() == []
    assert await a.claim_notification("msg_1", 30) == Claim(False)
    (sent,) = (await a.get_incident("inc_1"))["notifications"]
    assert (sent["state"], sent["attempts"], [e["outcome"] for e in sent["log"]]) == ("sent", 1, ["sent"])
