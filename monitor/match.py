"""
Topic matching: which tracked topics does a post mention?

A L{Matcher} is compiled once from the topics; every post is then normalised
and tokenised once and its tokens are looked up in dict indexes, so the cost of
a post depends on its length, not on how many topics are tracked.  To change
the topics, build a new L{Matcher}.

Rules:

* B{Case and accents do not matter.}  Terms and text are normalised alike
  (L{normalize}): Unicode NFKD, combining marks dropped, case folded.
  C{Café} matches C{cafe}, C{ACME} matches C{acme}, full-width C{ＡＣＭＥ}
  matches too.  In scripts that write vowels as combining marks (Devanagari,
  Thai) or kana voicing marks (Japanese) this makes matching a little looser.
* B{Whole words only.}  Text is split into tokens: runs of letters, digits and
  C{_} (C{_} joins, as it does in handles and hashtags).  Everything else,
  apostrophes and hyphens included, separates tokens.  So C{acme} matches
  C{Acme's}, C{ACME!} and C{acme.com}, but not C{acmeville}, C{superacme} or
  C{acme_cloud}.  Scripts written without spaces (Chinese, Japanese, Thai)
  only match a term that is a whole run of characters.
* B{Hashtags and handles.}  A C{#} or C{@} directly before a token, and not
  after a letter or digit, makes it a hashtag or a handle (so an e-mail address
  C{info@acme.com} holds the plain words C{info}, C{acme}, C{com}).
* A plain word term (C{acme}) also matches the word as a hashtag or handle:
  C{#acme}, C{@acme}; never C{#acmeville}.
* A C{#acme} term matches only the hashtag C{#acme}.
* An C{@acmesupport} term matches only the handle C{@acmesupport}, also with
  a domain after it (C{@acmesupport@mastodon.social},
  C{@acmesupport.bsky.social}); never C{@acmesupport2}.
* B{Phrases.}  A term of several words, quoted (C{"acme cloud"}) or not,
  matches when its tokens are consecutive in the post's tokens.  Punctuation
  and hashtag or handle marks between them do not matter: C{acme cloud}
  matches C{Acme  Cloud}, C{acme-cloud} and C{Acme. Cloud}.  Only the first
  word's C{#}/C{@} counts; C{acme-cloud} as a term is the phrase
  C{acme cloud}.
* B{Variants} (known misspellings) match exactly like terms; they are not
  themselves fuzzy-matched.
* B{Fuzzy} (C{fuzzy = true}): a single plain word term of 5 or more
  characters (after normalisation) also matches a word or hashtag one edit
  away: one letter inserted, deleted, replaced, or two neighbours swapped
  (C{globex}: C{globbex}, C{glbex}, C{glovex}, C{golbex}).  Handles, hashtag
  terms, phrases and variants are never fuzzy; tokens under 4 characters are
  never fuzzy-matched.
* B{Exclusions}: words and phrases with the same syntax as terms; if any
  occurs in the post, the topic does not match it.
* B{Languages}: if the topic lists any, a post tagged with a language matches
  only if its primary subtag (C{en-GB} -> C{en}) or its whole tag is listed.
  A post with no language (C{None}, empty, or C{und}) still matches: many
  sources do not tag languages, and dropping those posts would hide most of
  them.
* B{Sources}: if the topic lists any, only posts from those sources match.
* A topic with no terms and no variants matches nothing.

The matched topic names come back in the order the topics were given.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Iterable, NamedTuple, Optional

from monitor.model import Post, Topic

__all__ = ["Matcher", "normalize", "tokenize"]

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
_TOKEN = re.compile(r"(?:(?<!\w)([#@]))?(\w+)")

_QUOTES = "\"'\u201c\u201d\u2018\u2019\u00ab\u00bb"

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
    return "".join(
        c
        for c in folded
        if c == _ZERO_WIDTH_SPACE or category(c) not in _DROPPED_CATEGORIES
    ).translate(_APOSTROPHES)


class _Token(NamedTuple):
    word: str
    #: C{"#"}, C{"@"} or C{""}.
    sigil: str


def _scan(normalized: str) -> list[_Token]:
    """
    Split already normalised text into tokens.
    """
    return [_Token(m[2], m[1] or "") for m in _TOKEN.finditer(normalized)]


def tokenize(text: str) -> list[str]:
    """
    Normalise C{text} and split it into the tokens the matcher sees, with
    hashtags and handles keeping their C{#}/C{@} (C{["#acme", "is", "down"]}),
    so that statistics count words the way topics match them.
    """
    return [t.sigil + t.word for t in _scan(normalize(text))]


def _deletions(word: str) -> set[str]:
    """
    Every string one deletion away from C{word}: the neighbourhood used by
    the symmetric-delete index.
    """
    return {word[:i] + word[i + 1 :] for i in range(len(word))}


def _within_one_edit(a: str, b: str) -> bool:
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
        return (
            i + 1 < la
            and a[i] == b[i + 1]
            and a[i + 1] == b[i]
            and a[i + 2 :] == b[i + 2 :]
        )
    if la > lb:
        return a[i + 1 :] == b[i:]
    return a[i:] == b[i + 1 :]


def _parse_term(term: str) -> list[_Token]:
    """
    The tokens of a term.  Quotes around a phrase are optional, so they are
    simply stripped; the term then goes through the same tokenizer as posts,
    which is what makes the two agree.
    """
    return _scan(normalize(term.strip().strip(_QUOTES)))


def _language_key(lang: str) -> str:
    return lang.strip().replace("_", "-").lower()


class _Entry(NamedTuple):
    #: The tokens after the first one (empty for a single word).
    rest: tuple[str, ...]
    topic: int
    veto: bool


class Matcher:
    """
    Assigns posts to topics.  All the work happens here in the constructor;
    a matcher is immutable, so it can be swapped atomically when topics
    change.
    """

    def __init__(self, topics: Iterable[Topic]) -> None:
        self.topics: tuple[Topic, ...] = tuple(topics)
        # First token, prefixed with "#"/"@" for hashtag and handle terms,
        # to the terms and exclusions starting with it.
        index: dict[str, set[_Entry]] = {}
        # Fuzzy term and its deletions to (term, topic).
        fuzzy: dict[str, set[tuple[str, int]]] = {}
        self._languages: list[Optional[frozenset[str]]] = []
        self._sources: list[Optional[frozenset[str]]] = []
        for number, topic in enumerate(self.topics):
            self._languages.append(
                frozenset(_language_key(lang) for lang in topic.languages)
                or None
            )
            self._sources.append(frozenset(topic.sources) or None)
            for text, veto in (
                *((t, False) for t in (*topic.terms, *topic.variants)),
                *((t, True) for t in topic.exclude),
            ):
                tokens = _parse_term(text)
                if not tokens:
                    continue
                first = tokens[0]
                rest = tuple(t.word for t in tokens[1:])
                index.setdefault(first.sigil + first.word, set()).add(
                    _Entry(rest, number, veto)
                )
            if topic.fuzzy:
                for text in topic.terms:
                    tokens = _parse_term(text)
                    if len(tokens) != 1 or tokens[0].sigil:
                        continue
                    word = tokens[0].word
                    if len(word) < FUZZY_MIN_TERM:
                        continue
                    for key in {word} | _deletions(word):
                        fuzzy.setdefault(key, set()).add((word, number))
        self._index = {k: tuple(v) for k, v in index.items()}
        self._fuzzy = {k: tuple(v) for k, v in fuzzy.items()}
        if fuzzy:
            longest = max(len(w) for v in fuzzy.values() for w, _ in v)
            self._fuzzy_lengths = range(FUZZY_MIN_TOKEN, longest + 2)
        else:
            self._fuzzy_lengths = range(0)

    def match(self, post: Post) -> tuple[str, ...]:
        """
        The names of the topics C{post} mentions, in topic order.
        """
        return self.match_text(post.text, post.lang, post.source)

    def match_text(
        self,
        text: str,
        lang: Optional[str] = None,
        source: Optional[str] = None,
    ) -> tuple[str, ...]:
        """
        The names of the topics C{text} mentions, in topic order, for a post
        in language C{lang} from source C{source}.  Separate from L{match} so
        that the topic editor can try topics on pasted text.
        """
        if not self._index or not text:
            return ()
        tokens = _scan(normalize(text))
        words = [t.word for t in tokens]
        hits: set[int] = set()
        vetoes: set[int] = set()
        index = self._index
        fuzzy = self._fuzzy
        fuzzy_lengths = self._fuzzy_lengths
        for position, (word, sigil) in enumerate(tokens):
            entries = index.get(word, ())
            if sigil:
                entries += index.get(sigil + word, ())
            for rest, topic, veto in entries:
                if rest:
                    end = position + 1 + len(rest)
                    if tuple(words[position + 1 : end]) != rest:
                        continue
                (vetoes if veto else hits).add(topic)
            if sigil != "@" and len(word) in fuzzy_lengths:
                for key in {word} | _deletions(word):
                    for term, topic in fuzzy.get(key, ()):
                        if topic not in hits and _within_one_edit(word, term):
                            hits.add(topic)
        hits -= vetoes
        if not hits:
            return ()
        names = (
            self.topics[n].name
            for n in sorted(hits)
            if self._allows(n, lang, source)
        )
        return tuple(dict.fromkeys(names))

    def _allows(
        self, number: int, lang: Optional[str], source: Optional[str]
    ) -> bool:
        """
        Whether topic C{number}'s language and source limits let the post in.
        """
        sources = self._sources[number]
        if sources is not None and source not in sources:
            return False
        languages = self._languages[number]
        if languages is None or lang is None:
            return True
        tag = _language_key(lang)
        if tag in _UNKNOWN_LANGUAGES:
            return True
        return tag in languages or tag.split("-", 1)[0] in languages
