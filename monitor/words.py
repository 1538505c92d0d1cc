"""
Words as every part of the monitor compares them: one normalisation, one
tokenizer, one notion of "one edit away".  The matching rules built on them
are described in L{monitor.match}.
"""

from __future__ import annotations

import re
import unicodedata
from typing import NamedTuple

__all__ = ["deletions", "language_key", "normalize", "scan", "token_spans", "tokenize", "within_one_edit"]

#: Unicode categories removed by L{normalize}: combining marks, which carry
#: the accents after NFKD, and invisible format characters such as the soft
#: hyphen, which would otherwise split or disguise a word.
_DROPPED_CATEGORIES = frozenset({"Mn", "Mc", "Me", "Cf"})

#: Kept although it is a format character: some scripts separate words with
#: it, so it must keep separating tokens.
_ZERO_WIDTH_SPACE = "\u200b"

#: Letters that look like apostrophes; as letters they would glue C{acme's}
#: into one token, so they become a plain apostrophe.
_APOSTROPHES = str.maketrans({"\u02bc": "'", "\u02bb": "'", "\u02bd": "'"})

#: A token, with the C{#} or C{@} before it when that is not glued to a word
#: character (as in an e-mail address).
TOKEN = re.compile(r"(?:(?<!\w)([#@]))?(\w+)")


#: Terms at least this long (after normalisation) are fuzzy-matched.
FUZZY_MIN_TERM = 5
#: Tokens shorter than this are never fuzzy-matched.
FUZZY_MIN_TOKEN = 4

_UNKNOWN_LANGUAGES = frozenset({"", "und"})


def normalize(text: str) -> str:
    """
    Fold C{text} for comparison: NFKD, combining marks dropped, case folded.

    Everything that compares words (matching, statistics, highlighting) uses
    this so that they agree on what "the same word" is.
    """
    if text.isascii():
        return text.lower()
    # Casefolding can produce new composed or compatibility characters and
    # NFKD can produce upper case (Roman numerals), hence both twice.
    folded = unicodedata.normalize("NFKD", text).casefold()
    folded = unicodedata.normalize("NFKD", folded)
    category = unicodedata.category
    return "".join(c for c in folded if c == _ZERO_WIDTH_SPACE or category(c) not in _DROPPED_CATEGORIES).translate(
        _APOSTROPHES
    )


class _Token(NamedTuple):
    word: str
    #: C{"#"}, C{"@"} or C{""}.
    sigil: str


def scan(normalized: str) -> list[_Token]:
    """
    Split already normalised text into tokens.
    """
    return [_Token(m[2], m[1] or "") for m in TOKEN.finditer(normalized)]


def tokenize(text: str) -> list[str]:
    """
    Normalise C{text} and split it into the tokens the matcher sees, with
    hashtags and handles keeping their C{#}/C{@} (C{["#acme", "is", "down"]}),
    so that statistics count words the way topics match them.
    """
    return [t.sigil + t.word for t in scan(normalize(text))]


def deletions(word: str) -> set[str]:
    """
    Every string one deletion away from C{word}: the neighbourhood used by
    the symmetric-delete index.
    """
    return {word[:i] + word[i + 1 :] for i in range(len(word))}


def within_one_edit(a: str, b: str) -> bool:
    """
    Whether C{a} and C{b} are at most one insertion, deletion, substitution
    or adjacent transposition apart.  The symmetric-delete index also yields
    some pairs two edits apart, so every candidate goes through this.
    """
    if a == b:
        return True
    la, lb = len(a), len(b)
    if abs(la - lb) > 1:
        return False
    i = 0
    shorter = min(la, lb)
    while i < shorter and a[i] == b[i]:
        i += 1
    if la == lb:
        if a[i + 1 :] == b[i + 1 :]:
            return True
        return i + 1 < la and a[i] == b[i + 1] and a[i + 1] == b[i] and a[i + 2 :] == b[i + 2 :]
    if la > lb:
        return a[i + 1 :] == b[i:]
    return a[i:] == b[i + 1 :]


def language_key(lang: str) -> str:
    """
    A language tag as compared: C{pt_BR} and C{PT-br} are C{pt-br}.
    """
    return lang.strip().replace("_", "-").lower()


def token_spans(text: str) -> list[tuple[int, int]]:
    """
    Where each token of C{scan(normalize(text))} sits in C{text} itself
    (start, end), its C{#}/C{@} included: what a page highlights.  Empty if
    normalising changed the text in a way that cannot be mapped back.
    """
    if text.isascii():
        return [(m.start(1) if m[1] else m.start(2), m.end()) for m in TOKEN.finditer(text.lower())]
    pieces, owner = [], []
    for i, c in enumerate(text):
        n = normalize(c)
        pieces.append(n)
        owner.extend([i] * len(n))
    normalized = "".join(pieces)
    if normalized != normalize(text):
        return []
    spans = []
    for m in TOKEN.finditer(normalized):
        end = owner[m.end() - 1] + 1
        # Take along the accents that normalising dropped.
        while end < len(text) and not pieces[end]:
            end += 1
        spans.append((owner[m.start(1) if m[1] else m.start(2)], end))
    return spans
