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

__all__ = ["LATEST", "sentiment_line"]

#: The latest posts counted: enough to show the split, cheap at any store size.
LATEST = 5000


async def sentiment_line(learner, learning, topic: Optional[str]) -> dict[str, Any]:
    """
    C{model} (version, C{macro_f1}, C{baseline_macro_f1}, C{examples}) or
    C{None}, and C{counts}: the latest posts (of C{topic}) by whose answer
    their sentiment is (C{model}, C{vader}, C{unscored}), as C{learning}
    (an L{monitor.store.interfaces.ILearningStore}) counts them.
    """
    model = learner.active.get((SENTIMENT, ENGLISH))
    counts = await learning.sentiment_sources(topic, LATEST)
    out: dict[str, Any] = {"model": None, "counts": counts, "latest": sum(counts.values())}
    if model is not None:
        e = model.evaluation
        out["model"] = {"version": model.version, "macro_f1": e.get("macro_f1"),
                        "baseline_macro_f1": e.get("baseline_macro_f1"), "examples": model.examples}  # fmt: skip
    return out
