"""
People's corrections of posts: the sentiment a post really has and the
labels that do or do not apply to it, with who said so and when.

One record per post holds the latest word on it: a correction merges into
the one before, and deleting it is the undo.  The learned models
(L{monitor.learn.learner}) are trained on these joined with the stored
posts' text.  They are kept by an L{monitor.store.interfaces.ILearningStore}.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
from typing import Any, Mapping, Optional

from monitor.model import SENTIMENTS, iso8601
from monitor.store.interfaces import Correction
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
            raise BadParameter(
                f"labels.{str(name)[:40]}",
                "a label name is a lower-case letter, then letters, digits or _ (40 at most)",
            )
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


def _row(c: Correction) -> dict[str, Any]:
    """A correction as the API shows it."""
    return {
        "post_id": c.post_id,
        "sentiment": c.sentiment,
        "labels": dict(c.labels),
        "by": c.by,
        "created_at": iso8601(c.created_at) if c.created_at is not None else None,
        "updated_at": iso8601(c.updated_at) if c.updated_at is not None else None,
        "text": c.text,
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
        cells = [
            r["post_id"],
            r["sentiment"] or "",
            yes,
            no,
            r["by"],
            r["created_at"],
            r["updated_at"],
            r["text"] or "",
        ]
        writer.writerow(
            [("'" + c) if isinstance(c, str) and c[:1] in ("=", "+", "-", "@", "\t", "\r") else c for c in cells]
        )
    return out.getvalue().encode("utf-8")


class Feedback:
    """
    The corrections, kept by C{learning} (an
    L{monitor.store.interfaces.ILearningStore}).  C{listeners} (the
    learner) hear of every change, so training can follow.
    """

    def __init__(self, learning, reactor) -> None:
        self.learning = learning
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
        merged = await self.learning.put_correction(uid, sentiment, given, labels, by, self.reactor.seconds())
        self.notify()
        return None if merged is None else _row(merged)

    async def get(self, uid: str) -> Optional[dict]:
        found = await self.learning.correction(uid)
        return None if found is None else _row(found)

    async def many(self, uids: list[str]) -> dict[str, dict]:
        """
        The corrections of these posts, by post id (those that have one).
        """
        return {uid: _row(c) for uid, c in (await self.learning.corrections(list(uids))).items()}

    async def delete(self, uid: str) -> bool:
        """
        Undo: forget the correction of a post.
        """
        deleted = await self.learning.delete_correction(uid)
        if deleted:
            self.notify()
        return deleted

    async def page(self, limit: int, cursor: Optional[str] = None, by: Optional[str] = None,
                   label: Optional[str] = None) -> tuple[list[dict], Optional[str]]:  # fmt: skip
        """
        The corrections, latest change first, a page at a time.
        """
        after = _decode_cursor(cursor) if cursor else None
        found, more = await self.learning.correction_page(limit, after, by, label)
        following = _encode_cursor(found[-1].updated_at, found[-1].post_id) if more and found else None
        return [_row(c) for c in found], following

    def labelled(self):
        """
        Every correction with its post's text and language, oldest first:
        what the learner trains on.
        """
        return self.learning.training_rows()

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
