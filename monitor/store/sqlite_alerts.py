"""
L{IAlertStore} on SQLite: every statement the alerts run (rules,
incidents, notifications, attempts, channels, and the reads of stored
posts for warm-up and backtests), as interactions run in the store's
threads with bound parameters only.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any, Optional

from zope.interface import implementer

from monitor.alerts.incidents import Incident
from monitor.alerts.notifiers import Notification
from monitor.model import Analysis, Post, iso8601
from monitor.store.interfaces import Claim, DeliveryAttempt, IAlertStore, StoredRule

__all__ = ["SQLiteAlerts", "decode_cursor"]

INCIDENT_COLUMNS = (
    "id", "rule", "type", "topic", "source", "severity", "state", "clock",
    "opened_at", "last_hit_at", "resolved_at", "resolved_by",
    "acknowledged_at", "acknowledged_by", "cooldown", "escalated", "posts",
    "hits", "signal", "peak", "samples", "updated_at", "backfill", "explanation",
)  # fmt: skip
_UPSERT_INCIDENT = (
    f"INSERT INTO alert_incidents ({', '.join(INCIDENT_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(INCIDENT_COLUMNS))}) ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in INCIDENT_COLUMNS if c != "id")
)
NOTIFICATION_COLUMNS = (
    "id", "incident_id", "channel", "event", "payload", "state", "attempts",
    "created_at", "next_attempt_at", "finished_at", "last_error",
)  # fmt: skip
_INSERT_NOTIFICATION = (
    f"INSERT OR IGNORE INTO alert_notifications ({', '.join(NOTIFICATION_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(NOTIFICATION_COLUMNS))})"
)

#: Most incidents one API page holds.
MAX_PAGE = 500


def dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def incident_row(incident: Incident, now: float) -> tuple:
    i = incident
    return (
        i.id, i.rule, i.type, i.topic, i.source, i.severity, i.state, i.clock,
        i.opened_at, i.last_hit_at, i.resolved_at, i.resolved_by,
        i.acknowledged_at, i.acknowledged_by, i.cooldown, int(i.escalated),
        i.posts, i.hits, dumps(i.signal), dumps(i.peak), dumps(i.samples), now,
        int(i.backfill), dumps(i.explanation),
    )  # fmt: skip


def notification_row(n: Notification) -> tuple:
    return (
        n.id, n.incident_id, n.channel, n.event, dumps(n.payload), n.state,
        n.attempts, n.created_at, n.next_attempt_at, n.finished_at, n.last_error,
    )  # fmt: skip


def attempt_rows(n: Notification, a: Optional[DeliveryAttempt]) -> tuple[tuple, Optional[tuple]]:
    """
    What L{IAlertStore.record_attempt} writes: the notification's (state,
    attempts, next_attempt_at, finished_at, last_error, id) and the
    attempt's (notification_id, at, outcome, status, detail, seconds).
    """
    row = (n.state, n.attempts, n.next_attempt_at, n.finished_at, n.last_error, n.id)
    if a is None:
        return row, None
    return row, (a.notification_id, a.at, a.outcome, a.status, a.detail, a.seconds)


def incident_from_row(row) -> Incident:
    values = dict(zip(INCIDENT_COLUMNS, row))
    for name in ("signal", "peak", "samples", "explanation"):
        values[name] = json.loads(values[name] or "{}")
    values["escalated"] = bool(values["escalated"])
    values["backfill"] = bool(values["backfill"])
    del values["updated_at"]
    incident = Incident(**values)
    if incident.type in ("keyword", "influencer", "engagement", "purchase_intent"):
        incident.value = incident.posts
    else:
        incident.value = float((incident.signal or {}).get("value") or 0)
    return incident


# -- writes ----------------------------------------------------------------


def save_incidents(trans, incidents: list[tuple], notifications: list[tuple]) -> None:
    """
    Incidents and the notifications about them, in one transaction: a
    notification is never kept without its incident, nor lost after it.
    """
    trans.execute("BEGIN IMMEDIATE")
    if incidents:
        trans.executemany(_UPSERT_INCIDENT, incidents)
    if notifications:
        trans.executemany(_INSERT_NOTIFICATION, notifications)


def record_attempt(trans, notification: tuple, attempt: Optional[tuple]) -> None:
    """
    One delivery attempt and the notification's new state.
    C{notification}: (state, attempts, next_attempt_at, finished_at,
    last_error, id); C{attempt}: (notification_id, at, outcome, status,
    detail, seconds).
    """
    trans.execute("BEGIN IMMEDIATE")
    if attempt is not None:
        trans.execute(
            "INSERT INTO alert_attempts (notification_id, at, outcome, status, detail, seconds) "
            "SELECT ?, ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM alert_attempts "
            "WHERE notification_id = ? AND at = ? AND outcome = ?)",
            (*attempt, *attempt[:3]),
        )
    trans.execute(
        "UPDATE alert_notifications SET state = ?, attempts = ?, next_attempt_at = ?, "
        "finished_at = ?, last_error = ? WHERE id = ? AND state = 'pending'",
        notification,
    )


def claim_notification(trans, notification_id: str) -> Claim:
    """One file is one hub's: a notification is this hub's while it is pending."""
    trans.execute("SELECT state FROM alert_notifications WHERE id = ?", (notification_id,))
    row = trans.fetchone()
    return Claim(row is not None and row[0] == "pending")


def save_channel(trans, name: str, fingerprint: str, reason: Optional[str], at: Optional[float]) -> None:
    trans.execute(
        "INSERT INTO alert_channels (name, fingerprint, disabled_reason, disabled_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET fingerprint = excluded.fingerprint, "
        "disabled_reason = excluded.disabled_reason, disabled_at = excluded.disabled_at",
        (name, fingerprint, reason, at),
    )


def sync_file_rules(trans, rows: list[tuple]) -> list[str]:
    """
    Make the rules of origin C{file} equal C{rows} (name, spec, updated_at);
    rules edited through the API keep their version.  Returns the names of
    file rules removed.
    """
    trans.execute("BEGIN IMMEDIATE")
    trans.executemany(
        "INSERT INTO alert_rules (name, spec, origin, updated_at) VALUES (?, ?, 'file', ?) "
        "ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, updated_at = excluded.updated_at "
        "WHERE alert_rules.origin = 'file' AND alert_rules.spec IS NOT excluded.spec",
        rows,
    )
    names = {row[0] for row in rows}
    trans.execute("SELECT name FROM alert_rules WHERE origin = 'file'")
    stale = sorted(name for (name,) in trans.fetchall() if name not in names)
    trans.executemany("DELETE FROM alert_rules WHERE name = ? AND origin = 'file'", [(n,) for n in stale])
    return stale


def save_rule(trans, name: str, spec: dict, origin: str, now: float) -> None:
    trans.execute(
        "INSERT INTO alert_rules (name, spec, origin, updated_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, origin = excluded.origin, "
        "updated_at = excluded.updated_at",
        (name, dumps(spec), origin, now),
    )


def delete_rule(trans, name: str) -> bool:
    trans.execute("DELETE FROM alert_rules WHERE name = ?", (name,))
    return trans.rowcount > 0


# -- reads -----------------------------------------------------------------


def list_rules(trans) -> list[StoredRule]:
    trans.execute("SELECT name, spec, origin FROM alert_rules ORDER BY name")
    return [stored_rule(*row) for row in trans.fetchall()]


def stored_rule(name: str, spec: str, origin: str) -> StoredRule:
    try:
        return StoredRule(name, json.loads(spec), origin)
    except ValueError:
        return StoredRule(name, None, origin)


def load_open_incidents(trans) -> list[Incident]:
    trans.execute(
        f"SELECT {', '.join(INCIDENT_COLUMNS)} FROM alert_incidents "
        "WHERE state IN ('open', 'acknowledged') ORDER BY opened_at"
    )
    return [incident_from_row(row) for row in trans.fetchall()]


def incident_state(trans, incident_id: str) -> Optional[str]:
    trans.execute("SELECT state FROM alert_incidents WHERE id = ?", (incident_id,))
    row = trans.fetchone()
    return row[0] if row else None


def load_pending(trans) -> list[Notification]:
    trans.execute(
        f"SELECT {', '.join(NOTIFICATION_COLUMNS)} FROM alert_notifications "
        "WHERE state = 'pending' ORDER BY created_at, rowid"
    )
    return [notification_from_row(row) for row in trans.fetchall()]


def notification_from_row(row) -> Notification:
    values = dict(zip(NOTIFICATION_COLUMNS, row))
    values["payload"] = json.loads(values["payload"])
    return Notification(**values)


def load_channels(trans) -> dict[str, tuple]:
    trans.execute("SELECT name, fingerprint, disabled_reason, disabled_at FROM alert_channels")
    return {name: (fingerprint, reason, at) for name, fingerprint, reason, at in trans.fetchall()}


def channel_counts(trans) -> dict[str, dict[str, int]]:
    trans.execute("SELECT channel, state, count(*) FROM alert_notifications GROUP BY channel, state")
    out: dict[str, dict[str, int]] = {}
    for channel, state, n in trans.fetchall():
        out.setdefault(channel, {})[state] = n
    return out


def latest_post_time(trans) -> Optional[float]:
    trans.execute("SELECT max(created_at) FROM posts")
    return trans.fetchone()[0]


def recent_posts(trans, since: float, limit: int) -> list[tuple[str, int, float]]:
    """
    The newest stored posts (uid, engagement, received_at) written since
    C{since}: a source that re-sends a few after a restart must not have
    them counted twice.
    """
    trans.execute(
        "SELECT network || ':' || native_id, likes + reposts + replies, coalesce(received_at, created_at) "
        "FROM posts WHERE created_at >= ? ORDER BY created_at DESC LIMIT ?",
        (since, limit),
    )
    return trans.fetchall()


def history(trans, topics: list[str], since: float, until: Optional[float] = None):
    """
    Per topic: post and negative counts per minute from C{since} (up to
    C{until}), and the time of its first post ever.
    """
    counts: dict[str, dict[int, tuple[int, int]]] = {}
    first: dict[str, float] = {}
    bound = "" if until is None else " AND s.created_at < ?"
    for topic in topics:
        params = (topic,) if until is None else (topic, until)
        trans.execute(f"SELECT min(created_at) FROM post_topics AS s WHERE topic = ?{bound}", params)
        (earliest,) = trans.fetchone()
        if earliest is None:
            continue
        first[topic] = earliest
        trans.execute(
            "SELECT CAST(s.created_at / 60 AS INTEGER) AS m, count(*), "
            "coalesce(sum(p.sentiment = 'negative'), 0) "
            "FROM post_topics AS s JOIN posts AS p ON p.id = s.post_id "
            f"WHERE s.topic = ? AND s.created_at >= ?{bound} GROUP BY m",
            (topic, since, *params[1:]),
        )
        counts[topic] = {m: (n, neg) for m, n, neg in trans.fetchall()}
    return counts, first


# -- the API ---------------------------------------------------------------


def encode_cursor(opened_at: float, incident_id: str) -> str:
    raw = f"{opened_at!r}|{incident_id}".encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode("ascii")).decode("utf-8")
        opened, incident_id = raw.split("|", 1)
        if not math.isfinite(float(opened)):
            raise ValueError(opened)
        return float(opened), incident_id
    except (ValueError, UnicodeError, binascii.Error):
        raise ValueError(f"cursor: not a page cursor from this API: {cursor!r}")


def notification_entry(row) -> dict[str, Any]:
    """A notification row (id, incident, channel, event, state, attempts, times, error) as the API shows it."""
    nid, _, channel, event, state, attempts, created, next_at, finished, error = row
    return {
        "id": nid,
        "channel": channel,
        "event": event,
        "state": state,
        "attempts": attempts,
        "created_at": iso8601(created),
        "next_attempt_at": iso8601(next_at) if state == "pending" else None,
        "finished_at": iso8601(finished) if finished is not None else None,
        "last_error": error,
        "log": [],
    }


def attempt_entry(row) -> dict[str, Any]:
    """An attempt row (at, outcome, status, detail, seconds) as the API shows it."""
    at, outcome, status, detail, seconds = row
    return {
        "at": iso8601(at),
        "outcome": outcome,
        "status": status,
        "detail": detail,
        "seconds": round(seconds, 3) if seconds is not None else None,
    }


def _notifications(trans, ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    if not ids:
        return out
    marks = ", ".join("?" * len(ids))
    trans.execute(
        "SELECT id, incident_id, channel, event, state, attempts, created_at, next_attempt_at, "
        f"finished_at, last_error FROM alert_notifications WHERE incident_id IN ({marks}) "
        "ORDER BY created_at, rowid",
        ids,
    )
    by_id = {}
    for row in trans.fetchall():
        by_id[row[0]] = n = notification_entry(row)
        out[row[1]].append(n)
    if by_id:
        trans.execute(
            "SELECT a.notification_id, a.at, a.outcome, a.status, a.detail, a.seconds "
            "FROM alert_attempts AS a JOIN alert_notifications AS n ON n.id = a.notification_id "
            f"WHERE n.incident_id IN ({marks}) ORDER BY a.id",
            ids,
        )
        for nid, *row in trans.fetchall():
            by_id[nid]["log"].append(attempt_entry(row))
    return out


def incident_filters(
    filters: dict[str, Any], cursor: Optional[str], mark: str = "?", key: str = "id"
) -> tuple[list[str], list]:
    """
    The conditions (with C{mark} as the placeholder) and parameters of
    L{IAlertStore.query_incidents}'s filters and page cursor (C{key}: the
    id as the page order compares it).
    """
    where, params = [], []
    state = filters.get("state")
    if state == "active":
        where.append("state IN ('open', 'acknowledged')")
    elif state is not None:
        where.append(f"state = {mark}")
        params.append(state)
    for name in ("rule", "topic", "source", "severity"):
        if filters.get(name) is not None:
            where.append(f"{name} = {mark}")
            params.append(filters[name])
    if filters.get("since") is not None:
        where.append(f"opened_at >= {mark}")
        params.append(filters["since"])
    if filters.get("until") is not None:
        where.append(f"opened_at < {mark}")
        params.append(filters["until"])
    if cursor:
        where.append(f"(opened_at, {key}) < ({mark}, {mark})")
        params.extend(decode_cursor(cursor))
    return where, params


def incident_page(rows, limit: int) -> tuple[list[Incident], Optional[str]]:
    """Up to C{limit + 1} incident rows as one page of incidents, and the next page's cursor."""
    following = None
    if len(rows) > limit:
        rows = rows[:limit]
        following = encode_cursor(rows[-1][8], rows[-1][0])
    return [incident_from_row(row) for row in rows], following


def incident_dicts(incidents: list[Incident], notes: dict[str, list]) -> list[dict[str, Any]]:
    """Incidents as the API shows them, each with its notifications."""
    out = []
    for incident in incidents:
        d = incident.to_dict()
        d["notifications"] = notes[incident.id]
        out.append(d)
    return out


def query_incidents(trans, filters: dict[str, Any], limit: int, cursor: Optional[str]):
    """
    A page of incidents, newest opened first, each with its notifications
    and their attempts; and the cursor of the next page.
    """
    where, params = incident_filters(filters, cursor)
    trans.execute(
        f"SELECT {', '.join(INCIDENT_COLUMNS)} FROM alert_incidents "
        f"WHERE {' AND '.join(where) or '1'} ORDER BY opened_at DESC, id DESC LIMIT ?",
        (*params, limit + 1),
    )
    incidents, following = incident_page(trans.fetchall(), limit)
    return incident_dicts(incidents, _notifications(trans, [i.id for i in incidents])), following


def get_incident(trans, incident_id: str) -> Optional[dict[str, Any]]:
    trans.execute(f"SELECT {', '.join(INCIDENT_COLUMNS)} FROM alert_incidents WHERE id = ?", (incident_id,))
    row = trans.fetchone()
    if row is None:
        return None
    d = incident_from_row(row).to_dict()
    d["notifications"] = _notifications(trans, [incident_id])[incident_id]
    return d


# -- backtests -------------------------------------------------------------

POST_COLUMNS = (
    "p.network, p.native_id, p.source, p.author, p.text, p.created_at, p.url, p.likes, p.reposts, "
    "p.replies, p.author_followers, p.author_verified, p.compound, p.sentiment, p.labels, p.topics, "
    "p.received_at, p.lang, p.lat, p.lon"
)


def post_from_row(row) -> Post:
    (network, native_id, source, author, text, created_at, url, likes, reposts, replies,
     followers, verified, compound, sentiment, labels, topics, received_at, lang, lat, lon) = row  # fmt: skip
    analysis = None
    if sentiment is not None:
        analysis = Analysis(compound or 0.0, 0.0, 0.0, 0.0, sentiment, tuple(labels.split()))
    return Post(
        source=source, network=network, native_id=native_id, text=text, author=author,
        created_at=created_at, url=url, likes=likes, reposts=reposts, replies=replies,
        author_followers=followers, author_verified=bool(verified), received_at=received_at or 0.0,
        topics=tuple(json.loads(topics)), analysis=analysis, lang=lang, lat=lat, lon=lon,
    )  # fmt: skip


def replay(trans, topics, since, until, warm_from, limit, run):
    """
    In a reader thread: C{run(topics, history, posts)} over the stored
    posts of the period, read a thousand rows at a time.
    """
    chosen = topics is not None
    if not chosen:
        trans.execute("SELECT DISTINCT topic FROM post_topics")
        topics = sorted(t for (t,) in trans.fetchall())
    else:
        topics = sorted(topics)
    warm = None if warm_from is None else history(trans, topics, warm_from, until=since)
    if chosen:
        marks = ", ".join("?" * len(topics))
        trans.execute(
            f"SELECT {POST_COLUMNS} FROM posts AS p WHERE p.id IN (SELECT post_id FROM post_topics "
            f"WHERE topic IN ({marks}) AND created_at >= ? AND created_at < ?) "
            "ORDER BY p.created_at, p.id LIMIT ?",
            (*topics, since, until, limit),
        )
    else:
        trans.execute(
            f"SELECT {POST_COLUMNS} FROM posts AS p WHERE p.created_at >= ? AND p.created_at < ? "
            "ORDER BY p.created_at, p.id LIMIT ?",
            (since, until, limit),
        )

    def posts():
        while True:
            rows = trans.fetchmany(1000)
            if not rows:
                return
            for row in rows:
                yield post_from_row(row)

    return run(topics, warm, posts())


# -- the provider ----------------------------------------------------------


@implementer(IAlertStore)
class SQLiteAlerts:
    """
    @param store: the L{monitor.store.sqlite.SQLiteStore} (any object with
        its C{run_read} and C{run_write}).
    """

    def __init__(self, store) -> None:
        self.store = store

    def sync_file_rules(self, specs, now):
        return self.store.run_write(sync_file_rules, [(spec["name"], dumps(spec), now) for spec in specs])

    def save_rule(self, name, spec, origin, now):
        return self.store.run_write(save_rule, name, spec, origin, now)

    def delete_rule(self, name):
        return self.store.run_write(delete_rule, name)

    def list_rules(self):
        return self.store.run_read(list_rules)

    def save_incidents(self, incidents, notifications, now):
        return self.store.run_write(
            save_incidents, [incident_row(i, now) for i in incidents], [notification_row(n) for n in notifications]
        )

    def open_incidents(self):
        return self.store.run_read(load_open_incidents)

    def incident_state(self, incident_id):
        return self.store.run_read(incident_state, incident_id)

    def query_incidents(self, filters, limit, cursor):
        return self.store.run_read(query_incidents, filters, limit, cursor)

    def get_incident(self, incident_id):
        return self.store.run_read(get_incident, incident_id)

    def pending_notifications(self):
        return self.store.run_read(load_pending)

    def claim_notification(self, notification_id, seconds):
        return self.store.run_read(claim_notification, notification_id)

    def record_attempt(self, notification, attempt):
        return self.store.run_write(record_attempt, *attempt_rows(notification, attempt))

    def save_channel(self, name, fingerprint, reason, at):
        return self.store.run_write(save_channel, name, fingerprint, reason, at)

    def channel_states(self):
        return self.store.run_read(load_channels)

    def channel_counts(self):
        return self.store.run_read(channel_counts)

    def latest_post_time(self):
        return self.store.run_read(latest_post_time)

    def minute_history(self, topics, since, until=None):
        return self.store.run_read(history, list(topics), since, until)

    def recent_posts(self, since, limit):
        return self.store.run_read(recent_posts, since, limit)

    def replay(self, topics, since, until, warm_from, limit, run):
        return self.store.run_read(
            replay, None if topics is None else list(topics), since, until, warm_from, limit, run
        )
