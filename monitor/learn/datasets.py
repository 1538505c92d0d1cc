"""
Readers for the public human-labelled posts the quality report and the
tests measure against (see ../shared/data/README.md), turned into
L{Example}s scored by the built-in analysis.
"""

from __future__ import annotations

import csv
import pathlib
from typing import Sequence

from monitor.analysis import Classifier, analyze_texts, plain_text
from monitor.learn.train import Example
from monitor.model import Analysis

__all__ = [
    "HUMAN_NEGATIVE",
    "HUMAN_POSITIVE",
    "complaints",
    "human_sentiment",
    "vader_ground_truth",
]

#: A mean human rating (-4 .. +4) at or above this is positive ...
HUMAN_POSITIVE = 0.5
#: ... at or below this negative, and neutral in between.
HUMAN_NEGATIVE = -0.5


def human_sentiment(mean: float) -> str:
    """
    The three-way class of a mean human rating on VADER's -4 .. +4 scale.
    """
    if mean >= HUMAN_POSITIVE:
        return "positive"
    if mean <= HUMAN_NEGATIVE:
        return "negative"
    return "neutral"


def vader_scores(a: Analysis) -> dict[str, float]:
    return {"compound": a.compound, "pos": a.pos, "neu": a.neu, "neg": a.neg}


def _scored(texts: Sequence[str]) -> tuple[list[str], list[Analysis]]:
    plain = [plain_text(t) for t in texts]
    return plain, analyze_texts(plain, Classifier())


def complaints(path: pathlib.Path, label: str = "complaint") -> list[tuple[str, Example, Analysis]]:
    """
    The complaints corpus (Preoţiuc-Pietro et al., 2019) as (domain,
    example, built-in analysis): the class is C{yes} for a complaint, the
    baseline the built-in C{label}'s answer.
    """
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    plain, analyses = _scored([r[1] for r in rows])
    out = []
    for (tweet_id, _, complaint, domain), text, a in zip(rows, plain, analyses):
        example = Example(
            key=tweet_id,
            text=text,
            vader=vader_scores(a),
            label="yes" if complaint == "1" else "no",
            baseline="yes" if label in a.labels else "no",
        )
        out.append((domain, example, a))
    return out


def vader_ground_truth(path: pathlib.Path) -> list[tuple[float, Example]]:
    """
    Hutto and Gilbert's tweets (ICWSM 2014) as (mean human rating,
    example): the class is L{human_sentiment} of the mean, the baseline
    VADER's own three-way answer.
    """
    rows = [line.split("\t", 2) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    plain, analyses = _scored([r[2] for r in rows])
    out = []
    for (key, mean, _), text, a in zip(rows, plain, analyses):
        out.append(
            (
                float(mean),
                Example(
                    key=key, text=text, vader=vader_scores(a), label=human_sentiment(float(mean)), baseline=a.sentiment
                ),
            )
        )
    return out
