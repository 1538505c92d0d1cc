"""
The alerts on PostgreSQL with several hubs (L{monitor.store.postgresql_alerts}):
a notification claimed by one hub is not taken by another while the claim
holds, and two hubs' outboxes holding the same notification (while the
lead passes from one to the other) deliver it once.  Each hub has its own
store (connections) on the session's throwaway server; the outboxes run on
a L{Clock}, the database on the real reactor.
"""

from __future__ import annotations

import dataclasses

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from monitor.alerts.config import channel_defaults
from monitor.alerts.incidents import Incident
from monitor.alerts.notifiers import SENT, Delivery, Notification
from monitor.alerts.outbox import Outbox
from monitor.store.interfaces import Claim, DeliveryAttempt
from monitor.store.postgresql import PostgreSQLStore
from monitor.store.postgresql_alerts import PostgreSQLAlerts
from monitor.store.writes import WriteQueue

pytestmark = pytest.mark.timeout(60)

T0 = 1_700_000_000.0


class HeldNotifier:
    """A notifier whose receiver answers when the test says (C{answer})."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.called = Deferred()
        self._answer: Deferred | None = None

    def send(self, notification):
        self.sent.append(notification.id)
        self._answer = Deferred()
        self.called.callback(notification.id)
        return self._answer

    def answer(self, delivery) -> None:
        self._answer.callback(delivery)


@pytest_twisted.async_yield_fixture
async def hubs(reactor, postgres_dsn):
    """Two hubs' alert stores on one database, each with its own connections."""
    stores = [PostgreSQLStore(postgres_dsn, pool_size=2, reactor=reactor) for _ in range(2)]
    for store in stores:
        await store.startService()
    try:
        yield [PostgreSQLAlerts(store, name) for store, name in zip(stores, ("hub-a", "hub-b"))]
    finally:
        for store in stores:
            await store.stopService()


async def _one_pending(alerts) -> Notification:
    incident = Incident("inc_1", "r", "keyword", "Acme", None, "warning", T0, T0, 60.0)
    note = Notification("msg_1", "inc_1", "hook", "opened", {"event": "opened"}, created_at=0.0)
    await alerts.save_incidents([incident], [note], T0)
    (pending,) = await alerts.pending_notifications()
    return pending


@pytest_twisted.ensureDeferred
async def test_a_claim_keeps_other_hubs_off_until_it_ends(hubs):
    """Hub B cannot take what hub A holds; it can once A recorded its attempt, or once A's claim ran out."""
    a, b = hubs
    pending = await _one_pending(a)
    assert await a.claim_notification("msg_1", 60) == Claim(True)
    refused = await b.claim_notification("msg_1", 60)
    assert not refused.taken and 50 < refused.wait <= 60
    # A tried and will retry later: its claim ends with the attempt.
    pending.attempts, pending.next_attempt_at = 1, T0 + 30
    await a.record_attempt(pending, DeliveryAttempt("msg_1", T0, "retry", 503, "busy", 0.1))
    assert await b.claim_notification("msg_1", 0) == Claim(True)
    # B's claim of no time has run out already: A takes it back.
    assert await a.claim_notification("msg_1", 60) == Claim(True)
    # A hub's late write about a notification another now holds changes nothing.
    stale = dataclasses.replace(pending, state="sent", finished_at=T0 + 1)
    await b.record_attempt(stale, None)
    assert [n.state for n in await a.pending_notifications()] == ["pending"]


@pytest_twisted.ensureDeferred
async def test_two_outboxes_with_the_same_notification_deliver_it_once(hubs):
    """Hub A is delivering; hub B, given the same notification, waits, then drops it once A has sent it."""
    a, b = hubs
    pending = await _one_pending(a)
    spec = dict(channel_defaults("webhook", "hook"), url="https://receiver.example/hook")
    clocks, notifiers, outboxes = [], [], []
    for alerts in (a, b):
        clock, notifier = Clock(), HeldNotifier()
        outbox = Outbox([(spec, notifier)], alerts, WriteQueue(clock), reactor=clock)
        outbox.startService()
        clocks.append(clock), notifiers.append(notifier), outboxes.append(outbox)
    first, second = outboxes

    first.enqueue([dataclasses.replace(pending)])
    assert await notifiers[0].called == "msg_1"
    second.enqueue([dataclasses.replace(pending)])
    await second.writer.barrier()  # B's claim, refused
    (waiting,) = second.channels["hook"].queue
    assert notifiers[1].sent == [] and waiting.next_attempt_at > clocks[1].seconds()

    notifiers[0].answer(Delivery(SENT, 200, "ok"))
    await first.writer.barrier()  # A's attempt recorded
    clocks[1].advance(waiting.next_attempt_at - clocks[1].seconds())
    await second.writer.barrier()  # B's claim: no longer pending
    assert notifiers[1].sent == [] and not second.channels["hook"].queue
    assert notifiers[0].sent == ["msg_1"]
    (note,) = (await b.get_incident("inc_1"))["notifications"]
    assert (note["state"], [e["outcome"] for e in note["log"]]) == ("sent", ["sent"])
    for outbox in outboxes:
        outbox.stopService()


@pytest_twisted.ensureDeferred
async def test_a_replay_reads_the_posts_a_few_rows_at_a_time(hubs, monkeypatch):
    """The backtest's posts come through the server-side cursor in several fetches, all of them, in order."""
    from monitor.store import postgresql_alerts
    from tests.alerts.helpers import post

    a, _ = hubs
    await a.store.store_batch([post(n, T0 + n, topic="Acme") for n in range(10)], {})
    monkeypatch.setattr(postgresql_alerts, "REPLAY_ROWS", 3)
    seen = await a.replay(["Acme"], T0, T0 + 100, None, 8, lambda topics, history, posts: [p.uid for p in posts])
    assert seen == [f"s:{n}" for n in range(8)]
