"""
Incidents: hits of one rule on one topic (or source) grouped into one
thing people can look at, acknowledge and resolve, instead of a flood.

The first hit opens an incident; later hits are added to it; when no hit
has come for the rule's C{cooldown} the incident resolves itself, at the
time the quiet began plus the cooldown (in the posts' own time for topic
rules, so a replay resolves at the same moments as the live stream did).
An incident resolved by hand holds its key until the signal has been quiet
for a cooldown, so resolving during a storm does not reopen it at once.
Reaching the rule's C{escalate_at} raises the severity to critical once.

The book is pure: it records what changed (L{Change}s) and the caller
persists them and notifies people.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

from monitor.config import default
from monitor.model import iso8601

__all__ = ["Change", "Incident", "IncidentBook", "OPEN", "ACKNOWLEDGED", "RESOLVED", "sample"]

OPEN, ACKNOWLEDGED, RESOLVED = "open", "acknowledged", "resolved"

#: Events that send notifications.
NOTIFY_EVENTS = ("opened", "escalated", "resolved")

#: Longest post text kept in a sample.
SAMPLE_TEXT = 500


def new_incident_id() -> str:
    return "inc_" + secrets.token_hex(8)


def _score(s: dict) -> tuple:
    return (s.get("likes", 0) + 2 * s.get("reposts", 0) + s.get("replies", 0), s.get("author_followers") or 0)


def post_score(post) -> tuple:
    """
    How much a post deserves a place among an incident's samples: its
    engagement (a repost counts twice), then its author's followers.
    """
    return (int(post.likes or 0) + 2 * int(post.reposts or 0) + int(post.replies or 0), post.author_followers or 0)


def sample(post) -> dict[str, Any]:
    """
    The part of a post an incident keeps and a notification shows.
    """
    analysis = post.analysis
    return {
        "id": post.uid,
        "author": post.author,
        "text": post.text[:SAMPLE_TEXT],
        "url": post.url,
        "created_at": iso8601(post.created_at),
        "likes": int(post.likes or 0),
        "reposts": int(post.reposts or 0),
        "replies": int(post.replies or 0),
        "author_followers": post.author_followers,
        "sentiment": analysis.sentiment if analysis is not None else None,
        "labels": list(analysis.labels) if analysis is not None else [],
    }


@dataclass
class Incident:
    """
    One incident.  Times are unix seconds: C{opened_at}, C{last_hit_at} and
    C{resolved_at} on the incident's clock (post time for topic rules, the
    wall clock for source health); C{acknowledged_at} on the wall clock.
    """

    id: str
    rule: str
    type: str
    topic: Optional[str]
    source: Optional[str]
    severity: str
    opened_at: float
    last_hit_at: float
    cooldown: float
    clock: str = "posts"
    state: str = OPEN
    resolved_at: Optional[float] = None
    resolved_by: Optional[str] = None
    acknowledged_at: Optional[float] = None
    acknowledged_by: Optional[str] = None
    posts: int = 0
    hits: int = 0
    signal: dict[str, Any] = field(default_factory=dict)
    peak: dict[str, Any] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)
    escalated: bool = False
    #: Opened by posts that arrived long after they were written: shown,
    #: not notified (unless C{[alerts] notify_backfill}).
    backfill: bool = False
    #: The latest signal compared with the rule's C{escalate_at}.
    value: float = 0.0
    #: Why it fired (L{monitor.alerts.explain}): the rising stories and
    #: terms, top posts, sources and places; at its opening, then at each
    #: new peak of its signal.
    explanation: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple:
        return (self.rule, self.topic, self.source)

    def to_dict(self) -> dict[str, Any]:
        def t(value):
            return iso8601(value) if value is not None else None

        return {
            "id": self.id,
            "rule": self.rule,
            "type": self.type,
            "topic": self.topic,
            "source": self.source,
            "severity": self.severity,
            "state": self.state,
            "clock": self.clock,
            "opened_at": t(self.opened_at),
            "last_hit_at": t(self.last_hit_at),
            "resolved_at": t(self.resolved_at),
            "resolved_by": self.resolved_by,
            "acknowledged_at": t(self.acknowledged_at),
            "acknowledged_by": self.acknowledged_by,
            "posts": self.posts,
            "hits": self.hits,
            "signal": dict(self.signal),
            "peak": dict(self.peak),
            "samples": list(self.samples),
            "backfill": self.backfill,
            "explanation": dict(self.explanation),
        }


@dataclass(slots=True)
class Change:
    """
    Something that happened to an incident: C{opened}, C{escalated},
    C{resolved}, C{acknowledged}.  C{snapshot} is the incident as it was
    then (what a notification about it shows).
    """

    event: str
    incident: Incident
    snapshot: dict[str, Any]


class IncidentBook:
    """
    The open incidents, by key C{(rule, topic, source)}.
    """

    def __init__(
        self, samples: int = default("alerts", "samples"), new_id: Callable[[], str] = new_incident_id
    ) -> None:
        self.samples = samples
        self.new_id = new_id
        self.open: dict[tuple, Incident] = {}
        self.held: dict[tuple, tuple[float, float]] = {}  # key -> (last hit, cooldown)
        self.changes: list[Change] = []
        self.dirty: dict[str, Incident] = {}

    # -- reading ---------------------------------------------------------

    def by_id(self, incident_id: str) -> Optional[Incident]:
        for incident in self.open.values():
            if incident.id == incident_id:
                return incident
        return None

    def drain(self) -> tuple[list[Change], list[Incident]]:
        """
        What changed since the last drain: the events and every incident
        whose row must be written.
        """
        changes, self.changes = self.changes, []
        dirty, self.dirty = list(self.dirty.values()), {}
        return changes, dirty

    # -- hits ------------------------------------------------------------

    def _event(self, event: str, incident: Incident) -> None:
        self.changes.append(Change(event, incident, incident.to_dict()))
        self.dirty[incident.id] = incident

    def hit(
        self,
        rule,
        time: float,
        topic: Optional[str] = None,
        source: Optional[str] = None,
        posts: Iterable = (),
        count: int = 1,
        value: float = 1.0,
        signal: Optional[dict] = None,
        clock: str = "posts",
        open_count: Optional[int] = None,
        explanation: Optional[dict] = None,
    ) -> Optional[Incident]:
        """
        One hit of C{rule}: open its incident, or add to it.  C{posts} are
        sample candidates (L{sample} dicts); C{count} posts are added to the
        incident's count (C{open_count} instead when this hit opens it);
        C{value} is the signal compared with the rule's C{escalate_at} (post
        rules use the incident's post count); C{explanation}, if given,
        replaces the incident's.
        """
        key = (rule.name, topic, source)
        self._expire(key, time)
        held = self.held.get(key)
        if held is not None:
            last, cooldown = held
            if time - last < cooldown:
                self.held[key] = (max(last, time), cooldown)
                return None
            del self.held[key]
        incident = self.open.get(key)
        if incident is None:
            incident = Incident(
                id=self.new_id(),
                rule=rule.name,
                type=rule.type,
                topic=topic,
                source=source,
                severity=rule.severity,
                opened_at=time,
                last_hit_at=time,
                cooldown=rule.cooldown,
                clock=clock,
            )
            self.open[key] = incident
            self._add(
                incident, rule, time, posts, count if open_count is None else open_count, value, signal, explanation
            )
            self._event("opened", incident)
            self._escalate(incident, rule)
            return incident
        self._add(incident, rule, time, posts, count, value, signal, explanation)
        incident.cooldown = rule.cooldown
        self.dirty[incident.id] = incident
        self._escalate(incident, rule)
        return incident

    def _add(self, incident: Incident, rule, time, posts, count, value, signal, explanation=None) -> None:
        incident.hits += 1
        if explanation is not None:
            incident.explanation = explanation
        incident.posts += count
        incident.last_hit_at = max(incident.last_hit_at, time)
        if signal is None and rule.is_post_rule:
            incident.signal = {"value": incident.posts, "unit": "posts"}
        elif signal is not None:
            incident.signal = dict(signal)
            if not incident.peak or signal.get("value", 0) >= incident.peak.get("value", 0):
                incident.peak = dict(signal)
        self._sample(incident, posts)
        incident.value = incident.posts if rule.is_post_rule else value

    def attach(self, rule, topic: Optional[str], post_sample, count: int = 1, source: Optional[str] = None) -> None:
        """
        Add a post to the open incident of a window or story rule (the
        signal that opened it is about many posts, not one).
        """
        incident = self.open.get((rule.name, topic, source))
        if incident is None:
            return
        incident.posts += count
        self._sample(incident, [post_sample])
        self.dirty[incident.id] = incident

    def _sample(self, incident: Incident, posts) -> None:
        """
        Keep the best few posts (kept sorted, best first).  C{posts} are
        posts, or sample dicts; a post becomes a dict only if it gets in,
        as most do not.
        """
        samples = incident.samples
        for candidate in posts:
            is_dict = isinstance(candidate, dict)
            score = _score(candidate) if is_dict else post_score(candidate)
            full = len(samples) >= self.samples
            if full and score <= _score(samples[-1]):
                continue
            uid = candidate["id"] if is_dict else candidate.uid
            if any(s["id"] == uid for s in samples):
                continue
            if full:
                samples.pop()
            samples.append(candidate if is_dict else sample(candidate))
            samples.sort(key=_score, reverse=True)

    def _escalate(self, incident: Incident, rule) -> None:
        if (
            rule.escalate_at is not None
            and not incident.escalated
            and incident.severity != "critical"
            and incident.value >= rule.escalate_at
        ):
            incident.severity = "critical"
            incident.escalated = True
            self._event("escalated", incident)

    # -- time ------------------------------------------------------------

    def _expire(self, key: tuple, now: float) -> None:
        incident = self.open.get(key)
        if incident is not None and now - incident.last_hit_at >= incident.cooldown:
            self._resolve(incident, incident.last_hit_at + incident.cooldown, "auto")

    def sweep(self, now: float, clock: Optional[str] = None) -> None:
        """
        Resolve every incident (on C{clock}, or any) quiet for its cooldown
        at time C{now}, and release held keys.
        """
        for key, incident in list(self.open.items()):
            if clock is None or incident.clock == clock:
                self._expire(key, now)
        for key, (last, cooldown) in list(self.held.items()):
            if now - last >= cooldown:
                del self.held[key]

    def _resolve(self, incident: Incident, at: float, by: str) -> None:
        incident.state = RESOLVED
        incident.resolved_at = at
        incident.resolved_by = by
        self.open.pop(incident.key, None)
        self._event("resolved", incident)

    # -- by hand ---------------------------------------------------------

    def acknowledge(self, incident_id: str, by: str, at: float) -> Optional[Incident]:
        incident = self.by_id(incident_id)
        if incident is None:
            return None
        if incident.state == OPEN:
            incident.state = ACKNOWLEDGED
            incident.acknowledged_at = at
            incident.acknowledged_by = by
            self._event("acknowledged", incident)
        return incident

    def resolve(self, incident_id: str, by: str, at: Optional[float] = None) -> Optional[Incident]:
        """
        Resolve by hand at C{at} (default: its last hit); the key is held
        until the signal has been quiet for a cooldown.
        """
        incident = self.by_id(incident_id)
        if incident is None:
            return None
        if incident.cooldown != float("inf"):
            self.held[incident.key] = (incident.last_hit_at, incident.cooldown)
        self._resolve(incident, max(at if at is not None else incident.last_hit_at, incident.opened_at), by)
        return incident

    def close(self, key: tuple, at: float, by: str = "auto") -> Optional[Incident]:
        """
        Resolve the open incident of C{key} now, whatever its cooldown (a
        channel enabled again, a rule deleted).
        """
        incident = self.open.get(key)
        if incident is not None:
            self._resolve(incident, max(at, incident.opened_at), by)
        return incident

    def load(self, incidents: Iterable[Incident]) -> None:
        """
        Take back the open incidents of a previous run.
        """
        for incident in incidents:
            self.open[incident.key] = incident
