"""
The alert engine in the hub: a sink of the pipeline and a service.

On the pipeline's path it only updates memory (L{Detector.observe}) and
schedules a write for the next reactor turn, so a slow store or a failing
receiver never slows the pipeline.  Incident rows and the notifications
about them are written in one transaction, then handed to the outbox.

A timer (every C{[alerts] evaluate_every}) does what needs no post: moves
the detector's clock on with the wall clock once posts stop coming (so
incidents resolve and windows close), checks the collectors' health, and
resolves health incidents.

At start it takes back what a previous run left: the rules (edited ones
kept), open incidents, each topic's recent per-minute history from the
stored posts (so a restart needs no new warm-up and does not reset
baselines) and undelivered notifications.

Among several hubs the rules are evaluated once for all: the engine of
every hub keeps the rules (for the API and the pages), but only the one
that leads (it holds the C{alerts} lease, L{monitor.cluster}) watches the
posts, opens incidents and delivers notifications; it sees the posts the
other hubs stored through the cluster's feed.  L{AlertEngine.evaluation}
is the service that makes an engine lead while it runs.

With a shared store (C{[store] kind = "postgresql"}) a rule may be saved
on any hub: the hub that saves it tells the others (a change notice,
L{monitor.cluster.RedisCluster.notify}) and each re-reads the stored rules
at once, the leader included; as a safety net against a lost notice every
engine also re-reads them every C{RULES_EVERY} seconds.  Only the rules that
changed are rebuilt (the others keep their windows); the open incidents of
a rule deleted elsewhere are resolved by the leader.  An incident lives in
the leader's memory: acknowledging or resolving it on another hub asks the
leader to (a notice C{incident}, answered by C{incident done} once written)
and answers from the store.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import uuid
from typing import Any, Optional

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredLock, ensureDeferred, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from monitor.bus import EventBus
from monitor.alerts.config import check_rule_spec
from monitor.alerts.detector import MAX_SKEW, SEEN, Detector
from monitor.alerts.incidents import ACKNOWLEDGED, NOTIFY_EVENTS, RESOLVED, Change
from monitor.alerts.notifiers import Notification
from monitor.alerts.notifiers.http import HTTPClient
from monitor.alerts.outbox import Outbox, new_notification_id
from monitor.alerts.rules import Rule, severity_rank
from monitor.analysis.trending import excluded_words
from monitor.fields import parse_duration
from monitor.interfaces import ISink
from monitor.model import iso8601, parse_time
from monitor.store.writes import WriteQueue

__all__ = ["AlertEngine", "AlertError", "Evaluation", "make_notifier"]

#: Seconds without a post after which the detector's clock follows the
#: wall clock.
IDLE_AFTER = 60.0

#: Seconds of stored posts (before the newest) remembered at start, so
#: that a source re-sending them after a restart does not count them twice.
RECENT_SEEN = 600.0

#: Seconds between two readings of the stored rules when the store is
#: shared with other hubs (a safety net: a change notice makes it at once).
RULES_EVERY = 30.0

#: Seconds a hub waits for the leader to acknowledge or resolve an incident.
ASK_LEADER = 5.0

#: Collector states that count as failing.
FAILING_STATES = ("failing", "backing off")
#: Collector states in which silence is expected.
QUIET_STATES = ("finished", "stopped")

#: The built-in rule of channel incidents: a channel its receiver disabled.
CHANNEL_RULE = Rule({"name": "channels", "type": "channel_health", "severity": "critical", "cooldown": 60})
CHANNEL_RULE.cooldown = float("inf")


class AlertError(ValueError):
    """
    A change the engine refuses (a bad rule, an unknown incident...);
    C{problems} says why, naming keys, and C{status} is the HTTP status.
    """

    def __init__(self, problems: list[str], status: int = 400) -> None:
        self.problems = problems
        self.status = status
        super().__init__("; ".join(problems))


def make_notifier(spec: dict[str, Any], bus, http: HTTPClient, reactor):
    """
    The notifier of one channel table.
    """
    kind, name = spec["kind"], spec["name"]
    timeout = parse_duration(spec["timeout"])
    if kind == "slack":
        from monitor.alerts.notifiers.slack import SlackNotifier

        return SlackNotifier(name, spec["url"], http, timeout=timeout, reactor=reactor)
    if kind == "webhook":
        from monitor.alerts.notifiers.webhook import WebhookNotifier

        return WebhookNotifier(name, spec["url"], http, secret=spec["secret"], timeout=timeout, reactor=reactor)
    if kind == "email":
        from monitor.alerts.notifiers.email import EmailNotifier

        return EmailNotifier(
            name, spec["host"], spec["sender"], spec["to"], port=spec["port"], security=spec["security"],
            username=spec["username"], password=spec["password"], ca_file=spec["ca_file"],
            timeout=timeout, reactor=reactor,
        )  # fmt: skip
    if kind == "live":
        from monitor.alerts.notifiers.live import LiveNotifier

        return LiveNotifier(name, bus)
    raise ValueError(f"no notifier for channel kind {kind!r}")


def _dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _snapshot(incidents, notifications) -> tuple[list, list]:
    """
    Copies of incidents and notifications as they are now: a write waits
    its turn in the queue while the originals change.
    """
    return [copy.deepcopy(i) for i in incidents], [dataclasses.replace(n) for n in notifications]


@implementer(ISink)
class AlertEngine(Service):
    """
    Rules over every stored post, incidents, and their notifications.

    @param store: the L{monitor.store.interfaces.IAlertStore} that keeps
        the rules, incidents and notifications and reads the stored posts'
        history.
    @param topics: the topics (their C{topics}), for the history and for
        checking rules.
    @param sources: the collectors, whose health C{source_health} watches.
    @param bus: the hub's L{monitor.bus.EventBus}, on which the C{live}
        channel publishes incidents for browsers.
    @param stories: the story clusterer (L{monitor.stories.StoryClusterer})
        that C{story} rules watch and incident explanations name; C{None}
        when stories are off (story rules then never fire).
    @param lead: whether the engine leads from its start (alone); C{False}
        when L{evaluation} is run by a lease.
    @param peers: the L{monitor.interfaces.ICluster} of the hubs that share
        this engine's store, told of the rules saved here and telling of
        those saved there; C{None} when the store is this hub's alone.
    @param rules_every: seconds between two readings of the stored rules
        when C{peers} are given.
    @ivar rules: the rules in force, by name.
    @ivar leading: whether this engine evaluates the rules now.
    """

    name = "alerts"
    log = Logger()

    def __init__(self, config, *, store, metrics, topics, sources=(), bus=None, reactor=None,
                 notifiers: Optional[dict] = None, idle_after: float = IDLE_AFTER, stories=None,
                 lead: bool = True, peers=None, rules_every: float = RULES_EVERY):  # fmt: skip
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self.store = store
        self.metrics = metrics
        self.topics = topics
        self.sources = sources
        self.bus = bus if bus is not None else EventBus()
        self.settings = config.alerts
        self.file_rules = list(config.rules)
        self.channel_specs = {c["name"]: c for c in config.channels}
        self.idle_after = idle_after
        self.backfill_age = parse_duration(self.settings.backfill_age)
        self.notify_backfill = bool(self.settings.notify_backfill)
        self.rules: dict[str, Rule] = {}
        self.stories = stories
        self._exclude = excluded_words(config.topics)
        self.detector = self._new_detector()
        self.lead_at_start = lead
        self.leading = False
        # While lead() reads the open incidents back: the batches stored
        # meanwhile, observed once the incidents are there (else a hit of
        # an open incident would open a second one).
        self._held: Optional[list] = None
        # Each lead() and follow() starts a new term: a lead() whose term
        # ended while it read the store back (the lease was lost and maybe
        # taken again meanwhile) stops there, and leaves the rest to the
        # current term.
        self._term = 0
        self.evaluation = Evaluation(self)
        self.writer = WriteQueue(reactor)
        self.http = HTTPClient(reactor)
        notifiers = notifiers or {}
        channels = [
            (spec, notifiers.get(name) or make_notifier(spec, self.bus, self.http, reactor))
            for name, spec in self.channel_specs.items()
        ]
        self.outbox = Outbox(
            channels,
            self.store,
            self.writer,
            self.metrics,
            reactor,
            retry_max=parse_duration(self.settings.retry_max),
            give_up_after=parse_duration(self.settings.give_up_after),
            on_disabled=self._channel_disabled,
            on_enabled=self._channel_enabled,
        )
        self._loop = LoopingCall(self.tick)
        self._loop.clock = reactor
        self._flush_call = None
        self._failing_since: dict[str, float] = {}
        # Saving a rule here and re-reading them all, one at a time.
        self._rules_lock = DeferredLock()
        self.peers = peers
        self.rules_every = rules_every
        self._rules_loop = LoopingCall(self.reload_rules)
        self._rules_loop.clock = reactor
        self._asked: dict[str, Deferred] = {}
        if peers is not None:
            peers.on_change("rules", lambda notice: self.reload_rules())
            peers.on_change("incident", self._asked_by_peer)
            peers.on_change("incident done", self._answered_by_leader)
        self.started_at: Optional[float] = None
        # The detector's clock and the wall clock at the last stored batch.
        self._quiet_time: Optional[float] = None
        self._quiet_wall: float = 0.0

    def _new_detector(self) -> Detector:
        return Detector([], samples=self.settings.samples, stories=self.stories, exclude=self._exclude)

    # -- service ---------------------------------------------------------

    def startService(self):
        super().startService()
        return ensureDeferred(self._start())

    async def _start(self) -> None:
        now = self.started_at = self._quiet_wall = self.reactor.seconds()
        removed = await self.store.sync_file_rules(self.file_rules, now)
        if removed:
            self.log.info("rules removed from the file: {names}", names=", ".join(removed))
        await self._load_rules()
        if self.peers is not None:
            # The file's rules may have changed the stored ones.
            self.peers.notify("rules")
            self._rules_loop.start(self.rules_every, now=False)
        if self.lead_at_start:
            await self.lead(reload=False)

    async def lead(self, reload: bool = True) -> None:
        """
        Start evaluating: take back the open incidents, the history and the
        undelivered notifications from the store (another hub may have led
        until now), then watch the posts and run the timer.
        """
        if self.leading or not self.running:
            return
        self.leading = True
        self._held = []
        self._term += 1
        term = self._term

        def ended() -> bool:
            return self._term != term

        now = self._quiet_wall = self.reactor.seconds()
        if reload:
            await self._load_rules()
        incidents = await self.store.open_incidents()
        if ended():
            return
        self.detector.book.load(incidents)
        await self._warm()
        if ended():
            return
        held, self._held = self._held or [], None
        for observe, posts, wall in held:
            observe(posts, wall)
        self._quiet_time = self.detector.now
        states = await self.store.channel_states()
        pending = await self.store.pending_notifications()
        if ended():
            return
        self.outbox.restore(states, pending)
        for key, incident in list(self.detector.book.open.items()):
            # A channel incident ends when its channel works again.
            if incident.type == "channel_health":
                ch = self.outbox.channels.get((incident.source or "").partition(":")[2])
                if ch is None or not ch.disabled_reason:
                    self.detector.book.close(key, now)
        self.outbox.startService()
        self._update_open_gauge()
        self._schedule_flush()
        self._loop.start(parse_duration(self.settings.evaluate_every), now=False)
        self.log.info(
            "alerts: {rules} rules, {channels} channels, {open} open incidents, {pending} undelivered notifications",
            rules=len(self.rules),
            channels=len(self.channel_specs),
            open=len(self.detector.book.open),
            pending=len(pending),
        )

    async def follow(self) -> None:
        """
        Stop evaluating (another hub leads now): stop the timer and the
        deliveries, write what changed, and forget the incidents, which
        the next leader takes back from the store.
        """
        if not self.leading:
            return
        self.leading = False
        self._held = None
        self._term += 1
        if self._loop.running:
            self._loop.stop()
        try:
            await self.flush()
            await self.writer.barrier()
        except Exception:
            self.log.failure("could not write the last alert changes")
        self.outbox.stopService()
        self.outbox.forget()
        self.detector = self._new_detector()
        self.detector.set_rules(list(self.rules.values()))
        self._failing_since.clear()
        self._update_open_gauge()
        self.log.info("alerts: this hub no longer evaluates the rules (stopping, or another hub leads)")

    def stopService(self):
        """
        Stop the timer and the deliveries, then write what is left.
        """
        super().stopService()
        if self._loop.running:
            self._loop.stop()
        if self._rules_loop.running:
            self._rules_loop.stop()
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self.outbox.stopService()
        self.writer.stopping = True
        d = ensureDeferred(self._stop())
        return d

    async def _stop(self) -> None:
        try:
            await self.flush()
            await self.writer.barrier()
        except Exception:
            self.log.failure("could not write the last alert changes")
        await self.http.stop()

    async def _load_rules(self) -> None:
        self._set_rules(await self._stored_rules())

    async def _stored_rules(self) -> list[Rule]:
        rules = []
        for stored in await self.store.list_rules():
            rule, problems = check_rule_spec(stored.spec, origin=stored.origin)
            if rule is None:
                self.log.warn("skipping stored rule {name}: {problems}", name=stored.name, problems="; ".join(problems))
                continue
            rules.append(rule)
        return rules

    def reload_rules(self) -> Deferred:
        """
        Re-read the stored rules (another hub may have saved or deleted
        some) and apply what changed.  The Deferred fires with the names of
        the rules that changed (an error is logged: the next reading will
        do).
        """
        if not self.running:
            return succeed([])
        d = self._rules_lock.run(lambda: ensureDeferred(self._reload_rules()))

        def failed(failure):
            self.log.failure("could not re-read the stored rules", failure)
            return []

        return d.addErrback(failed)

    async def _reload_rules(self) -> list[str]:
        stored = await self._stored_rules()
        rules, changed = [], []
        for rule in stored:
            was = self.rules.get(rule.name)
            if was is not None and (was.spec, was.origin) == (rule.spec, rule.origin):
                rules.append(was)  # the same object: the detector keeps its windows
            else:
                rules.append(rule)
                changed.append(rule.name)
        names = {r.name for r in stored}
        removed = [name for name in self.rules if name not in names]
        if not changed and not removed:
            return []
        self._set_rules(rules)
        if removed:
            self._close_incidents_of(removed)
            await self.flush()
        self.log.info(
            "alerts: stored rules changed elsewhere: {changed} saved, {removed} deleted",
            changed=", ".join(sorted(changed)) or "none",
            removed=", ".join(sorted(removed)) or "none",
        )
        return sorted(changed + removed)

    def _close_incidents_of(self, names) -> None:
        """Resolve the open incidents of the rules C{names}, deleted."""
        for key, incident in list(self.detector.book.open.items()):
            if incident.rule in names:
                at = self.detector.now if incident.clock == "posts" and self.detector.now else self.reactor.seconds()
                self.detector.book.close(key, at, by="rule deleted")

    def _set_rules(self, rules) -> None:
        self.rules = {r.name: r for r in rules}
        self.detector.set_rules(list(self.rules.values()))

    async def _warm(self) -> None:
        latest = await self.store.latest_post_time()
        if latest is None:
            return
        now = min(latest, self.reactor.seconds() + MAX_SKEW)
        since = now - self.detector.horizon * 60
        topics = [t.name for t in getattr(self.topics, "topics", ())]
        counts, first = await self.store.minute_history(topics, since)
        self.detector.warm(now, counts, first, since)
        recent = await self.store.recent_posts(now - RECENT_SEEN, SEEN)
        self.detector.remember(reversed(recent))

    # -- the sink --------------------------------------------------------

    def posts_stored(self, posts) -> None:
        """
        Count and check a stored batch; never blocks, never waits.
        """
        if not self.running or not self.leading:
            return
        wall = self.reactor.seconds()
        if self._held is not None:
            self._held.append((self.detector.observe, posts, wall))
            return
        self.detector.observe(posts, wall)
        self._quiet_time, self._quiet_wall = self.detector.now, wall
        self._schedule_flush()

    def posts_enriched(self, posts) -> None:
        """
        Stored posts whose author's profile came late: follower rules see
        them now.
        """
        if not self.running or not self.leading:
            return
        if self._held is not None:
            self._held.append((self.detector.enriched, posts, self.reactor.seconds()))
            return
        self.detector.enriched(posts, self.reactor.seconds())
        self._schedule_flush()

    # -- the timer -------------------------------------------------------

    def tick(self) -> None:
        """
        Move the clock on while no posts come, check collectors, resolve
        what went quiet, write.  An error is logged; the timer goes on.
        """
        try:
            self._tick()
        except Exception:
            self.log.failure("the alert timer failed")

    def _tick(self) -> None:
        wall = self.reactor.seconds()
        d = self.detector
        if d.now is not None and self._quiet_time is not None and wall - self._quiet_wall >= self.idle_after:
            target = self._quiet_time + (wall - self._quiet_wall)
            if self._quiet_time <= wall:
                target = min(target, wall)
            d.advance(target)
        self._check_sources(wall)
        d.book.sweep(wall, clock="wall")
        self._schedule_flush()

    def _check_sources(self, wall: float) -> None:
        rules = [r for r in self.rules.values() if r.enabled and r.type == "source_health"]
        for source in list(self.sources):
            try:
                status = source.status()
            except Exception:
                self.log.failure("source {source} could not report its status", source=getattr(source, "name", "?"))
                continue
            name, state = status.get("name") or source.name, status.get("state")
            failing_since = None
            if state in FAILING_STATES:
                failing_since = self._failing_since.setdefault(name, wall)
            else:
                self._failing_since.pop(name, None)
            last_post = None
            if status.get("last_post_at"):
                try:
                    last_post = parse_time(status["last_post_at"])
                except ValueError:
                    last_post = None
            for rule in rules:
                if rule.sources and name not in rule.sources:
                    continue
                why, down = None, 0.0
                if failing_since is not None and wall - failing_since >= rule.after:
                    why, down = "failing", wall - failing_since
                elif rule.silent and state not in QUIET_STATES:
                    quiet_from = last_post if last_post is not None else self.started_at
                    if quiet_from is not None and wall - quiet_from >= rule.after:
                        why, down = "silent", wall - quiet_from
                if why is None:
                    continue
                signal = {
                    "value": round(down / 60, 1),
                    "unit": "minutes",
                    "why": why,
                    "state": state,
                    "detail": status.get("last_error") or "",
                    "last_post_at": status.get("last_post_at"),
                }
                self.detector.hits[rule.name] += 1
                self.detector.book.hit(rule, wall, source=name, count=0, value=down / 60, signal=signal, clock="wall")

    # -- channels --------------------------------------------------------

    def _channel_disabled(self, name: str, reason: str) -> None:
        wall = self.reactor.seconds()
        signal = {"value": 1, "unit": "channel", "channel": name, "detail": f"channel {name} disabled: {reason}"}
        self.detector.book.hit(CHANNEL_RULE, wall, source=f"channel:{name}", count=0, signal=signal, clock="wall")
        self._schedule_flush()

    def _channel_enabled(self, name: str) -> None:
        self.detector.book.close((CHANNEL_RULE.name, None, f"channel:{name}"), self.reactor.seconds())
        self._schedule_flush()

    # -- writing ---------------------------------------------------------

    def _schedule_flush(self) -> None:
        if self._flush_call is None or not self._flush_call.active():
            self._flush_call = self.reactor.callLater(0, self.flush)

    def flush(self) -> Deferred:
        """
        Write the incidents that changed and the notifications their events
        call for, in one transaction; then deliver the notifications.  The
        Deferred fires once written.
        """
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        hits, self.detector.hits = self.detector.hits, type(self.detector.hits)()
        for rule, n in hits.items():
            self.metrics.alert_hits.labels(rule).inc(n)
        changes, dirty = self.detector.book.drain()
        if not changes and not dirty:
            return succeed(None)
        now = self.reactor.seconds()
        notifications: list[Notification] = []
        for change in changes:
            self.metrics.incidents.labels(change.incident.rule, change.event).inc()
            if change.event == "opened" and self._is_history(change.incident, change.incident.opened_at, now):
                change.incident.backfill = change.snapshot["backfill"] = True
            if change.event in ("opened", "escalated", "resolved"):
                self.log.info(
                    "incident {id} {event}: {rule} on {subject} ({severity}){backfill}",
                    id=change.incident.id,
                    event=change.event,
                    rule=change.incident.rule,
                    subject=change.incident.topic or change.incident.source or "all topics",
                    severity=change.snapshot["severity"],
                    backfill=", backfill: not notified"
                    if change.incident.backfill and not self.notify_backfill
                    else "",
                )
            if change.event in NOTIFY_EVENTS and (self.notify_backfill or not change.incident.backfill):
                notifications += self._route(change, now)
        notifications += self._caught_up(dirty, changes, now)
        self._update_open_gauge()
        d = self.writer.submit(self.store.save_incidents, *_snapshot(dirty, notifications), now)
        d.addCallback(lambda _: self.outbox.enqueue(notifications))
        d.addErrback(self._not_written, len(dirty), len(notifications))
        return d

    def _is_history(self, incident, at: float, now: float) -> bool:
        """
        Whether a hit at post time C{at} arrived long after it happened
        (C{[alerts] backfill_age}): a replay, a catch-up after an outage.
        Only post-time incidents can be; source health is always now.
        """
        return incident.clock == "posts" and now - at > self.backfill_age

    def _caught_up(self, dirty, changes, now: float) -> list[Notification]:
        """
        A backfill incident that is still going when the posts catch up
        with the present is news after all: it stops being backfill and
        its opening is sent now.
        """
        out: list[Notification] = []
        opened_now = {c.incident.id for c in changes if c.event == "opened"}
        for incident in dirty:
            if not incident.backfill or incident.state == RESOLVED or incident.id in opened_now:
                continue
            if self._is_history(incident, incident.last_hit_at, now):
                continue
            incident.backfill = False
            self.log.info(
                "incident {id} caught up with the present: {rule} on {subject} is live",
                id=incident.id,
                rule=incident.rule,
                subject=incident.topic or incident.source or "all topics",
            )
            if not self.notify_backfill:
                out += self._route(Change("opened", incident, incident.to_dict()), now)
        return out

    def _not_written(self, failure, incidents: int, notifications: int) -> None:
        # Only at shutdown does the write queue give up; say what was lost.
        self.log.failure(
            "could not write {incidents} incident changes and {notifications} notifications",
            failure,
            incidents=incidents,
            notifications=notifications,
        )

    def _route(self, change, now: float) -> list[Notification]:
        """
        The channels an event goes to: those the rule names (or all), that
        take the rule (or all), at or below the incident's severity.  An
        escalation of an acknowledged incident is not sent.
        """
        incident, snapshot = change.incident, change.snapshot
        if change.event == "escalated" and incident.state == ACKNOWLEDGED:
            return []
        rule = self.rules.get(incident.rule) if incident.type != "channel_health" else CHANNEL_RULE
        out = []
        for name, spec in self.channel_specs.items():
            if not spec["enabled"]:
                continue
            if spec["rules"] and incident.rule not in spec["rules"]:
                continue
            if rule is not None and rule.channels and name not in rule.channels:
                continue
            if severity_rank(snapshot["severity"]) < severity_rank(spec["min_severity"]):
                continue
            if incident.type == "channel_health" and incident.source == f"channel:{name}":
                continue
            out.append(
                Notification(
                    id=new_notification_id(),
                    incident_id=incident.id,
                    channel=name,
                    event=change.event,
                    payload={"event": change.event, "incident": snapshot},
                    created_at=now,
                    next_attempt_at=now,
                )
            )
        return out

    def _update_open_gauge(self) -> None:
        self.metrics.incidents_open.set(len(self.detector.book.open))

    # -- for the API and the web pages -----------------------------------------

    def names(self) -> dict[str, set]:
        """
        The names a rule may refer to: topics, sources, channels.
        """
        return {
            "topic_names": {t.name for t in getattr(self.topics, "topics", ())},
            "source_names": {s.name for s in self.sources},
            "channel_names": set(self.channel_specs),
        }

    def check_rule(self, spec: Any) -> tuple[Optional[Rule], list[str]]:
        """
        Validate a rule spec as the API would save it.
        """
        return check_rule_spec(spec, **self.names())

    def list_rules(self) -> list[dict[str, Any]]:
        open_by_rule: dict[str, int] = {}
        for incident in self.detector.book.open.values():
            open_by_rule[incident.rule] = open_by_rule.get(incident.rule, 0) + 1
        return [dict(r.to_dict(), open_incidents=open_by_rule.get(r.name, 0)) for r in self.rules.values()]

    def get_rule(self, name: str) -> Optional[Rule]:
        return self.rules.get(name)

    async def save_rule(self, spec: Any, name: Optional[str] = None, create: bool = False) -> Rule:
        """
        Create (C{create}) or replace the rule C{name}.  Raises L{AlertError}
        (400 with problems, 404 unknown, 409 exists).  A saved rule has
        origin C{web}: the file no longer changes it.
        """
        if isinstance(spec, dict) and name is not None:
            if spec.setdefault("name", name) != name:
                raise AlertError([f"rule.name: must be {name!r} (the name in the address)"])
        rule, problems = self.check_rule(spec)
        if rule is None:
            raise AlertError(problems)
        async with self._rules_lock:
            if create and rule.name in self.rules:
                raise AlertError([f"rule.name: a rule named {rule.name!r} exists"], status=409)
            if not create and rule.name not in self.rules:
                raise AlertError([f"no rule named {rule.name!r}"], status=404)
            await self.writer.submit(self.store.save_rule, rule.name, rule.spec, "web", self.reactor.seconds())
            self._set_rules([r for r in self.rules.values() if r.name != rule.name] + [rule])
        self._rules_changed()
        self.log.info("rule {name} saved ({type})", name=rule.name, type=rule.type)
        return rule

    def _rules_changed(self) -> None:
        if self.peers is not None:
            self.peers.notify("rules")

    async def set_rule_enabled(self, name: str, enabled: bool) -> Rule:
        rule = self.rules.get(name)
        if rule is None:
            raise AlertError([f"no rule named {name!r}"], status=404)
        return await self.save_rule(dict(rule.spec, enabled=enabled), name)

    async def delete_rule(self, name: str) -> None:
        """
        Remove a rule; its open incidents are resolved (by C{rule deleted}).
        """
        async with self._rules_lock:
            if name not in self.rules:
                raise AlertError([f"no rule named {name!r}"], status=404)
            await self.writer.submit(self.store.delete_rule, name)
            self._set_rules([r for r in self.rules.values() if r.name != name])
            self._close_incidents_of([name])
        self._rules_changed()
        await self.flush()
        self.log.info("rule {name} deleted", name=name)

    async def backtest(self, rule: Any, since: float, until: float) -> dict[str, Any]:
        """
        When C{rule} (a L{Rule}, or a spec to check) would have fired on the
        posts stored for the period; nothing is written or sent.
        """
        from monitor.alerts.backtest import run_backtest

        if not isinstance(rule, Rule):
            rule, problems = self.check_rule(rule)
            if rule is None:
                raise AlertError(problems)
        if rule.type == "source_health":
            raise AlertError(["rule.type: source_health rules cannot be backtested (collector states are not stored)"])
        if rule.type == "story":
            raise AlertError(
                ["rule.type: story rules cannot be backtested (stories are not stored with their history)"]
            )
        rule = Rule(dict(rule.spec, enabled=True), rule.origin)
        return await run_backtest(self.store, rule, since, until)

    async def incidents(self, filters: dict[str, Any], limit: int = 50, cursor: Optional[str] = None):
        await self.flush()
        await self.writer.barrier()
        return await self.store.query_incidents(filters, limit, cursor)

    async def incident(self, incident_id: str) -> Optional[dict[str, Any]]:
        await self.flush()
        await self.writer.barrier()
        return await self.store.get_incident(incident_id)

    async def _by_hand(self, incident_id: str, action, by: str) -> dict[str, Any]:
        incident = self.detector.book.by_id(incident_id)
        if incident is None and not self.leading and self.peers is not None:
            return await self._ask_leader(incident_id, action, by)
        if incident is None and not self.leading:
            raise AlertError([f"incident {incident_id}: another hub evaluates the alerts; ask it there"], status=409)
        if incident is None:
            state = await self.store.incident_state(incident_id)
            if state is None:
                raise AlertError([f"no incident {incident_id!r}"], status=404)
            raise AlertError([f"incident {incident_id} is {state}"], status=409)
        self._act(incident, action, by)
        await self.flush()
        return await self.incident(incident_id)

    async def acknowledge(self, incident_id: str, by: str = "api") -> dict[str, Any]:
        """
        Someone is on it: later escalations are not sent.
        """
        return await self._by_hand(incident_id, "acknowledge", by)

    async def resolve(self, incident_id: str, by: str = "api") -> dict[str, Any]:
        """
        Close an incident by hand (in its own clock's present); the key is
        held until the signal has been quiet for a cooldown.
        """
        return await self._by_hand(incident_id, "resolve", by)

    def _act(self, incident, action: str, by: str) -> None:
        if action == "acknowledge":
            self.detector.book.acknowledge(incident.id, by, self.reactor.seconds())
            return
        if incident.clock == "posts" and self.detector.now is not None:
            at = self.detector.now
        else:
            at = self.reactor.seconds()
        self.detector.book.resolve(incident.id, by, at)

    async def _ask_leader(self, incident_id: str, action: str, by: str) -> dict[str, Any]:
        """
        Have the leading hub act on an incident it holds; once it says it
        wrote the change, the incident as stored.
        """
        request = uuid.uuid4().hex
        d = self._asked[request] = Deferred()
        d.addTimeout(ASK_LEADER, self.reactor)
        self.peers.notify("incident", request=request, id=incident_id, action=action, by=by)
        try:
            answer = await d
        except Exception:
            raise AlertError([f"incident {incident_id}: the hub evaluating the alerts did not answer"], status=503)
        finally:
            self._asked.pop(request, None)
        if answer.get("status", 200) != 200:
            raise AlertError(answer.get("problems") or ["refused"], status=answer["status"])
        return await self.incident(incident_id)

    def _answered_by_leader(self, notice: dict) -> None:
        d = self._asked.pop(notice.get("request"), None)
        if d is not None and not d.called:
            d.callback(notice)

    def _asked_by_peer(self, notice: dict) -> None:
        """Another hub asks the leader (this one?) to act on an incident."""
        if not self.leading or notice.get("action") not in ("acknowledge", "resolve"):
            return
        ensureDeferred(self._answer_peer(notice))

    async def _answer_peer(self, notice: dict) -> None:
        answer: dict[str, Any] = {"status": 200}
        try:
            await self._by_hand(str(notice.get("id")), notice["action"], str(notice.get("by") or "api"))
        except AlertError as e:
            answer = {"status": e.status, "problems": e.problems}
        except Exception:
            self.log.failure("could not {action} incident {id} for {hub}", action=notice["action"],
                             id=notice.get("id"), hub=notice.get("hub"))  # fmt: skip
            answer = {"status": 500, "problems": ["the hub evaluating the alerts failed"]}
        self.peers.notify("incident done", request=notice.get("request"), **answer)

    async def channels(self) -> list[dict[str, Any]]:
        await self.writer.barrier()
        counts = await self.store.channel_counts()
        out = []
        for status in self.outbox.status():
            c = counts.get(status["name"], {})
            status["sent"] = c.get("sent", 0)
            status["failed"] = c.get("failed", 0)
            out.append(status)
        return out

    def enable_channel(self, name: str) -> bool:
        if name not in self.outbox.channels:
            raise AlertError([f"no channel named {name!r}"], status=404)
        return self.outbox.enable(name)

    def status(self) -> dict[str, Any]:
        """
        A summary for health pages.
        """
        return {
            "leading": self.leading,
            "clock": iso8601(self.detector.now) if self.detector.now is not None else None,
            "open_incidents": len(self.detector.book.open),
            "channels": {s["name"]: s["state"] for s in self.outbox.status()},
        }


class Evaluation(Service):
    """
    The evaluation of the rules, as a service: the engine leads while it
    runs.  Among several hubs it is run by the C{alerts} lease, so exactly
    one hub evaluates.
    """

    name = "alert evaluation"

    def __init__(self, engine: AlertEngine) -> None:
        self.engine = engine

    def startService(self):
        super().startService()
        return ensureDeferred(self.engine.lead())

    def stopService(self):
        super().stopService()
        return ensureDeferred(self.engine.follow())
