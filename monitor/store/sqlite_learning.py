"""
L{ILearningStore} on SQLite: the statements on C{post_feedback},
C{learned_models} and C{learned_holds}, the dashboard's count of who
labelled the latest posts, and the reads and rewrites of re-scoring.
"""

from __future__ import annotations

import json

from zope.interface import implementer

from monitor.store.interfaces import Correction, ILearningStore
from monitor.store.sqlite_pages import scope

__all__ = ["SQLiteLearning"]

_CORRECTION = "SELECT f.post_uid, f.sentiment, f.labels, f.by, f.created_at, f.updated_at"
#: Most uids in one C{IN (...)}.
_AT_ONCE = 500


def _correction(row) -> Correction:
    uid, sentiment, labels, by, created_at, updated_at, text = row
    return Correction(uid, sentiment, json.loads(labels), by, created_at, updated_at, text)


def _labels_json(labels: dict) -> str:
    return json.dumps(dict(sorted(labels.items())))


# -- corrections -----------------------------------------------------------


def put_correction(trans, uid, sentiment, given, labels, by, now):
    trans.execute("SELECT text FROM posts WHERE uid = ?", (uid,))
    post = trans.fetchone()
    if post is None:
        return None
    trans.execute("SELECT sentiment, labels, created_at FROM post_feedback WHERE post_uid = ?", (uid,))
    old = trans.fetchone()
    old_sentiment, old_labels, created = (old[0], json.loads(old[1]), old[2]) if old else (None, {}, now)
    new_sentiment = sentiment if given else old_sentiment
    merged = dict(old_labels)
    for name, value in labels.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    if new_sentiment is None and not merged:
        trans.execute("DELETE FROM post_feedback WHERE post_uid = ?", (uid,))
        return Correction(uid, None, {}, by, None, None, post[0])
    trans.execute(
        "INSERT INTO post_feedback (post_uid, sentiment, labels, by, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (post_uid) DO UPDATE SET sentiment = excluded.sentiment, labels = excluded.labels, "
        "by = excluded.by, updated_at = excluded.updated_at",
        (uid, new_sentiment, _labels_json(merged), by, created, now),
    )
    return Correction(uid, new_sentiment, dict(sorted(merged.items())), by, created, now, post[0])


def correction(trans, uid):
    trans.execute(
        _CORRECTION + ", p.text FROM post_feedback f LEFT JOIN posts p ON p.uid = f.post_uid WHERE f.post_uid = ?",
        (uid,),
    )
    row = trans.fetchone()
    return _correction(row) if row else None


def corrections(trans, uids):
    out = {}
    for i in range(0, len(uids), _AT_ONCE):
        part = uids[i : i + _AT_ONCE]
        trans.execute(
            _CORRECTION + f", NULL FROM post_feedback f WHERE f.post_uid IN ({', '.join('?' * len(part))})", part
        )
        out.update((row[0], _correction(row)) for row in trans.fetchall())
    return out


def delete_correction(trans, uid):
    trans.execute("DELETE FROM post_feedback WHERE post_uid = ?", (uid,))
    return trans.rowcount > 0


def correction_page(trans, limit, after, by, label):
    where, params = [], []
    if after is not None:
        where.append("(f.updated_at < ? OR (f.updated_at = ? AND f.post_uid < ?))")
        params += [after[0], after[0], after[1]]
    if by is not None:
        where.append("f.by = ?")
        params.append(by)
    if label is not None:
        where.append("json_extract(f.labels, ?) IS NOT NULL")
        params.append(f'$."{label}"')
    trans.execute(
        _CORRECTION
        + ", p.text FROM post_feedback f LEFT JOIN posts p ON p.uid = f.post_uid"
        + (" WHERE " + " AND ".join(where) if where else "")
        + " ORDER BY f.updated_at DESC, f.post_uid DESC LIMIT ?",
        (*params, limit + 1),
    )
    rows = trans.fetchall()
    return [_correction(r) for r in rows[:limit]], len(rows) > limit


def training_rows(trans):
    trans.execute(
        "SELECT f.post_uid, f.sentiment, f.labels, f.updated_at, p.text, p.lang FROM post_feedback f "
        "JOIN posts p ON p.uid = f.post_uid ORDER BY f.created_at, f.post_uid"
    )
    return [
        {"uid": uid, "sentiment": s, "labels": json.loads(labels), "updated_at": at, "text": text, "lang": lang}
        for uid, s, labels, at, text, lang in trans.fetchall()
    ]


def is_fresh(trans) -> bool:
    trans.execute("SELECT (SELECT count(*) FROM post_feedback) + (SELECT count(*) FROM learned_models)")
    return trans.fetchone()[0] == 0


def seed_corrections(trans, rows, now) -> None:
    trans.executemany(
        "INSERT OR IGNORE INTO post_feedback (post_uid, sentiment, labels, by, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [(uid, sentiment, _labels_json(labels), by, now, now) for uid, sentiment, labels, by in rows],
    )


# -- learned models --------------------------------------------------------


def latest_versions(trans):
    trans.execute("SELECT name, language, examples, trained_through FROM learned_models ORDER BY id")
    return {(n, lang): (e, t) for n, lang, e, t in trans.fetchall()}


def version_counts(trans):
    trans.execute("SELECT name, language, count(*) FROM learned_models GROUP BY name, language")
    return {(n, lang): c for n, lang, c in trans.fetchall()}


def is_held(trans, name, language):
    trans.execute("SELECT 1 FROM learned_holds WHERE name = ? AND language = ?", (name, language))
    return trans.fetchone() is not None


def add_model(trans, model, through, activate, now):
    if activate:
        trans.execute("UPDATE learned_models SET state = 'inactive' WHERE name = ? AND language = ?",
                      (model.name, model.language))  # fmt: skip
    trans.execute(
        "INSERT INTO learned_models (name, language, version, state, model, examples, evaluation, trained_through, "
        "created_at, activated_at, activated_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (model.name, model.language, model.version, "active" if activate else "inactive", model.to_json(),
         model.examples, json.dumps(dict(model.evaluation)), through, now, now if activate else None,
         "learner" if activate else None),
    )  # fmt: skip


def set_active(trans, name, language, on, by, version, now):
    if version is None:
        trans.execute("SELECT version FROM learned_models WHERE name = ? AND language = ? ORDER BY id DESC LIMIT 1",
                      (name, language))  # fmt: skip
    else:
        trans.execute("SELECT version FROM learned_models WHERE name = ? AND language = ? AND version = ?",
                      (name, language, version))  # fmt: skip
    row = trans.fetchone()
    if row is None:
        return False
    trans.execute("UPDATE learned_models SET state = 'inactive' WHERE name = ? AND language = ?", (name, language))
    if on:
        trans.execute("UPDATE learned_models SET state = 'active', activated_at = ?, activated_by = ? WHERE version = ?",
                      (now, by, row[0]))  # fmt: skip
        trans.execute("DELETE FROM learned_holds WHERE name = ? AND language = ?", (name, language))
    else:
        trans.execute("INSERT OR REPLACE INTO learned_holds (name, language, by, at) VALUES (?, ?, ?, ?)",
                      (name, language, by, now))  # fmt: skip
    return True


def active_models(trans):
    trans.execute("SELECT model FROM learned_models WHERE state = 'active' ORDER BY id")
    return [r[0] for r in trans.fetchall()]


def model_versions(trans):
    trans.execute("SELECT name, language FROM learned_holds")
    holds = set(trans.fetchall())
    trans.execute(
        "SELECT name, language, version, state, examples, evaluation, created_at, activated_by FROM learned_models ORDER BY id"
    )
    out: dict[tuple[str, str], list[dict]] = {}
    for name, language, version, state, examples, evaluation, created_at, by in trans.fetchall():
        out.setdefault((name, language), []).append({
            "version": version, "state": state, "examples": examples, "evaluation": json.loads(evaluation),
            "created_at": created_at, "activated_by": by, "held": (name, language) in holds,
        })  # fmt: skip
    return out


# -- the dashboard and re-scoring --------------------------------------------


def sentiment_sources(trans, topic, latest):
    tables, time, where, params = scope(topic, None, None)
    trans.execute(
        f"SELECT who, count(*) FROM (SELECT coalesce(p.sentiment_by, 'vader') AS who FROM {tables} WHERE {where} "
        f"ORDER BY {time} DESC LIMIT ?) GROUP BY who",
        (*params, latest),
    )
    out = {"model": 0, "vader": 0, "unscored": 0}
    for by, n in trans.fetchall():
        key = "model" if by.startswith("model:") else by
        out[key] = out.get(key, 0) + n
    return out


def scored_posts(trans, after, limit):
    trans.execute("SELECT id, text, lang, sentiment, sentiment_by, labels FROM posts WHERE id > ? AND compound IS NOT NULL "
                  "ORDER BY id LIMIT ?", (after, limit))  # fmt: skip
    return trans.fetchall()


def count_posts(trans) -> int:
    trans.execute("SELECT count(*) FROM posts")
    return trans.fetchone()[0]


@implementer(ILearningStore)
class SQLiteLearning:
    """
    @param store: the L{monitor.store.sqlite.SQLiteStore} (any object with
        its C{run_read} and C{run_write}).
    """

    def __init__(self, store) -> None:
        self.store = store

    def put_correction(self, uid, sentiment, given, labels, by, now):
        return self.store.run_write(put_correction, uid, sentiment, given, dict(labels), by, now)

    def correction(self, uid):
        return self.store.run_read(correction, uid)

    def corrections(self, uids):
        return self.store.run_read(corrections, list(uids))

    def delete_correction(self, uid):
        return self.store.run_write(delete_correction, uid)

    def correction_page(self, limit, after=None, by=None, label=None):
        return self.store.run_read(correction_page, limit, after, by, label)

    def training_rows(self):
        return self.store.run_read(training_rows)

    def is_fresh(self):
        return self.store.run_read(is_fresh)

    def seed_corrections(self, corrections, now):
        return self.store.run_write(seed_corrections, list(corrections), now)

    def latest_versions(self):
        return self.store.run_read(latest_versions)

    def version_counts(self):
        return self.store.run_read(version_counts)

    def is_held(self, name, language):
        return self.store.run_read(is_held, name, language)

    def add_model(self, model, trained_through, activate, now):
        return self.store.run_write(add_model, model, trained_through, activate, now)

    def set_active(self, name, language, on, by, version, now):
        return self.store.run_write(set_active, name, language, on, by, version, now)

    def active_models(self):
        return self.store.run_read(active_models)

    def model_versions(self):
        return self.store.run_read(model_versions)

    def sentiment_sources(self, topic, latest):
        return self.store.run_read(sentiment_sources, topic, latest)

    def count_posts(self):
        return self.store.run_read(count_posts)

    def scored_posts(self, after, limit):
        return self.store.run_read(scored_posts, after, limit)

    def rescore(self, changes):
        # The posts store writes them: it keeps the statistics' rollups in step.
        return self.store.update_scores(list(changes))
