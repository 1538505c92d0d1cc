"""
People's corrections of posts: the sentiment a post really has and the
labels that do or do not apply to it, with who said so and when.

One row per post (table C{post_feedback}) holds the latest word on it: a
correction merges into the one before, and deleting it is the undo.  The
learned models (L{monitor.learn.learner}) are trained on these rows joined
with the stored posts' text.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
from typing import Any, Mapping, Optional

from monitor.model import SENTIMENTS, iso8601
from monitor.web.params import BadParameter

__all__ = ["Feedback", "LABEL_NAME", "MAX_LABELS", "check_feedback", "feedback_csv"]

#: A label a team defines by example: lower case, digits and underscores.
LABEL_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")

#: Most labels one correction may name.
MAX_LABELS = 20

#: Columns of the CSV export, in order.
CSV_COLUMNS = ("post_id", "sentiment", "labels_yes", "labels_no", "by", "created_at", "updated_at", "text")


def check_feedback(body: Any) -> tuple[Optional[str], bool, dict[str, Optional[bool]]]:
    """
    Check a correction C{{"sentiment": "negative", "labels": {"complaint":
    true}}}: the sentiment (C{None} clears it), whether it was given, and
    the labels (C{true} applies, C{false} does not apply, C{null} forgets
    the earlier word on that label).

    @raise BadParameter: naming the bad field (C{sentiment}, C{labels},
        C{labels.NAME}, or C{body}).
    """
    if not isinstance(body, dict):
        raise BadParameter("body", "must be a JSON object")
    unknown = sorted(set(body) - {"sentiment", "labels"})
    if unknown:
        raise BadParameter(unknown[0], "unknown field; give sentiment and/or labels")
    if not body:
        raise BadParameter("body", "give sentiment and/or labels")
    given = "sentiment" in body
    sentiment = body.get("sentiment")
    if sentiment is not None and sentiment not in SENTIMENTS:
        raise BadParameter("sentiment", "must be one of " + ", ".join(SENTIMENTS) + " (or null to clear it)")
    labels = body.get("labels", {})
    if not isinstance(labels, dict):
        raise BadParameter("labels", 'must be an object such as {"complaint": true}')
    if len(labels) > MAX_LABELS:
        raise BadParameter("labels", f"at most {MAX_LABELS} labels at once")
    for name, value in labels.items():
        if not isinstance(name, str) or not LABEL_NAME.fullmatch(name):
            raise BadParameter(f"labels.{str(name)[:40]}", "a label name is a lower-case letter, then letters, digits or _ (40 at most)")
        if value is not None and not isinstance(value, bool):
            raise BadParameter(f"labels.{name}", "must be true, false or null")
    return sentiment, given, labels


def _encode_cursor(updated_at: float, uid: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([updated_at, uid]).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, uid = json.loads(raw)
        return float(at), str(uid)
    except (ValueError, TypeError):
        raise BadParameter("cursor", "not a cursor this API gave") from None


def _row(row) -> dict[str, Any]:
    uid, sentiment, labels, by, created_at, updated_at, text = row
    return {
        "post_id": uid,
        "sentiment": sentiment,
        "labels": json.loads(labels),
        "by": by,
        "created_at": iso8601(created_at),
        "updated_at": iso8601(updated_at),
        "text": text,
    }


def feedback_csv(rows: list[dict[str, Any]], header: bool = True) -> bytes:
    """
    Corrections as CSV; a cell that a spreadsheet would run as a formula is
    quoted with a leading apostrophe (post text is hostile).
    """
    out = io.StringIO()
    writer = csv.writer(out)
    if header:
        writer.writerow(CSV_COLUMNS)
    for r in rows:
        yes = " ".join(sorted(k for k, v in r["labels"].items() if v))
        no = " ".join(sorted(k for k, v in r["labels"].items() if not v))
        cells = [r["post_id"], r["sentiment"] or "", yes, no, r["by"], r["created_at"], r["updated_at"], r["text"] or ""]
        writer.writerow([("'" + c) if isinstance(c, str) and c[:1] in ("=", "+", "-", "@", "\t", "\r") else c for c in cells])
    return out.getvalue().encode("utf-8")


class Feedback:
    """
    The corrections in the store.  C{changed} callbacks (the learner) hear
    of every change, so training can follow.
    """

    def __init__(self, store, reactor) -> None:
        self.store = store
        self.reactor = reactor
        self.listeners: list = []

    def notify(self) -> None:
        """Tell the listeners (the learner) that the corrections changed."""
        for listener in list(self.listeners):
            listener()

    async def put(self, uid: str, body: Any, by: str) -> Optional[dict]:
        """
        Merge a correction into the post's; C{None} if there is no such
        post.  A correction left with neither sentiment nor label is
        removed.
        """
        sentiment, given, labels = check_feedback(body)
        result = await self.store.run_write(self._put, uid, sentiment, given, labels, by, self.reactor.seconds())
        self.notify()
        return result

    @staticmethod
    def _put(trans, uid, sentiment, given, labels, by, now):
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
            return {"post_id": uid, "sentiment": None, "labels": {}, "by": by, "created_at": None, "updated_at": None,
                    "text": post[0]}  # fmt: skip
        labels_json = json.dumps(dict(sorted(merged.items())))
        trans.execute(
            "INSERT INTO post_feedback (post_uid, sentiment, labels, by, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (post_uid) DO UPDATE SET sentiment = excluded.sentiment, labels = excluded.labels, "
            "by = excluded.by, updated_at = excluded.updated_at",
            (uid, new_sentiment, labels_json, by, created, now),
        )
        return _row((uid, new_sentiment, labels_json, by, created, now, post[0]))

    async def get(self, uid: str) -> Optional[dict]:
        return await self.store.run_read(self._get, uid)

    @staticmethod
    def _get(trans, uid):
        trans.execute(
            "SELECT f.post_uid, f.sentiment, f.labels, f.by, f.created_at, f.updated_at, p.text "
            "FROM post_feedback f LEFT JOIN posts p ON p.uid = f.post_uid WHERE f.post_uid = ?",
            (uid,),
        )
        row = trans.fetchone()
        return _row(row) if row else None

    async def many(self, uids: list[str]) -> dict[str, dict]:
        """
        The corrections of these posts, by post id (those that have one).
        """
        return await self.store.run_read(self._many, list(uids))

    @staticmethod
    def _many(trans, uids):
        out = {}
        for i in range(0, len(uids), 500):
            part = uids[i : i + 500]
            trans.execute(
                "SELECT f.post_uid, f.sentiment, f.labels, f.by, f.created_at, f.updated_at, NULL FROM post_feedback f "
                f"WHERE f.post_uid IN ({', '.join('?' * len(part))})",
                part,
            )
            out.update((row[0], _row(row)) for row in trans.fetchall())
        return out

    async def delete(self, uid: str) -> bool:
        """
        Undo: forget the correction of a post.
        """
        deleted = await self.store.run_write(self._delete, uid)
        if deleted:
            self.notify()
        return deleted

    @staticmethod
    def _delete(trans, uid):
        trans.execute("DELETE FROM post_feedback WHERE post_uid = ?", (uid,))
        return trans.rowcount > 0

    async def page(self, limit: int, cursor: Optional[str] = None, by: Optional[str] = None,
                   label: Optional[str] = None) -> tuple[list[dict], Optional[str]]:  # fmt: skip
        """
        The corrections, latest change first, a page at a time.
        """
        after = _decode_cursor(cursor) if cursor else None
        return await self.store.run_read(self._page, limit, after, by, label)

    @staticmethod
    def _page(trans, limit, after, by, label):
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
        sql = (
            "SELECT f.post_uid, f.sentiment, f.labels, f.by, f.created_at, f.updated_at, p.text "
            "FROM post_feedback f LEFT JOIN posts p ON p.uid = f.post_uid"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY f.updated_at DESC, f.post_uid DESC LIMIT ?"
        )
        trans.execute(sql, (*params, limit + 1))
        rows = trans.fetchall()
        following = None
        if len(rows) > limit:
            rows = rows[:limit]
            following = _encode_cursor(rows[-1][5], rows[-1][0])
        return [_row(r) for r in rows], following

    async def labelled(self) -> list[dict]:
        """
        Every correction with its post's text and language, oldest first:
        what the learner trains on.
        """
        return await self.store.run_read(self._labelled)

    @staticmethod
    def _labelled(trans):
        trans.execute(
            "SELECT f.post_uid, f.sentiment, f.labels, f.updated_at, p.text, p.lang FROM post_feedback f "
            "JOIN posts p ON p.uid = f.post_uid ORDER BY f.created_at, f.post_uid"
        )
        return [
            {"uid": uid, "sentiment": s, "labels": json.loads(labels), "updated_at": at, "text": text, "lang": lang}
            for uid, s, labels, at, text, lang in trans.fetchall()
        ]

    def count_by(self, rows: list[Mapping]) -> dict[str, int]:
        """
        How many examples each model would have: C{sentiment} and each label.
        """
        counts: dict[str, int] = {}
        for r in rows:
            if r["sentiment"]:
                counts["sentiment"] = counts.get("sentiment", 0) + 1
            for name in r["labels"]:
                counts[name] = counts.get(name, 0) + 1
        return counts
