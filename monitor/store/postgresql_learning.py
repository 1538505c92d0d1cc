"""
L{ILearningStore} on PostgreSQL: the statements on C{post_feedback},
C{learned_models} and C{learned_holds} (PostgreSQL migration 3), and the
reads and rewrites of the posts in the same database, run over the pool of
a L{monitor.store.postgresql.PostgreSQLStore}.

Several hubs may correct the same post or store models at once: a
correction merges under a lock on its post's row, and a model write locks
the models against other writers, so no merge is lost and a model never has
two active versions.
"""

from __future__ import annotations

import json

from zope.interface import implementer

from monitor.store.interfaces import Correction, ILearningStore
from monitor.store.postgresql import _Scope, _values

__all__ = ["PostgreSQLLearning"]

_CORRECTION = 'SELECT f.post_uid, f.sentiment, f.labels, f."by", f.created_at, f.updated_at'
# Conflicts with itself and with every write, not with reads.
_LOCK_MODELS = "LOCK TABLE learned_models IN SHARE ROW EXCLUSIVE MODE"


def _correction(row) -> Correction:
    uid, sentiment, labels, by, created_at, updated_at, text = row
    return Correction(uid, sentiment, json.loads(labels), by, created_at, updated_at, text)


def _labels_json(labels: dict) -> str:
    return json.dumps(dict(sorted(labels.items())))


async def _rows(cursor, sql: str, params: tuple = ()) -> list:
    await cursor.execute(sql, params)
    return cursor.fetchall()


# -- corrections -----------------------------------------------------------


async def _put_correction(cursor, uid, sentiment, given, labels, by, now):
    # The post's row, locked: two hubs' corrections of it merge one after
    # the other (FOR NO KEY UPDATE does not hold up new posts' topic rows).
    await cursor.execute("SELECT text FROM posts WHERE uid = %s FOR NO KEY UPDATE", (uid,))
    post = cursor.fetchone()
    if post is None:
        return None
    await cursor.execute("SELECT sentiment, labels, created_at FROM post_feedback WHERE post_uid = %s", (uid,))
    old = cursor.fetchone()
    old_sentiment, old_labels, created = (old[0], json.loads(old[1]), old[2]) if old else (None, {}, now)
    new_sentiment = sentiment if given else old_sentiment
    merged = dict(old_labels)
    for name, value in labels.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    if new_sentiment is None and not merged:
        await cursor.execute("DELETE FROM post_feedback WHERE post_uid = %s", (uid,))
        return Correction(uid, None, {}, by, None, None, post[0])
    await cursor.execute(
        'INSERT INTO post_feedback (post_uid, sentiment, labels, "by", created_at, updated_at) '
        "VALUES (%s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (post_uid) DO UPDATE SET sentiment = excluded.sentiment, labels = excluded.labels, "
        '"by" = excluded."by", updated_at = excluded.updated_at',
        (uid, new_sentiment, _labels_json(merged), by, created, now),
    )
    return Correction(uid, new_sentiment, dict(sorted(merged.items())), by, created, now, post[0])


async def _correction_of(cursor, uid):
    await cursor.execute(
        _CORRECTION + ", p.text FROM post_feedback f LEFT JOIN posts p ON p.uid = f.post_uid WHERE f.post_uid = %s",
        (uid,),
    )
    row = cursor.fetchone()
    return _correction(row) if row else None


async def _corrections(cursor, uids):
    await cursor.execute(_CORRECTION + ", NULL FROM post_feedback f WHERE f.post_uid = ANY(%s)", (uids,))
    return {row[0]: _correction(row) for row in cursor.fetchall()}


async def _delete_correction(cursor, uid):
    await cursor.execute("DELETE FROM post_feedback WHERE post_uid = %s", (uid,))
    return cursor.rowcount > 0


async def _correction_page(cursor, limit, after, by, label):
    where, params = [], []
    if after is not None:
        where.append("(f.updated_at, f.post_uid) < (%s, %s)")
        params += [after[0], after[1]]
    if by is not None:
        where.append('f."by" = %s')
        params.append(by)
    if label is not None:
        where.append("f.labels::jsonb ? %s")
        params.append(label)
    await cursor.execute(
        _CORRECTION
        + ", p.text FROM post_feedback f LEFT JOIN posts p ON p.uid = f.post_uid"
        + (" WHERE " + " AND ".join(where) if where else "")
        + " ORDER BY f.updated_at DESC, f.post_uid DESC LIMIT %s",
        (*params, limit + 1),
    )
    rows = cursor.fetchall()
    return [_correction(r) for r in rows[:limit]], len(rows) > limit


async def _training_rows(cursor):
    await cursor.execute(
        "SELECT f.post_uid, f.sentiment, f.labels, f.updated_at, p.text, p.lang FROM post_feedback f "
        "JOIN posts p ON p.uid = f.post_uid ORDER BY f.created_at, f.post_uid"
    )
    return [
        {"uid": uid, "sentiment": s, "labels": json.loads(labels), "updated_at": at, "text": text, "lang": lang}
        for uid, s, labels, at, text, lang in cursor.fetchall()
    ]


async def _is_fresh(cursor) -> bool:
    await cursor.execute(
        "SELECT NOT EXISTS (SELECT 1 FROM post_feedback) AND NOT EXISTS (SELECT 1 FROM learned_models)"
    )
    return cursor.fetchone()[0]


async def _seed_corrections(cursor, rows, now) -> None:
    for start in range(0, len(rows), 500):
        part = [(uid, s, _labels_json(labels), by, now, now) for uid, s, labels, by in rows[start : start + 500]]
        await cursor.execute(
            b'INSERT INTO post_feedback (post_uid, sentiment, labels, "by", created_at, updated_at) VALUES '
            + _values(cursor, "(%s, %s, %s, %s, %s, %s)", part)
            + b" ON CONFLICT (post_uid) DO NOTHING"
        )


# -- learned models --------------------------------------------------------


async def _latest_versions(cursor):
    await cursor.execute("SELECT name, language, examples, trained_through FROM learned_models ORDER BY id")
    return {(n, lang): (e, t) for n, lang, e, t in cursor.fetchall()}


async def _version_counts(cursor):
    await cursor.execute("SELECT name, language, count(*) FROM learned_models GROUP BY name, language")
    return {(n, lang): c for n, lang, c in cursor.fetchall()}


async def _is_held(cursor, name, language):
    await cursor.execute("SELECT 1 FROM learned_holds WHERE name = %s AND language = %s", (name, language))
    return cursor.fetchone() is not None


async def _add_model(cursor, model, through, activate, now):
    await cursor.execute(_LOCK_MODELS)
    if activate:
        await cursor.execute("UPDATE learned_models SET state = 'inactive' WHERE name = %s AND language = %s",
                             (model.name, model.language))  # fmt: skip
    await cursor.execute(
        "INSERT INTO learned_models (name, language, version, state, model, examples, evaluation, trained_through, "
        "created_at, activated_at, activated_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (model.name, model.language, model.version, "active" if activate else "inactive", model.to_json(),
         model.examples, json.dumps(dict(model.evaluation)), through, now, now if activate else None,
         "learner" if activate else None),
    )  # fmt: skip


async def _set_active(cursor, name, language, on, by, version, now):
    await cursor.execute(_LOCK_MODELS)
    if version is None:
        await cursor.execute("SELECT version FROM learned_models WHERE name = %s AND language = %s "
                             "ORDER BY id DESC LIMIT 1", (name, language))  # fmt: skip
    else:
        await cursor.execute("SELECT version FROM learned_models WHERE name = %s AND language = %s AND version = %s",
                             (name, language, version))  # fmt: skip
    row = cursor.fetchone()
    if row is None:
        return False
    await cursor.execute("UPDATE learned_models SET state = 'inactive' WHERE name = %s AND language = %s",
                         (name, language))  # fmt: skip
    if on:
        await cursor.execute("UPDATE learned_models SET state = 'active', activated_at = %s, activated_by = %s "
                             "WHERE version = %s", (now, by, row[0]))  # fmt: skip
        await cursor.execute("DELETE FROM learned_holds WHERE name = %s AND language = %s", (name, language))
    else:
        await cursor.execute(
            'INSERT INTO learned_holds (name, language, "by", at) VALUES (%s, %s, %s, %s) '
            'ON CONFLICT (name, language) DO UPDATE SET "by" = excluded."by", at = excluded.at',
            (name, language, by, now),
        )
    return True


async def _model_versions(cursor):
    await cursor.execute("SELECT name, language FROM learned_holds")
    holds = set(cursor.fetchall())
    await cursor.execute(
        "SELECT name, language, version, state, examples, evaluation, created_at, activated_by FROM learned_models "
        "ORDER BY id"
    )
    out: dict[tuple[str, str], list[dict]] = {}
    for name, language, version, state, examples, evaluation, created_at, by in cursor.fetchall():
        out.setdefault((name, language), []).append({
            "version": version, "state": state, "examples": examples, "evaluation": json.loads(evaluation),
            "created_at": created_at, "activated_by": by, "held": (name, language) in holds,
        })  # fmt: skip
    return out


# -- the dashboard and re-scoring --------------------------------------------


async def _sentiment_sources(cursor, topic, latest):
    scope = _Scope(topic, None, None)
    await cursor.execute(
        f"SELECT who, count(*) FROM (SELECT coalesce(p.sentiment_by, 'vader') AS who FROM {scope.tables} "
        f"WHERE {scope.condition} ORDER BY {scope.time} DESC LIMIT %s) AS latest GROUP BY who",
        (*scope.params, latest),
    )
    out = {"model": 0, "vader": 0, "unscored": 0}
    for by, n in cursor.fetchall():
        key = "model" if by.startswith("model:") else by
        out[key] = out.get(key, 0) + n
    return out


@implementer(ILearningStore)
class PostgreSQLLearning:
    """
    @param store: the L{monitor.store.postgresql.PostgreSQLStore} (its
        C{run_read} and C{run_write} of coroutines, C{count_posts} and
        C{update_scores}).
    """

    def __init__(self, store) -> None:
        self.store = store

    def put_correction(self, uid, sentiment, given, labels, by, now):
        return self.store.run_write(_put_correction, uid, sentiment, given, dict(labels), by, now)

    def correction(self, uid):
        return self.store.run_read(_correction_of, uid)

    def corrections(self, uids):
        return self.store.run_read(_corrections, list(uids))

    def delete_correction(self, uid):
        return self.store.run_write(_delete_correction, uid)

    def correction_page(self, limit, after=None, by=None, label=None):
        return self.store.run_read(_correction_page, limit, after, by, label)

    def training_rows(self):
        return self.store.run_read(_training_rows)

    def is_fresh(self):
        return self.store.run_read(_is_fresh)

    def seed_corrections(self, corrections, now):
        return self.store.run_write(_seed_corrections, list(corrections), now)

    def latest_versions(self):
        return self.store.run_read(_latest_versions)

    def version_counts(self):
        return self.store.run_read(_version_counts)

    def is_held(self, name, language):
        return self.store.run_read(_is_held, name, language)

    def add_model(self, model, trained_through, activate, now):
        return self.store.run_write(_add_model, model, trained_through, activate, now)

    def set_active(self, name, language, on, by, version, now):
        return self.store.run_write(_set_active, name, language, on, by, version, now)

    def active_models(self):
        d = self.store.run_read(_rows, "SELECT model FROM learned_models WHERE state = 'active' ORDER BY id")
        return d.addCallback(lambda rows: [r[0] for r in rows])

    def model_versions(self):
        return self.store.run_read(_model_versions)

    def sentiment_sources(self, topic, latest):
        return self.store.run_read(_sentiment_sources, topic, latest)

    def count_posts(self):
        return self.store.count_posts()

    def scored_posts(self, after, limit):
        d = self.store.run_read(
            _rows,
            "SELECT id, text, lang, sentiment, sentiment_by, labels FROM posts WHERE id > %s "
            "AND compound IS NOT NULL ORDER BY id LIMIT %s",
            (after, limit),
        )
        return d.addCallback(lambda rows: [tuple(r) for r in rows])

    def rescore(self, changes):
        return self.store.update_scores(list(changes))
