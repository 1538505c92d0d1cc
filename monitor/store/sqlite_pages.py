"""
SQL shared by the SQLite reads that pages and dashboards make over the
stored posts.
"""

from __future__ import annotations

from typing import Optional

__all__ = ["scope"]


def scope(topic: Optional[str], since: Optional[float], until: Optional[float]):
    """
    C{(tables, time column, where, params)} selecting the posts (of
    C{topic}) in C{[since, until)}: by post time over every post, by the
    time the post was filed under the topic otherwise.
    """
    if topic is None:
        tables, time, where, params = "posts AS p", "p.created_at", [], []
    else:
        tables = "post_topics AS s JOIN posts AS p ON p.id = s.post_id"
        time, where, params = "s.created_at", ["s.topic = ?"], [topic]
    if since is not None:
        where.append(f"{time} >= ?")
        params.append(float(since))
    if until is not None:
        where.append(f"{time} < ?")
        params.append(float(until))
    return tables, time, " AND ".join(where) or "1", params
