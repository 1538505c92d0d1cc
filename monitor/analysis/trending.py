"""
Trending terms: the words and two-word phrases whose use rose most
surprisingly against the period before, as a listening tool's dashboard
shows them.

A term is counted once per post (a post repeating a word is one mention).
Left out: stop words in the post's language (the C{stop-words} package's
lists, plus a short multilingual core of function words), words of fewer
than 3 letters, links, C{@handles} and C{#hashtags} (they have their own
list), and the topic's own terms and variants, which every post of the
topic contains by definition.

Ranking is Dunning's log-likelihood ratio G² of the term's share of posts
now against its share in the baseline period: a rise from 40 to 80 of
1,000 posts is more surprising than one from 2 to 3, and a word that is
everywhere in both periods scores nothing however often it occurs.  A phrase
that carries the rise of its words replaces them ("charged twice" instead
of "charged").
"""

from __future__ import annotations

import math
import re
from collections import Counter
from functools import lru_cache
from typing import Iterable, Optional

from stop_words import LANGUAGE_MAPPING, get_stop_words
from twisted.internet.defer import ensureDeferred

from monitor.words import normalize

__all__ = ["candidates", "excluded_words", "g2", "rank", "stop_words", "top", "trending_terms"]

#: Fewest posts in the range that use a term for it to be shown.
MIN_COUNT = 3
#: Least G² for a rise to count as one: 3.84 is chance at 1 in 20 (one
#: degree of freedom), so noise between two periods is not shown.
MIN_G2 = 3.84
#: A phrase replaces its word when it accounts for this share of the
#: word's posts now.
PHRASE_SHARE = 0.6

_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")
# Phrases do not span these: a clause ends, or a link, handle or tag sits there.
_BREAK = re.compile(
    r"(?:\b[a-z][a-z0-9+.-]*://|\bwww\.)\S+|[@#]\w+(?:[.@-]\w+)*|[.!?;:,()\[\]{}\"“”|/\n]+", re.IGNORECASE
)

# Function words a phrase may not start or end with, in the languages the
# lists lack or where social posts add their own ("rt", "amp", "lol").
_CORE = frozenset(
    """
    a an the and or but if of to in on at by for from with as is are was were be been am
    it its this that these those i you he she we they me him her us them my your our their
    not no so do does did has have had will would can could should may might must just
    amp rt http https www com lol omg gonna wanna gotta im dont cant thats ive youre
    hey hi hello pls plz ya yep nope
    """.split()
)


@lru_cache(maxsize=64)
def stop_words(lang: Optional[str]) -> frozenset[str]:
    """
    The stop words for a post in C{lang} (a tag such as C{en}, C{pt-BR}):
    that language's list, or the English one for posts whose language is
    unknown or has no list (most untagged social posts are in English), and
    the core function words.  Folded
    as L{normalize} folds words.
    """
    code = (lang or "").strip().replace("_", "-").split("-")[0].lower()
    words = set(get_stop_words(LANGUAGE_MAPPING.get(code, "english")))
    words.update(_CORE)
    folded = {normalize(w.replace("’", "'")) for w in words}
    # "don't" is also written "dont" once the apostrophe is lost.
    folded.update(w.replace("'", "") for w in list(folded))
    return frozenset(folded)


def excluded_words(topics: Iterable) -> frozenset[str]:
    """
    The words of the topics' names, terms and variants (folded, without
    C{#}/C{@}, with their plural and possessive forms): what every post of
    those topics contains and so cannot be news about them.
    """
    words: set[str] = set()
    for topic in topics:
        for text in (topic.name, *topic.terms, *topic.variants):
            for word in _WORD.findall(normalize(text).replace("’", "'")):
                words.update({word, word + "s", word + "'s", word + "es"})
    return frozenset(words)


def _words(chunk: str, lang: Optional[str]) -> list[tuple[str, str, bool]]:
    """(shown form, folded form, is a stop word) of each word of a chunk."""
    stops = stop_words(lang)
    out = []
    for word in _WORD.findall(chunk):
        shown = word.lower().replace("’", "'")
        if shown.endswith("'s"):
            shown = shown[:-2]
        folded = normalize(shown)
        out.append((shown, folded, folded in stops or len(folded) < 3))
    return out


def candidates(text: str, lang: Optional[str] = None, exclude: frozenset = frozenset()) -> dict[str, str]:
    """
    The distinct terms of one post, folded form to shown form: words that
    are neither stop words nor excluded, and two-word phrases within a
    clause made of such a word and another word that is not a core
    function word ("charged twice", not "the outage").
    """
    found: dict[str, str] = {}
    for chunk in _BREAK.split(text or ""):
        words = _words(chunk, lang)
        for shown, folded, stop in words:
            if not stop and folded not in exclude:
                found.setdefault(folded, shown)
        for (s1, f1, stop1), (s2, f2, stop2) in zip(words, words[1:]):
            if stop1 and stop2 or f1 == f2 or f1 in exclude or f2 in exclude:
                continue
            if f1 in _CORE or f2 in _CORE or len(f1) < 3 or len(f2) < 3:
                continue
            found.setdefault(f"{f1} {f2}", f"{s1} {s2}")
    return found


def g2(a: int, c: int, b: int, d: int) -> float:
    """
    Dunning's log-likelihood ratio for a term used in C{a} of C{c} posts
    now and in C{b} of C{d} posts before: how surprising the difference in
    its share is (0 when the shares are equal).
    """
    total, used = c + d, a + b
    if c == 0 or d == 0:
        return 0.0
    # The 2x2 table: used / not used, now / before; observed, expected.
    cells = ((a, c * used / total), (b, d * used / total), (c - a, c * (total - used) / total),
             (d - b, d * (total - used) / total))  # fmt: skip
    return 2 * sum(o * math.log(o / e) for o, e in cells if o > 0 and e > 0)


def rank(now: Counter, posts_now: int, before: Counter, posts_before: int, shown: dict, limit: int = 10) -> list[dict]:
    """
    The rising terms, most surprising first: used in at least L{MIN_COUNT}
    posts now, in a larger share of posts than before, by more than chance
    (L{MIN_G2}).  With no
    baseline at all (a fresh start), by how many posts use them.
    """
    rising = []
    for term, a in now.items():
        if a < MIN_COUNT:
            continue
        b = before.get(term, 0)
        if posts_before and a / posts_now <= b / posts_before:
            continue
        score = g2(a, posts_now, b, posts_before) if posts_before else float(a)
        if posts_before and score < MIN_G2:
            continue
        rising.append((score, term, a, b))
    rising.sort(key=lambda r: (-r[0], -r[2], r[1]))
    # A phrase that carries its word's rise stands for it.
    chosen: list[tuple] = []
    dropped: set[str] = set()
    phrases = [r for r in rising if " " in r[1]]
    for score, term, a, b in phrases:
        for word in term.split():
            if word in now and a >= PHRASE_SHARE * now[word]:
                dropped.add(word)
    for row in rising:
        if row[1] in dropped:
            continue
        chosen.append(row)
        if len(chosen) == limit:
            break
    return [
        {"term": shown.get(term, term), "count": a, "previous": b,
         "change": None if b == 0 or not posts_before else (a / posts_now) / (b / posts_before) - 1,
         "score": round(score, 2)}
        for score, term, a, b in chosen
    ]  # fmt: skip


def top(now: Counter, shown: dict, limit: int = 10) -> list[dict]:
    """The words (not phrases) most posts use, most first."""
    words = sorted((item for item in now.items() if " " not in item[0]), key=lambda item: (-item[1], item[0]))
    return [{"term": shown.get(term, term), "count": n} for term, n in words[:limit]]


def trending_terms(store, topic: Optional[str], since: float, until: float, topics: Iterable, limit: int = 10):
    """
    Fires with C{{"trending": [...], "top": [...]}}: the rising terms of
    C{topic} (or of all posts) in C{[since, until)} against the period of
    the same length before (L{rank}), and its most used words (L{top}), the
    C{topics}' own words left out.  Counted over every post of both periods,
    from the store's rollups (L{monitor.store.interfaces.IPostReads.term_counts}).
    """
    return ensureDeferred(_trending_terms(store, topic, since, until, topics, limit))


async def _trending_terms(store, topic, since, until, topics, limit) -> dict:
    exclude = excluded_words(topics)

    def kept(counts: dict) -> Counter:
        return Counter({t: n for t, n in counts.items() if not any(w in exclude for w in t.split())})

    found, shown, posts_now = await store.term_counts(topic, since, until, least=MIN_COUNT)
    now = kept(found)
    words, forms, _ = await store.term_counts(topic, since, until, words=True, limit=limit + len(exclude))
    shown.update({t: f for t, f in forms.items() if t not in shown})
    before, _, posts_before = await store.term_counts(topic, since - (until - since), since, only=set(now))
    return {"trending": rank(now, posts_now, Counter(before), posts_before, shown, limit),
            "top": top(kept(words), shown, limit)}  # fmt: skip
