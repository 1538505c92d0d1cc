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
* B{Queries} (C{query}, L{monitor.query}): a Boolean query with proximity,
  wildcards, fuzzy words and field filters; its words follow the rules
  above.  A topic with terms and a query matches a post that satisfies both.
* A topic with no terms, no variants and no query matches nothing.

The matched topic names come back in the order the topics were given.

How it stays cheap with hundreds of topics: every term, variant, exclusion
and query word that has a literal part is put in one Aho-Corasick automaton
(C{pyahocorasick}, or L{monitor.automaton.PurePython} if it cannot be
imported), which reads the normalised text once with its tokens separated
by spaces.  A hit on a single word, hashtag or handle
proves it occurs; a hit on a phrase's or wildcard's longest literal part
says it may.  Fuzzy words are looked up per word by their first and last
two letters and length, then checked exactly.  Only the topics one of whose
required words occurs (and the few whose query can match without any word,
such as C{likes:>=1000}) are then evaluated, and the post is split into
tokens only when a phrase, wildcard or NEAR must be checked.
"""

from __future__ import annotations

import re
from typing import Iterable, NamedTuple, Optional

from monitor import automaton as _automaton
from monitor.model import Post, Topic
from monitor.query import (
    Doc,
    Node,
    QueryError,
    Term,
    evaluate,
    highlights,
    parse,
    term,
    terms,
    triggers,
)
from monitor.words import (
    FUZZY_MIN_TERM,
    FUZZY_MIN_TOKEN,
    _UNKNOWN_LANGUAGES,
    language_key,
    normalize,
    tokenize,
    within_one_edit,
)

__all__ = ["Matcher", "compile_topic", "normalize", "tokenize", "within_one_edit"]

_QUOTES = "\"'\u201c\u201d\u2018\u2019\u00ab\u00bb"


class CompiledTopic(NamedTuple):
    """
    A topic as the matcher evaluates it.

    @ivar terms: its terms and variants (a post needs one), or C{()}.
    @ivar exclude: terms that veto a match.
    @ivar query: its query tree, or C{None}.
    @ivar triggers: terms one of which a post must hold to match, or
        C{None} if the topic must be evaluated on every post.
    """

    terms: tuple[Term, ...]
    exclude: tuple[Term, ...]
    query: Optional[Node]
    triggers: Optional[tuple[Term, ...]]


def _list_term(text: str, fuzzy: bool) -> Optional[Term]:
    """
    A term from a topic's C{terms}/C{variants}/C{exclude} list: quotes
    optional, C{*} and C{?} are punctuation there (as they always were), and
    with C{fuzzy} a single plain word of 5+ letters is fuzzy.
    """
    text = text.strip().strip(_QUOTES).replace("*", " ").replace("?", " ")
    try:
        t = term(text)
    except QueryError:
        return None
    if fuzzy and len(t.elements) == 1 and not t.sigil and len(t.elements[0]) >= FUZZY_MIN_TERM:
        return term(text, fuzzy=True)
    return t


def compile_topic(topic: Topic) -> CompiledTopic:
    """
    Compile one topic.  Raises L{QueryError} if its query does not parse.
    """
    fuzzy = topic.fuzzy
    listed = [_list_term(t, fuzzy) for t in topic.terms]
    listed += [_list_term(t, False) for t in topic.variants]
    positive = tuple(t for t in listed if t is not None)
    exclude = tuple(t for t in (_list_term(x, False) for x in topic.exclude) if t is not None)
    query = parse(topic.query) if topic.query else None
    if positive:
        trigger: Optional[tuple] = positive
    elif query is not None:
        found = triggers(query)
        trigger = tuple(found) if found is not None else None
    else:
        trigger = ()  # matches nothing
    return CompiledTopic(positive, exclude, query, trigger)


def _anchors(t: Term) -> Optional[tuple[list[str], bool]]:
    """
    The strings the automaton looks for in the padded text (L{_pad}) to
    find C{t}, and whether finding one proves C{t} occurs (a single word,
    hashtag or handle) rather than only that it may; C{None} if C{t} has no
    usable literal part (fuzzy words, wildcards of scattered letters).
    """
    if t.fuzzy:
        return None
    elements = t.elements
    if len(elements) == 1 and isinstance(elements[0], str):
        word = elements[0]
        if t.sigil:
            return [f"{t.sigil}{word} "], True
        return [f" {word} ", f"#{word} ", f"@{word} "], True
    exact = [e for e in elements if isinstance(e, str)]
    if exact:
        word = max(exact, key=len)
        return [f" {word} ", f"#{word} ", f"@{word} "], False
    best = None
    for e in elements:
        runs = e.pattern.replace(r"\w*", "\0").replace(r"\w", "\0").split("\0")
        for i, run in enumerate(runs):
            if len(run) >= 2 and (best is None or len(run) > len(best[0])):
                best = (run, i == 0, i == len(runs) - 1)
    if best is None:
        return None
    run, left, right = best
    after = " " if right else ""
    return [f"{before}{run}{after}" for before in ((" ", "#", "@") if left else ("",))], False


#: Replaced by one space in the padded text: runs of separators, and a C{#}
#: or C{@} glued after a word (C{info@acme.com}), which marks nothing.  Only
#: the first: in C{acme@@anonymous} the second C{@} follows no word
#: character, so it marks the handle C{@anonymous}, as L{monitor.words.TOKEN}
#: reads it.
_SEPARATORS = re.compile(r"[^\w#@]+|(?<=\w)[#@]")


#: For ASCII text: every byte that is not a word character, C{#} or C{@}
#: becomes a space.
_ASCII_SEPARATORS = bytes(c if c < 128 and (chr(c).isalnum() or chr(c) in "_#@") else 32 for c in range(256))
_GLUED = re.compile(r"(?<=\w)[#@]")


def _pad(normalized: str) -> str:
    """
    The text the automaton reads: tokens separated by spaces, a hashtag's
    C{#} and a handle's C{@} kept before their word.  Every token starts
    after a space, C{#} or C{@} and ends before a space, so C{" acme "},
    C{"#acme "} and C{"@acme "} are exactly the token C{acme} with each
    mark.  No key of the automaton holds two spaces, so how many separate
    two tokens does not matter: ASCII text (most posts) takes a bytes
    translate, one separator one space, three times faster than the regex.
    """
    if normalized.isascii():
        text = normalized.encode("ascii").translate(_ASCII_SEPARATORS).decode("ascii")
        if "#" in text or "@" in text:
            text = _GLUED.sub(" ", text)
        return " " + text + " "
    return " " + _SEPARATORS.sub(" ", normalized) + " "


class Matcher:
    """
    Assigns posts to topics.  All the work happens here in the constructor;
    a matcher is immutable, so it can be swapped atomically when topics
    change.

    @ivar problems: topic name -> why it cannot match (a stored query that
        no longer parses); such a topic matches nothing.
    """

    def __init__(self, topics: Iterable[Topic]) -> None:
        self.topics: tuple[Topic, ...] = tuple(topics)
        self.problems: dict[str, str] = {}
        self._plans: list[CompiledTopic] = []
        self._languages: list[Optional[frozenset[str]]] = []
        self._sources: list[Optional[frozenset[str]]] = []
        # Term key -> the topics a post holding it may match.
        triggered: dict[tuple, set[int]] = {}
        always: list[int] = []
        every: dict[tuple, Term] = {}
        for number, topic in enumerate(self.topics):
            self._languages.append(frozenset(language_key(lang) for lang in topic.languages) or None)
            self._sources.append(frozenset(topic.sources) or None)
            try:
                plan = compile_topic(topic)
            except QueryError as e:
                self.problems[topic.name] = str(e)
                plan = CompiledTopic((), (), None, ())
            self._plans.append(plan)
            for t in (*plan.terms, *plan.exclude, *(terms(plan.query) if plan.query else ())):
                every.setdefault(t.key, t)
            if plan.triggers is None:
                always.append(number)
            else:
                for t in plan.triggers:
                    triggered.setdefault(t.key, set()).add(number)
        # The automaton's literal -> the terms it finds.
        anchors: dict[str, set[tuple]] = {}
        exact = set()
        fuzzy: dict[tuple, set[tuple]] = {}
        detectable = set()
        for key, t in every.items():
            found = _anchors(t)
            if found is not None:
                literals, proves = found
                for literal in literals:
                    anchors.setdefault(literal, set()).add(key)
                detectable.add(key)
                if proves:
                    exact.add(key)
            elif t.fuzzy:
                # A word one edit from a word of 5+ letters keeps its first
                # two letters or its last two, and is at most one longer or
                # shorter: index by both.
                word = t.elements[0]
                for n in (len(word) - 1, len(word), len(word) + 1):
                    fuzzy.setdefault((word[:2], n), set()).add(key)
                    fuzzy.setdefault((n, word[-2:]), set()).add(key)
                detectable.add(key)
            elif key in triggered:
                # Neither in the automaton nor in the fuzzy index: the
                # topics it triggers are evaluated on every post.
                always.extend(triggered.pop(key))
        self._always = frozenset(always)
        self._triggered = {k: frozenset(v) for k, v in triggered.items()}
        self._detectable = frozenset(detectable)
        self._exact = frozenset(exact)
        self._fuzzy = {k: tuple((key, every[key].elements[0]) for key in v) for k, v in fuzzy.items()}
        if fuzzy:
            longest = max(len(w) for v in self._fuzzy.values() for _, w in v)
            self._fuzzy_lengths = range(FUZZY_MIN_TOKEN, longest + 2)
        else:
            self._fuzzy_lengths = range(0)
        self._automaton = None
        if anchors:
            automaton = _automaton.Automaton()
            for literal, keys in anchors.items():
                automaton.add_word(literal, tuple(keys))
            automaton.make_automaton()
            self._automaton = automaton
        self._empty = not self._triggered and not self._always

    def match(self, post) -> tuple[str, ...]:
        """
        The names of the topics C{post} mentions, in topic order.
        """
        if self._empty:
            return ()
        return self._match(post, normalize(post.text or ""))[0]

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
        return self.match(
            Post(source=source, network="", native_id="", text=text or "", author="", created_at=0.0, lang=lang)
        )

    def explain(self, post) -> tuple[tuple[str, ...], set[int]]:
        """
        The topics C{post} matches and the indexes of the tokens
        (L{monitor.words.token_spans}) that made them match, for
        highlighting.
        """
        if self._empty:
            return (), set()
        names, doc, numbers = self._match(post, normalize(post.text or ""))
        marked: set[int] = set()
        for n in numbers:
            plan = self._plans[n]
            for t in plan.terms:
                for a, b in doc.spans(t):
                    marked.update(range(a, b + 1))
            if plan.query is not None:
                marked |= highlights(plan.query, doc)
        return names, marked

    def _match(self, post, normalized: str):
        padded = _pad(normalized)
        present: set[tuple] = set()
        automaton = self._automaton
        if automaton is not None:
            for _, keys in automaton.iter(padded):
                present.update(keys)
        doc = Doc(post, normalized, present, self._detectable, self._exact)
        if self._fuzzy:
            fuzzy, lengths, found = self._fuzzy, self._fuzzy_lengths, doc.fuzzy
            for w in {w.lstrip("#@") for w in padded.split()}:
                n = len(w)
                if n in lengths:
                    for key, term_word in (*fuzzy.get((w[:2], n), ()), *fuzzy.get((n, w[-2:]), ())):
                        if within_one_edit(w, term_word):
                            found.setdefault(key, set()).add(w)
                            present.add(key)
        candidates = set(self._always)
        triggered = self._triggered
        for key in present:
            candidates.update(triggered.get(key, ()))
        if not candidates:
            return (), doc, ()
        lang, source = post.lang, post.source
        numbers = [n for n in sorted(candidates) if self._allows(n, lang, source) and self._holds(n, doc)]
        names = tuple(dict.fromkeys(self.topics[n].name for n in numbers))
        return names, doc, numbers

    def _holds(self, number: int, doc: Doc) -> bool:
        plan = self._plans[number]
        if plan.terms and not any(doc.has(t) for t in plan.terms):
            return False
        if plan.query is not None and not evaluate(plan.query, doc):
            return False
        return not any(doc.has(t) for t in plan.exclude)

    def _allows(self, number: int, lang: Optional[str], source: Optional[str]) -> bool:
        """
        Whether topic C{number}'s language and source limits let the post in.
        """
        sources = self._sources[number]
        if sources is not None and source not in sources:
            return False
        languages = self._languages[number]
        if languages is None or lang is None:
            return True
        tag = language_key(lang)
        if tag in _UNKNOWN_LANGUAGES:
            return True
        return tag in languages or tag.split("-", 1)[0] in languages
