"""
Doubles shared by the alert tests: a synchronous store on a real SQLite
database (so every test runs real SQL and drives time with a Clock), a
scripted notifier, fake sources and a fake push channel.
"""

from __future__ import annotations

import sqlite3
from types import SimpleNamespace

from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from monitor.alerts.notifiers import SENT, Delivery
from monitor.bus import ALERT, EventBus
from monitor.config import parse_config
from monitor.interfaces import INotifier
from monitor.metrics import Metrics
from monitor.model import Analysis, Post
from monitor.store.migrations import migrate
from monitor.store.sqlite import SQLiteStore
from monitor.store.sqlite_alerts import SQLiteAlerts
from monitor.store.sqlite_pages import PageQueries

T0 = 1_700_000_000.0 - (1_700_000_000.0 % 3600)  # a whole hour


class SyncStore(PageQueries):
    """
    C{run_write} and C{run_read} on one SQLite connection, at once: the
    alert SQL and the pages' reads run for real, without threads.
    """

    def __init__(self, path: str = ":memory:") -> None:
        self.db = sqlite3.connect(path)
        migrate(self.db)
        self.fail_writes = 0
        self.writes = 0

    def _run(self, interaction, *args):
        cursor = self.db.cursor()
        try:
            result = interaction(cursor, *args)
            self.db.commit()
        except Exception:
            self.db.rollback()
            return fail()
        return succeed(result)

    def run_write(self, interaction, *args):
        if self.fail_writes:
            self.fail_writes -= 1
            return fail(sqlite3.OperationalError("disk I/O error"))
        self.writes += 1
        return self._run(interaction, *args)

    def run_read(self, interaction, *args):
        return self._run(interaction, *args)

    def add_posts(self, posts) -> None:
        """Store posts as the pipeline would."""
        d = self._run(SQLiteStore._store_batch, list(posts), {}, lambda: T0)
        d.addErrback(lambda f: f.raiseException())

    def rows(self, sql, *params):
        return self.db.execute(sql, params).fetchall()


def post(
    n,
    t,
    topic="Acme",
    text="acme is fine",
    sentiment="neutral",
    labels=(),
    followers=None,
    verified=False,
    likes=0,
    reposts=0,
    replies=0,
    url=None,
    received_at=None,
    author=None,
    lat=None,
    lon=None,
    source="s",
):
    """A stored, analysed post."""
    compound = {"negative": -0.6, "positive": 0.6}.get(sentiment, 0.0)
    return Post(
        source=source,
        network=source,
        native_id=str(n),
        text=text,
        author=author or f"user{n % 7}",
        lat=lat,
        lon=lon,
        created_at=float(t),
        url=url,
        likes=likes,
        reposts=reposts,
        replies=replies,
        author_followers=followers,
        author_verified=verified,
        received_at=received_at or float(t),
        topics=(topic,) if isinstance(topic, str) else tuple(topic),
        analysis=Analysis(compound, 0.0, 1.0, 0.0, sentiment, tuple(labels)),
    )


def config(rules=(), channels=(), topics=("Acme", "Globex"), sources=(), alerts=None):
    """A checked configuration with these rules and channels."""
    data = {
        "topics": [{"name": t, "terms": [t.lower()]} for t in topics],
        "rules": list(rules),
        "channels": list(channels),
    }
    if sources:
        data["sources"] = list(sources)
    if alerts is not None:
        data["alerts"] = alerts
    return parse_config(data, environ={})


@implementer(INotifier)
class ScriptedNotifier:
    """
    Records every notification; answers from a script of outcomes (a
    L{Delivery}, or C{"hang"} for a Deferred that never fires), then sent.
    """

    kind = "webhook"

    def __init__(self, name="hook", script=()) -> None:
        self.name = name
        self.script = list(script)
        self.sent = []
        self.calls = []
        self.hanging: list[Deferred] = []

    def send(self, notification):
        self.calls.append(notification)
        answer = self.script.pop(0) if self.script else Delivery(SENT, 200, "ok")
        if answer == "hang":
            d = Deferred()
            self.hanging.append(d)
            return d
        if answer.outcome == SENT:
            self.sent.append(notification)
        return succeed(answer)


class FakeSource:
    """A collector as the health rule sees it."""

    def __init__(self, name, state="connected", last_post_at=None, last_error=None):
        self.name = name
        self.state = state
        self.last_post_at = last_post_at
        self.last_error = last_error

    def status(self):
        from monitor.model import iso8601

        return {
            "name": self.name,
            "kind": "fake",
            "state": self.state,
            "last_error": self.last_error,
            "last_post_at": iso8601(self.last_post_at) if self.last_post_at else None,
        }


class FakePush:
    def __init__(self):
        self.published = []

    def publish(self, kind, payload):
        self.published.append((kind, payload))
        return 1


def hub(store=None, topics=("Acme", "Globex"), sources=(), push=None):
    """What the engine needs from a hub."""
    from monitor.model import Topic

    return SimpleNamespace(
        store=store or SyncStore(),
        metrics=Metrics(),
        topics=SimpleNamespace(topics=[Topic(name=t, terms=(t.lower(),)) for t in topics]),
        sources=list(sources),
        push=push,
    )


def settle(clock, seconds=5, step=0.5):
    """Let timers run for a few seconds (rate limits space deliveries)."""
    for _ in range(int(seconds / step)):
        clock.advance(step)


def make_engine(
    clock,
    rules=(),
    channels=None,
    notifiers=None,
    store=None,
    sources=(),
    alerts=None,
    topics=("Acme", "Globex"),
    push=None,
    start=True,
    stories=None,
    peers=None,
):
    """An engine on a Clock and a synchronous store, started."""
    from monitor.alerts.engine import AlertEngine

    if channels is None:
        channels = [{"name": "hook", "kind": "webhook", "url": "http://127.0.0.1:9/hook"}]
    alerts = dict({"live": False, "evaluate_every": 10}, **(alerts or {}))
    cfg = config(
        rules,
        channels,
        topics=topics,
        alerts=alerts,
        sources=[{"kind": "replay", "name": s.name, "path": "x"} for s in sources],
    )
    h = hub(store, topics, sources, push)
    bus = EventBus()
    if push is not None:
        # As the hub does (monitor.hub): the live channel relays incidents.
        bus.subscribe(ALERT, lambda message: push.publish("alert", message))
    # Every channel gets a scripted notifier unless the test gives one.
    notifiers = dict({c["name"]: ScriptedNotifier(c["name"]) for c in cfg.channels if c["kind"] != "live"},
                     **(notifiers or {}))  # fmt: skip
    engine = AlertEngine(
        cfg,
        store=SQLiteAlerts(h.store),
        metrics=h.metrics,
        topics=h.topics,
        sources=h.sources,
        bus=bus,
        reactor=clock,
        notifiers=notifiers,
        stories=stories,
        peers=peers,
    )
    if start:
        d = engine.startService()
        assert d.called, "the engine should start at once on a synchronous store"
        if isinstance(d.result, Exception) or hasattr(d.result, "raiseException"):
            d.result.raiseException()
    return engine
