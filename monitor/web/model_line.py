"""
The dashboard's line on who labels the sentiment: the active learned
model (its version and cross-validated macro-F1 against VADER's on the
same corrected posts) and how many of the latest posts it labelled, VADER
labelled, or were left unscored (other languages).
"""

from __future__ import annotations

from typing import Any, Optional

from monitor.learn.learner import ENGLISH
from monitor.learn.linear import SENTIMENT
from monitor.web.queries import _scope

__all__ = ["LATEST", "sentiment_line"]

#: The latest posts counted: enough to show the split, cheap at any store size.
LATEST = 5000


async def sentiment_line(learner, store, topic: Optional[str]) -> dict[str, Any]:
    """
    C{model} (version, C{macro_f1}, C{baseline_macro_f1}, C{examples}) or
    C{None}, and C{counts}: the latest posts (of C{topic}) by whose answer
    their sentiment is (C{model}, C{vader}, C{unscored}).
    """
    model = learner.active.get((SENTIMENT, ENGLISH))
    counts = await store.run_read(_counts, topic)
    out: dict[str, Any] = {"model": None, "counts": counts, "latest": sum(counts.values())}
    if model is not None:
        e = model.evaluation
        out["model"] = {"version": model.version, "macro_f1": e.get("macro_f1"),
                        "baseline_macro_f1": e.get("baseline_macro_f1"), "examples": model.examples}  # fmt: skip
    return out


def _counts(trans, topic: Optional[str]) -> dict[str, int]:
    tables, time, where, params = _scope(topic, None, None)
    trans.execute(
        f"SELECT who, count(*) FROM (SELECT coalesce(p.sentiment_by, 'vader') AS who FROM {tables} WHERE {where} "
        f"ORDER BY {time} DESC LIMIT ?) GROUP BY who",
        (*params, LATEST),
    )
    out = {"model": 0, "vader": 0, "unscored": 0}
    for by, n in trans.fetchall():
        key = "model" if by.startswith("model:") else by
        out[key] = out.get(key, 0) + n
    return out
