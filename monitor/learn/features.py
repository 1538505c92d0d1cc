"""
What a learned model sees of a post: its words, word pairs, the character
n-grams of its words, and VADER's four scores.

Features are named strings ("w:refund", "b:charged twice", "c:fund",
"v:compound"), not hashes, so a stored model says in plain words what it
weighs; a training run keeps only the features seen in at least two posts,
which bounds the model's size.  Text features are 0/1 and scaled to unit
length per post, so a long post does not outweigh a short one.
"""

from __future__ import annotations

import math
import re
from typing import Mapping

from monitor.analysis.classify import normalize

__all__ = ["CHAR_NGRAMS", "features", "vader_features"]

#: Lengths of the character n-grams taken inside each padded word.
CHAR_NGRAMS = (3, 4, 5)

_URL_RE = re.compile(r"(?:https?://|www\.)\S+")
_MENTION_RE = re.compile(r"(?<!\w)@\w+")
_NUMBER_RE = re.compile(r"\d+(?:[.,]\d+)*")
# Words (with an inner apostrophe), hashtags, runs of ! or ?, and any other
# single non-space character (emoji, symbols).
_TOKEN_RE = re.compile(r"#?\w+(?:'\w+)*|[!?]+|[^\w\s]")


def tokens(text: str) -> list[str]:
    """
    The words of a post's plain text, folded like the word lists
    (L{monitor.analysis.classify.normalize}); links, @mentions and numbers
    become placeholders, since which ones appear says little.
    """
    text = normalize(text)
    text = _URL_RE.sub(" _url_ ", text)
    text = _MENTION_RE.sub(" _user_ ", text)
    text = _NUMBER_RE.sub("0", text)
    return _TOKEN_RE.findall(text)


def vader_features(scores: Mapping[str, float]) -> dict[str, float]:
    """
    VADER's scores as features; the compound is split into its positive and
    negative parts so a linear model can weigh each side differently.
    """
    compound = float(scores["compound"])
    return {
        "v:compound": compound,
        "v:compound+": max(compound, 0.0),
        "v:compound-": max(-compound, 0.0),
        "v:pos": float(scores["pos"]),
        "v:neu": float(scores["neu"]),
        "v:neg": float(scores["neg"]),
    }


def features(text: str, scores: Mapping[str, float]) -> dict[str, float]:
    """
    The features of one post: C{text} is its plain text, C{scores} VADER's
    C{compound}, C{pos}, C{neu} and C{neg} for it.  Deterministic: the same
    input gives the same dict, in the same order, everywhere.
    """
    words = tokens(text)
    names: dict[str, None] = {}
    previous = "^"
    for word in words:
        names["w:" + word] = None
        names[f"b:{previous} {word}"] = None
        previous = word
        if word[0].isalnum() or word[0] == "#":
            padded = f" {word} "
            for n in CHAR_NGRAMS:
                for i in range(len(padded) - n + 1):
                    names["c:" + padded[i : i + n]] = None
    if words:
        names[f"b:{previous} $"] = None
    out: dict[str, float] = {}
    if names:
        value = 1.0 / math.sqrt(len(names))
        out = dict.fromkeys(names, value)
    out.update(vader_features(scores))
    return out
