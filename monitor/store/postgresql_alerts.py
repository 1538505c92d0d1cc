"""
L{IAlertStore} on PostgreSQL: the alerts' rules, incidents, outbox and
channel states in the database every hub shares (tables of
L{monitor.store.postgresql.MIGRATIONS}), and the alerts' reads of the
posts stored there.

Several hubs deliver from one outbox safely: a hub claims a notification
(C{claimed_by}, C{claimed_until} on the database's clock, taken with
C{SELECT ... FOR UPDATE}) before it sends it, and another hub does not take
it while the claim holds; recording the attempt ends the claim (a hub
whose claim ran out and was taken by another adds its attempt to the log
but leaves the notification's state to the holder).  Every write may be
retried after a lost connection whose commit did reach the server, so each
is idempotent: an attempt is unique by (notification, time, outcome), and a
finished notification stays finished.

The rows are shaped by the same code as the SQLite provider's
(L{monitor.store.sqlite_alerts}), so both answer alike.
"""

from __future__ import annotations

import secrets
from typing import Any, Optional

from twisted.internet.threads import blockingCallFromThread
from zope.interface import implementer

from monitor.store.interfaces import Claim, IAlertStore
from monitor.store.postgresql import _values
from monitor.store.sqlite_alerts import (
    INCIDENT_COLUMNS,
    NOTIFICATION_COLUMNS,
    POST_COLUMNS,
    attempt_entry,
    attempt_rows,
    dumps,
    incident_dicts,
    incident_filters,
    incident_from_row,
    incident_page,
    incident_row,
    notification_entry,
    notification_from_row,
    notification_row,
    post_from_row,
    stored_rule,
)

__all__ = ["PostgreSQLAlerts"]

_INSERT_INCIDENTS = f"INSERT INTO alert_incidents ({', '.join(INCIDENT_COLUMNS)}) VALUES ".encode()
_ON_CONFLICT_UPDATE = (
    " ON CONFLICT (id) DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in INCIDENT_COLUMNS if c != "id")
).encode()
_INCIDENT_MARKS = "(" + ", ".join(["%s"] * len(INCIDENT_COLUMNS)) + ")"
_NOTIFICATION_MARKS = "(" + ", ".join(["%s"] * len(NOTIFICATION_COLUMNS)) + ")"
_SELECT_INCIDENT = f"SELECT {', '.join(INCIDENT_COLUMNS)} FROM alert_incidents"

#: The database's clock, in unix seconds: the one clock every hub's claims
#: are compared on.
_NOW = "extract(epoch FROM clock_timestamp())"

#: How many stored posts a replay reads at a time.
REPLAY_ROWS = 1000


# -- rules -----------------------------------------------------------------


async def _sync_file_rules(cursor, rows: list[tuple]) -> list[str]:
    if rows:
        await cursor.execute(
            b"INSERT INTO alert_rules (name, spec, origin, updated_at) VALUES "
            + _values(cursor, "(%s, %s, 'file', %s)", rows)
            + b" ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, updated_at = excluded.updated_at "
            b"WHERE alert_rules.origin = 'file' AND alert_rules.spec IS DISTINCT FROM excluded.spec"
        )
    names = {row[0] for row in rows}
    await cursor.execute("SELECT name FROM alert_rules WHERE origin = 'file'")
    stale = sorted(name for (name,) in cursor.fetchall() if name not in names)
    if stale:
        await cursor.execute("DELETE FROM alert_rules WHERE origin = 'file' AND name = ANY(%s)", (stale,))
    return stale


async def _save_rule(cursor, row: tuple) -> None:
    await cursor.execute(
        "INSERT INTO alert_rules (name, spec, origin, updated_at) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, origin = excluded.origin, "
        "updated_at = excluded.updated_at",
        row,
    )


async def _delete_rule(cursor, name: str) -> bool:
    await cursor.execute("DELETE FROM alert_rules WHERE name = %s", (name,))
    return cursor.rowcount > 0


async def _list_rules(cursor) -> list:
    await cursor.execute('SELECT name, spec, origin FROM alert_rules ORDER BY name COLLATE "C"')
    return [stored_rule(*row) for row in cursor.fetchall()]


# -- incidents and the outbox ------------------------------------------------


async def _save_incidents(cursor, incidents: list[tuple], notifications: list[tuple]) -> None:
    """Incidents and the notifications about them, in one transaction."""
    # One row per incident (the last), in one order on every hub: two
    # hubs' upserts wait for each other, never deadlock.
    latest = sorted({row[0]: row for row in incidents}.items())
    for part in _parts([row for _, row in latest]):
        await cursor.execute(_INSERT_INCIDENTS + _values(cursor, _INCIDENT_MARKS, part) + _ON_CONFLICT_UPDATE)
    for part in _parts(notifications):
        await cursor.execute(
            f"INSERT INTO alert_notifications ({', '.join(NOTIFICATION_COLUMNS)}) VALUES ".encode()
            + _values(cursor, _NOTIFICATION_MARKS, part)
            + b" ON CONFLICT (id) DO NOTHING"
        )


def _parts(rows: list, size: int = 200):
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


async def _open_incidents(cursor) -> list:
    await cursor.execute(f"{_SELECT_INCIDENT} WHERE state IN ('open', 'acknowledged') ORDER BY opened_at")
    return [incident_from_row(row) for row in cursor.fetchall()]


async def _incident_state(cursor, incident_id: str) -> Optional[str]:
    await cursor.execute("SELECT state FROM alert_incidents WHERE id = %s", (incident_id,))
    row = cursor.fetchone()
    return row[0] if row else None


async def _notifications(cursor, ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    if not ids:
        return out
    await cursor.execute(
        "SELECT id, incident_id, channel, event, state, attempts, created_at, next_attempt_at, "
        "finished_at, last_error FROM alert_notifications WHERE incident_id = ANY(%s) ORDER BY created_at, seq",
        (ids,),
    )
    by_id = {}
    for row in cursor.fetchall():
        by_id[row[0]] = n = notification_entry(row)
        out[row[1]].append(n)
    if by_id:
        await cursor.execute(
            "SELECT a.notification_id, a.at, a.outcome, a.status, a.detail, a.seconds "
            "FROM alert_attempts AS a JOIN alert_notifications AS n ON n.id = a.notification_id "
            "WHERE n.incident_id = ANY(%s) ORDER BY a.id",
            (ids,),
        )
        for nid, *row in cursor.fetchall():
            by_id[nid]["log"].append(attempt_entry(row))
    return out


async def _query_incidents(cursor, filters: dict, limit: int, cursor_text: Optional[str]):
    # Ids compare byte by byte, as on SQLite, whatever the database's locale.
    where, params = incident_filters(filters, cursor_text, "%s", 'id COLLATE "C"')
    await cursor.execute(
        f"{_SELECT_INCIDENT} WHERE {' AND '.join(where) or 'true'} "
        'ORDER BY opened_at DESC, id COLLATE "C" DESC LIMIT %s',
        (*params, limit + 1),
    )
    incidents, following = incident_page(cursor.fetchall(), limit)
    return incident_dicts(incidents, await _notifications(cursor, [i.id for i in incidents])), following


async def _get_incident(cursor, incident_id: str) -> Optional[dict]:
    await cursor.execute(f"{_SELECT_INCIDENT} WHERE id = %s", (incident_id,))
    row = cursor.fetchone()
    if row is None:
        return None
    return incident_dicts([incident_from_row(row)], await _notifications(cursor, [incident_id]))[0]


async def _pending(cursor) -> list:
    await cursor.execute(
        f"SELECT {', '.join(NOTIFICATION_COLUMNS)} FROM alert_notifications "
        "WHERE state = 'pending' ORDER BY created_at, seq"
    )
    return [notification_from_row(row) for row in cursor.fetchall()]


async def _claim(cursor, notification_id: str, seconds: float, holder: str) -> Claim:
    """
    Take the notification unless another hub's claim still holds; the row
    lock makes two hubs claiming at once take turns.
    """
    await cursor.execute(
        f"SELECT state, claimed_by, claimed_until - {_NOW} FROM alert_notifications WHERE id = %s FOR UPDATE",
        (notification_id,),
    )
    row = cursor.fetchone()
    if row is None or row[0] != "pending":
        return Claim(False)
    _, by, left = row
    if by is not None and by != holder and left is not None and left > 0:
        return Claim(False, float(left))
    await cursor.execute(
        f"UPDATE alert_notifications SET claimed_by = %s, claimed_until = {_NOW} + %s WHERE id = %s",
        (holder, float(seconds), notification_id),
    )
    return Claim(True)


async def _record_attempt(cursor, notification: tuple, attempt: Optional[tuple], holder: str) -> None:
    if attempt is not None:
        await cursor.execute(
            "INSERT INTO alert_attempts (notification_id, at, outcome, status, detail, seconds) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (notification_id, at, outcome) DO NOTHING",
            attempt,
        )
    await cursor.execute(
        "UPDATE alert_notifications SET state = %s, attempts = %s, next_attempt_at = %s, finished_at = %s, "
        "last_error = %s, claimed_by = NULL, claimed_until = NULL WHERE id = %s AND state = 'pending' "
        "AND (claimed_by IS NULL OR claimed_by = %s OR claimed_until < " + _NOW + ")",
        (*notification, holder),
    )


async def _save_channel(cursor, row: tuple) -> None:
    await cursor.execute(
        "INSERT INTO alert_channels (name, fingerprint, disabled_reason, disabled_at) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (name) DO UPDATE SET fingerprint = excluded.fingerprint, "
        "disabled_reason = excluded.disabled_reason, disabled_at = excluded.disabled_at",
        row,
    )


async def _channel_states(cursor) -> dict:
    await cursor.execute("SELECT name, fingerprint, disabled_reason, disabled_at FROM alert_channels")
    return {name: (fingerprint, reason, at) for name, fingerprint, reason, at in cursor.fetchall()}


async def _channel_counts(cursor) -> dict:
    await cursor.execute("SELECT channel, state, count(*) FROM alert_notifications GROUP BY channel, state")
    out: dict[str, dict[str, int]] = {}
    for channel, state, n in cursor.fetchall():
        out.setdefault(channel, {})[state] = int(n)
    return out


# -- the posts -----------------------------------------------------------------


async def _latest_post_time(cursor) -> Optional[float]:
    await cursor.execute("SELECT max(created_at) FROM posts")
    return cursor.fetchone()[0]


async def _recent_posts(cursor, since: float, limit: int) -> list:
    await cursor.execute(
        "SELECT uid, likes + reposts + replies, coalesce(received_at, created_at) FROM posts "
        "WHERE created_at >= %s ORDER BY created_at DESC, id DESC LIMIT %s",
        (since, limit),
    )
    return [(uid, int(engagement), at) for uid, engagement, at in cursor.fetchall()]


async def _history(cursor, topics: list[str], since: float, until: Optional[float] = None):
    """
    Per topic: post and negative counts per minute from C{since} (up to
    C{until}), and the time of its first post ever.
    """
    counts: dict[str, dict[int, tuple[int, int]]] = {}
    first: dict[str, float] = {}
    bound = "" if until is None else " AND s.created_at < %s"
    for topic in topics:
        params = (topic,) if until is None else (topic, until)
        await cursor.execute(f"SELECT min(created_at) FROM post_topics AS s WHERE topic = %s{bound}", params)
        (earliest,) = cursor.fetchone()
        if earliest is None:
            continue
        first[topic] = earliest
        await cursor.execute(
            "SELECT floor(s.created_at / 60)::bigint AS m, count(*), count(*) FILTER (WHERE p.sentiment = 'negative') "
            "FROM post_topics AS s JOIN posts AS p ON p.id = s.post_id "
            f"WHERE s.topic = %s AND s.created_at >= %s{bound} GROUP BY m",
            (topic, since, *params[1:]),
        )
        counts[topic] = {int(m): (int(n), int(neg)) for m, n, neg in cursor.fetchall()}
    return counts, first


async def _replay(cursor, topics, since, until, warm_from, limit, run, in_thread, reactor):
    """
    C{run(topics, history, posts)} in a thread, the posts read through a
    server-side cursor L{REPLAY_ROWS} at a time (on the reactor, each when
    the thread asks for it): a month of posts never sits in memory at once.
    """
    chosen = topics is not None
    if not chosen:
        await cursor.execute("SELECT DISTINCT topic FROM post_topics")
        topics = sorted(t for (t,) in cursor.fetchall())
    else:
        topics = sorted(topics)
    warm = None if warm_from is None else await _history(cursor, topics, warm_from, until=since)
    if chosen:
        query = cursor.mogrify(
            f"SELECT {POST_COLUMNS} FROM posts AS p WHERE p.id IN (SELECT post_id FROM post_topics "
            "WHERE topic = ANY(%s) AND created_at >= %s AND created_at < %s) ORDER BY p.created_at, p.id LIMIT %s",
            (topics, since, until, limit),
        )
    else:
        query = cursor.mogrify(
            f"SELECT {POST_COLUMNS} FROM posts AS p WHERE p.created_at >= %s AND p.created_at < %s "
            "ORDER BY p.created_at, p.id LIMIT %s",
            (since, until, limit),
        )
    await cursor.execute(b"DECLARE replay_posts NO SCROLL CURSOR FOR " + query)

    def fetch():
        d = cursor.execute(f"FETCH {REPLAY_ROWS} FROM replay_posts")
        d.addCallback(lambda c: c.fetchall())
        return d

    def posts():
        while True:
            rows = blockingCallFromThread(reactor, fetch)
            if not rows:
                return
            for row in rows:
                yield post_from_row(row)

    result = await in_thread(run, topics, warm, posts())
    await cursor.execute("CLOSE replay_posts")
    return result


# -- the provider ----------------------------------------------------------


@implementer(IAlertStore)
class PostgreSQLAlerts:
    """
    @param store: the L{monitor.store.postgresql.PostgreSQLStore} whose
        database (and connections) the alerts share.
    @param hub: this hub's name, in the claims it holds on notifications
        (with a token of this process, so that a hub restarted under the
        same name does not mistake a dead process's claim for its own).
    """

    def __init__(self, store, hub: str = "hub") -> None:
        self.store = store
        self.holder = f"{hub}:{secrets.token_hex(4)}"

    def _read(self, function, *args):
        return self.store.transact(False, function, *args)

    def _write(self, function, *args):
        return self.store.transact(True, function, *args)

    def sync_file_rules(self, specs, now):
        return self._write(_sync_file_rules, sorted((spec["name"], dumps(spec), now) for spec in specs))

    def save_rule(self, name, spec, origin, now):
        return self._write(_save_rule, (name, dumps(spec), origin, now))

    def delete_rule(self, name):
        return self._write(_delete_rule, name)

    def list_rules(self):
        return self._read(_list_rules)

    def save_incidents(self, incidents, notifications, now):
        return self._write(
            _save_incidents,
            [incident_row(i, now) for i in incidents],
            [notification_row(n) for n in notifications],
        )

    def open_incidents(self):
        return self._read(_open_incidents)

    def incident_state(self, incident_id):
        return self._read(_incident_state, incident_id)

    def query_incidents(self, filters, limit, cursor):
        return self._read(_query_incidents, filters, limit, cursor)

    def get_incident(self, incident_id):
        return self._read(_get_incident, incident_id)

    def pending_notifications(self):
        return self._read(_pending)

    def claim_notification(self, notification_id, seconds):
        return self._write(_claim, notification_id, seconds, self.holder)

    def record_attempt(self, notification, attempt):
        return self._write(_record_attempt, *attempt_rows(notification, attempt), self.holder)

    def save_channel(self, name, fingerprint, reason, at):
        return self._write(_save_channel, (name, fingerprint, reason, at))

    def channel_states(self):
        return self._read(_channel_states)

    def channel_counts(self):
        return self._read(_channel_counts)

    def latest_post_time(self):
        return self._read(_latest_post_time)

    def minute_history(self, topics, since, until=None):
        return self._read(_history, list(topics), since, until)

    def recent_posts(self, since, limit):
        return self._read(_recent_posts, since, limit)

    def replay(self, topics, since, until, warm_from, limit, run):
        return self._read(
            _replay,
            None if topics is None else list(topics),
            since,
            until,
            warm_from,
            limit,
            run,
            self.store.in_thread,
            self.store.reactor,
        )
