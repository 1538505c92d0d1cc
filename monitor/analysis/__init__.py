"""
The analysis stage: sentiment and labels for a batch of posts.

L{analyze_texts} is a pure function of the texts and the classifier's word
lists, so a batch gives the same results in a thread on the hub
(L{monitor.analysis.local.LocalAnalyzer}) and on a remote node; L{versions}
lets the hub check that a node would score the same way.
"""

from __future__ import annotations

import hashlib
import threading
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Optional, Sequence

from monitor.analysis.classify import Classifier
from monitor.analysis.text import plain_text
from monitor.model import NEGATIVE, NEUTRAL, POSITIVE, Analysis

__all__ = [
    "Classifier",
    "MAX_ANALYZED_CHARS",
    "MAX_MARKUP_CHARS",
    "analyze_texts",
    "plain_text",
    "scorer",
    "sentiment_label",
    "versions",
]

#: VADER's own thresholds on the compound score (Hutto and Gilbert, 2014).
POSITIVE_COMPOUND = 0.05
NEGATIVE_COMPOUND = -0.05

#: The most characters of a post's plain text that are analysed: a longer
#: post is scored and labelled on its first C{MAX_ANALYZED_CHARS}
#: characters.  It bounds what one post can cost (X allows 25,000
#: characters, a Mastodon instance as many as it likes, a JSON line up to a
#: MiB), and because the cut is part of L{analyze_texts}, the hub and every
#: node cut at the same place and agree.
MAX_ANALYZED_CHARS = 25_000

#: The most characters of a post's text (markup included) that are made
#: plain text: stripping 1 MiB of HTML costs a tenth of a second, and four
#: characters of markup for each one of text is more than any source sends.
MAX_MARKUP_CHARS = 4 * MAX_ANALYZED_CHARS

_scorer = None
_scorer_lock = threading.Lock()


def scorer():
    """
    The VADER scorer of this process, chosen once: the fast one if it
    passes its check against vaderSentiment, else vaderSentiment (see
    L{monitor.analysis.vader.checked_scorer}).  Every path that scores goes
    through here.
    """
    # Created on first use, not at import: it reads two lexicon files, which
    # neither the web UI nor the tests that never score need.  The lock
    # stops two pool threads from both building one.
    global _scorer
    if _scorer is None:
        with _scorer_lock:
            if _scorer is None:
                from monitor.analysis.vader import checked_scorer

                _scorer = checked_scorer()
    return _scorer


def sentiment_label(compound: float) -> str:
    """
    The sentiment label VADER's authors recommend for a compound score.
    """
    if compound >= POSITIVE_COMPOUND:
        return POSITIVE
    if compound <= NEGATIVE_COMPOUND:
        return NEGATIVE
    return NEUTRAL


def analyze_texts(texts: Sequence[str], classifier: Classifier) -> list[Analysis]:
    """
    Score and label each text.  Pure and CPU-bound: call it off the reactor
    thread.
    """
    polarity_scores = scorer().polarity_scores
    results = []
    for text in texts:
        if len(text) > MAX_MARKUP_CHARS:
            text = text[:MAX_MARKUP_CHARS]
        plain = plain_text(text)
        if len(plain) > MAX_ANALYZED_CHARS:
            plain = plain[:MAX_ANALYZED_CHARS]
        scores = polarity_scores(plain)
        compound = scores["compound"]
        results.append(
            Analysis(
                compound=compound,
                pos=scores["pos"],
                neu=scores["neu"],
                neg=scores["neg"],
                sentiment=sentiment_label(compound),
                labels=classifier.labels(plain, compound),
            )
        )
    return results


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def versions() -> dict:
    """
    What decides the scores, so the hub can refuse a node that would score
    differently: the vaderSentiment version, hashes of its two lexicon files
    and a hash of our own text and rule code (any edit to those modules
    changes it, which errs on the side of caution).
    """
    return dict(_versions())


@lru_cache(maxsize=None)
def _versions() -> dict:
    import vaderSentiment

    package = Path(vaderSentiment.__file__).resolve().parent
    here = Path(__file__).resolve().parent
    rules = hashlib.sha256()
    for name in ("text.py", "classify.py", "vader.py", "__init__.py"):
        rules.update((here / name).read_bytes())
    return {
        "vaderSentiment": _distribution_version("vaderSentiment"),
        "vader_lexicon_sha256": _sha256(package / "vader_lexicon.txt"),
        "emoji_lexicon_sha256": _sha256(package / "emoji_utf8_lexicon.txt"),
        "rules_sha256": rules.hexdigest(),
    }


def _distribution_version(name: str) -> Optional[str]:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
