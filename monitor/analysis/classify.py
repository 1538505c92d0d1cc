"""
Rule-based labels for a post: complaint, purchase intent, question, crisis.

Rules, not a model, because people who run a monitor need to see why a post
was flagged and to tune it with a word list, and because the same rules must
give the same answer on the hub and on every analysis node.

Every word list holds words and phrases, matched like this:

  - at word boundaries ("down" is not found in "download"), ignoring case
    and accents ("piraté" matches "PIRATE");
  - a space matches any run of whitespace;
  - an apostrophe is optional and may be straight or curly, so "doesn't"
    also matches "doesnt" and "doesn’t";
  - C{*} stands for exactly one word: "is * down" matches "is acme down";
  - an entry that starts with C{#} matches a hashtag ending in it: "#down"
    matches "#down" and "#AcmeDown".

Matches of the exceptions ("calm down", "worst case", "highly recommend")
are blanked out before any label is looked for, and so are links, whose
slugs say little about what the author means.

The labels:

  - C{complaint}: a complaint word, or a VADER compound at or below
    L{COMPLAINT_COMPOUND} together with a sign that the post is aimed at
    someone (an @mention or a word of L{DEFAULT_COMPLAINT_TARGETS}).
  - C{purchase_intent}: a purchase-intent word.
  - C{question}: a "?" right after a word (a "?" run mixed with "!", as in
    "seriously?!", is exclamation, not a question), or a question opener at
    the start of the post, after leading @mentions, or of a sentence.
  - C{crisis}: a crisis word.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Iterable, Optional

from monitor import automaton as _automaton

from monitor.model import LABELS

__all__ = [
    "COMPLAINT_COMPOUND",
    "Classifier",
    "DEFAULT_COMPLAINT_TARGETS",
    "DEFAULT_COMPLAINT_WORDS",
    "DEFAULT_CRISIS_WORDS",
    "DEFAULT_EXCEPTIONS",
    "DEFAULT_PURCHASE_INTENT_WORDS",
    "DEFAULT_QUESTION_OPENERS",
]

#: A post this negative counts as a complaint when it is aimed at someone.
COMPLAINT_COMPOUND = -0.3

DEFAULT_CRISIS_WORDS = (
    # outages; "down" alone is too common ("calm down", "feeling down")
    "outage",
    "outages",
    "#outage",
    "service disruption",
    "is down",
    "are down",
    "was down",
    "were down",
    "is * down",
    "are * down",
    "it's down",
    "still down",
    "been down",
    "went down",
    "goes down",
    "down again",
    "down for everyone",
    "down for anyone",
    "down for me",
    "down for hours",
    "site down",
    "server down",
    "servers down",
    "app down",
    "website down",
    "#down",
    "is offline",
    "went offline",
    # security
    "hack",
    "hacked",
    "hacker",
    "hackers",
    "#hacked",
    "breach",
    "breached",
    "data breach",
    "leak",
    "leaks",
    "leaked",
    "data leak",
    "ransomware",
    "phishing",
    "account compromised",
    "was compromised",
    "been compromised",
    "data stolen",
    "stolen data",
    "identity theft",
    "data loss",
    "lost all my data",
    "lost my data",
    # legal and money
    "lawsuit",
    "lawsuits",
    "sued",
    "suing",
    "class action",
    "scam",
    "scams",
    "scammed",
    "scammer",
    "scammers",
    "#scam",
    "fraud",
    "fraudulent",
    "boycott",
    "#boycott",
    # safety
    "recall",
    "recalled",
    "recalls",
    "caught fire",
    "exploded",
    "food poisoning",
    "contaminated",
    "injured",
)

DEFAULT_COMPLAINT_WORDS = (
    "doesn't work",
    "does not work",
    "don't work",
    "didn't work",
    "won't work",
    "never works",
    "not working",
    "isn't working",
    "stopped working",
    "broken",
    "still broken",
    "it broke",
    "worst",
    "refund",
    "money back",
    "still waiting",
    "no response",
    "no reply",
    "cancel my",
    "cancelling my",
    "canceling my",
    "cancelled my",
    "canceled my",
    "terrible service",
    "awful service",
    "horrible service",
    "poor service",
    "bad service",
    "never again",
    "fix this",
    "fix your",
    "please fix",
    "ripped off",
    "rip off",
    "rip-off",
    "ripoff",
    "waste of money",
    "waste of time",
    "unacceptable",
    "disappointed",
    "disappointing",
    "fed up",
    "sick of",
    "so frustrating",
    "frustrated",
    "on hold for",
    "charged twice",
    "double charged",
    "overcharged",
    "keeps crashing",
    "keeps freezing",
    "crashed",
    "useless",
    "sucks",
    "what a joke",
    "never arrived",
    "never received",
    "still hasn't arrived",
    "do not buy",
    "don't buy",
    "avoid this",
    "down again",
    "yet again",
    "#fail",
)

DEFAULT_PURCHASE_INTENT_WORDS = (
    "looking for",
    "in the market for",
    "shopping for",
    "recommend a",
    "recommend an",
    "recommend any",
    "recommend me",
    "recommend some",
    "recommend something",
    "you recommend",
    "any recommendations",
    "recommendations for",
    "any suggestions",
    "suggestions for",
    "suggest a",
    "suggest an",
    "alternative to",
    "alternatives to",
    "alternative for",
    "alternatives for",
    "should i buy",
    "should i get",
    "should i switch",
    "should i upgrade",
    "should i go with",
    "thinking of switching",
    "thinking about switching",
    "thinking of buying",
    "thinking about buying",
    "thinking of getting",
    "want to buy",
    "wanna buy",
    "want to switch",
    "planning to buy",
    "going to buy",
    "gonna buy",
    "about to buy",
    "where can i buy",
    "where to buy",
    "where can i get",
    "worth buying",
    "worth the money",
    "worth the price",
    "which is better",
    "which one is better",
    "which one should i",
    "what's the best",
    "what is the best",
    "best * to buy",
    "switching to",
    "switching from",
    "need a new",
    "how much is",
    "how much does",
    "take my money",
    "preorder",
    "pre-order",
)

DEFAULT_QUESTION_OPENERS = (
    "does anyone",
    "does anybody",
    "did anyone",
    "has anyone",
    "have you",
    "anyone know",
    "anybody know",
    "anyone else",
    "can anyone",
    "can anybody",
    "can someone",
    "could someone",
    "could anyone",
    "is it just me",
    "am i the only one",
    "is there",
    "are there",
    "is it",
    "how do",
    "how does",
    "how can",
    "how come",
    "what's the",
    "what is the",
    "why is",
    "why does",
    "why do",
    "why can't",
    "why won't",
    "where can",
    "where is",
    "where do",
    "which",
    "who knows",
    "when will",
    "when is",
    "should i",
    "can i",
    "do you",
)

#: Besides an @mention, what shows that a negative post is aimed at a brand.
#: Not a bare "your": "if you lose your keys" is no complaint.
DEFAULT_COMPLAINT_TARGETS = (
    "you guys",
    "you people",
    "your app",
    "your service",
    "your product",
    "your products",
    "your company",
    "your support",
    "your team",
    "your staff",
    "your store",
    "your website",
    "your site",
    "your customers",
    "your update",
    "your prices",
    "customer service",
    "customer support",
    "customer care",
    "support team",
    "help desk",
    "helpdesk",
)

DEFAULT_EXCEPTIONS = (
    # "down" that is not an outage
    "calm down",
    "slow down",
    "sit down",
    "settle down",
    "lie down",
    "upside down",
    "thumbs down",
    "feeling down",
    "feel down",
    "down payment",
    "down to earth",
    "boils down to",
    "comes down to",
    "came down to",
    "down to the wire",
    "down memory lane",
    "down the road",
    "down the street",
    "down the stairs",
    "down the hall",
    "down the line",
    "down the list",
    "down the rabbit hole",
    "#countdown",
    "#lockdown",
    "#touchdown",
    "#showdown",
    "#smackdown",
    "#throwdown",
    "#markdown",
    "#sundown",
    "#rundown",
    # words that only look like a crisis
    "life hack",
    "growth hack",
    "hack day",
    "hack week",
    "i recall",
    "if i recall",
    "don't recall",
    "can't recall",
    "cannot recall",
    "recall correctly",
    "total recall",
    # words that only look like a complaint
    "worst case",
    "at worst",
    "not the worst",
    "broken heart",
    "heart is broken",
    "broken record",
    "not disappointed",
    "never disappointed",
    "wasn't disappointed",
    "won't be disappointed",
    # a recommendation given is not one asked for
    "i recommend",
    "i'd recommend",
    "i would recommend",
    "highly recommend",
    "definitely recommend",
    "strongly recommend",
    "can recommend",
)

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u2032": "'"})
_URL_RE = re.compile(r"(?:https?://|www\.)\S+")
_LEADING_MENTIONS_RE = re.compile(r"^(?:@\S+ )+")
_MENTION_RE = re.compile(r"(?<!\w)@\w")
# A run of "?" right after a word (or emoji, quote, bracket) and not mixed
# with "!".
_QUESTION_MARK_RE = re.compile(r"(?<=[^\s!?])\?+(?![!?])")


def normalize(text: str) -> str:
    """
    Fold case, accents and curly apostrophes and collapse whitespace, so a
    word list entry written once matches every way people type it.
    """
    if text.isascii():
        return " ".join(text.lower().split())
    text = unicodedata.normalize("NFKD", text.casefold())
    return " ".join(text.translate(_FOLD).split())


class _Folding(dict):
    """
    The table L{normalize} translates with: combining marks dropped,
    curly apostrophes straightened, filled in as characters are met (at
    most L{_FOLDING_LIMIT} of them, so hostile text cannot grow it).
    """

    def __missing__(self, code: int):
        c = chr(code)
        value = None if unicodedata.combining(c) else _APOSTROPHES.get(code, c)
        if len(self) < _FOLDING_LIMIT:
            self[code] = value
        return value


_FOLDING_LIMIT = 1 << 16
_FOLD = _Folding()


def _fragment(entry: str) -> str:
    if not isinstance(entry, str):
        raise TypeError(f"word list entry must be a string: {entry!r}")
    words = normalize(entry).split()
    if not words:
        raise ValueError(f"empty word list entry: {entry!r}")
    if len(words) == 1 and words[0].startswith("#") and len(words[0]) > 1:
        return r"#\w*" + re.escape(words[0][1:])
    parts = []
    for word in words:
        if word == "*":
            parts.append(r"\S+")
        else:
            parts.append(re.escape(word).replace("'", "'?"))
    return r"\s+".join(parts)


def compile_words(entries: Iterable[str], prefix: str = "") -> Optional[re.Pattern]:
    """
    One regex for a word list (the syntax of the README's [analysis]
    lists), to search in L{normalize}d text; C{None} for an empty list.
    Alert rules use it for their phrases too.
    """
    fragments = sorted({_fragment(e) for e in entries}, key=len, reverse=True)
    if not fragments:
        return None
    return re.compile(rf"{prefix}(?<!\w)(?:{'|'.join(fragments)})(?!\w)")


def _word_char(c: str) -> bool:
    """Whether C{c} is a C{\\w} character of C{re} (its definition, exactly)."""
    return c.isalnum() or c == "_"


class _Entry:
    """
    One word list entry as the automaton checks it, with the meaning of its
    regex fragment (L{_fragment}) in text whose only whitespace is C{" "}
    (L{normalize}d text always is):

      - C{pieces}: the entry's words, each the tuple of strings it may be
        (an apostrophe optional: C{"doesn't"} is C{("doesn't", "doesnt")})
        or C{None} for C{*}.  Between two pieces lies a run of spaces, so
        every piece but the first and last is a whole space-separated
        chunk, the first ends a chunk and the last starts one.
      - C{hashtag}: for an entry C{#down}, C{"down"}: a C{#} then word
        characters ending in it.
      - C{anchor}: the piece the automaton finds (the rarest literal one).

    The automaton reads the text with every non-word character made a space
    (L{_words_only}), so it finds a piece only where it starts and ends at
    word boundaries; L{found} then checks the real characters.
    """

    __slots__ = ("list", "pieces", "hashtag", "anchor", "proven")

    def __init__(self, number: int, words: list[str]):
        self.list = number
        self.hashtag: Optional[str] = None
        #: Whether a hit of the automaton proves the entry is there: a
        #: single word of word characters only, where the automaton's
        #: boundaries are the regex's.
        self.proven = False
        if len(words) == 1 and words[0].startswith("#") and len(words[0]) > 1:
            self.hashtag = words[0][1:]
            self.pieces: tuple = ((self.hashtag,),)
            self.anchor = 0
            return
        self.pieces = tuple(None if w == "*" else _spellings(w) for w in words)
        literal = [i for i, p in enumerate(self.pieces) if p is not None]
        self.anchor = min(literal, key=lambda i: _rarity(words[i])) if literal else None
        self.proven = number != _OPENER and len(words) == 1 and all(_word_char(c) for c in words[0])

    def pair(self) -> Optional[int]:
        """
        The first of the two neighbouring literal pieces to anchor on in
        text whose words are one space apart (the pair with the rarest
        word, then the first), or C{None} if the entry has no such pair.
        """
        if self.hashtag is not None:
            return None
        pairs = [
            i for i in range(len(self.pieces) - 1) if self.pieces[i] is not None and self.pieces[i + 1] is not None
        ]
        if not pairs:
            return None
        return min(pairs, key=lambda i: min(_rarity(w) for p in self.pieces[i : i + 2] for w in p))

    def found(self, text: str, i: int, start: int, end: int, opener: Optional[int]) -> bool:
        """
        Whether the entry matches C{text} with its anchor piece at
        C{text[start:end]}.  C{opener} is where an opener's text starts (after
        leading @mentions), or C{None} for other lists.
        """
        if self.hashtag is not None:
            n = len(text)
            if text[start:end] != self.hashtag or end < n and _word_char(text[end]):
                return False
            h = start - 1
            while h >= 0 and _word_char(text[h]):
                h -= 1
            if h < 0 or text[h] != "#" or (h > 0 and _word_char(text[h - 1])):
                return False
            return opener is None or _opens(text, h, opener)
        pieces = self.pieces
        if text[start:end] not in pieces[i]:
            return False
        last = len(pieces) - 1
        n = len(text)
        # The anchor piece itself: a whole chunk inside, bounded at the ends.
        if i > 0:
            if start == 0 or text[start - 1] != " ":
                return False
        elif start > 0 and _word_char(text[start - 1]):
            return False
        if i < last:
            if end >= n or text[end] != " ":
                return False
        elif end < n and _word_char(text[end]):
            return False
        if i == 0 and opener is not None and not _opens(text, start, opener):
            return False
        # The pieces before it, chunk by chunk leftwards.
        b = start
        for j in range(i - 1, -1, -1):
            while b > 0 and text[b - 1] == " ":
                b -= 1
            if b == 0:
                return False
            a = text.rfind(" ", 0, b) + 1
            piece = pieces[j]
            if j > 0:
                if piece is not None and text[a:b] not in piece:
                    return False
            elif piece is None:
                if opener is not None and not _opens(text, a, opener):
                    return False
            elif not any(
                text.endswith(v, a, b)
                and not (b - len(v) > a and _word_char(text[b - len(v) - 1]))
                and (opener is None or _opens(text, b - len(v), opener))
                for v in piece
            ):
                return False
            b = a
        # And after it, rightwards.
        a = end
        for j in range(i + 1, last + 1):
            while a < n and text[a] == " ":
                a += 1
            if a == n:
                return False
            b = text.find(" ", a)
            if b < 0:
                b = n
            piece = pieces[j]
            if j < last:
                if piece is not None and text[a:b] not in piece:
                    return False
            elif piece is not None and not any(
                text.startswith(v, a, b) and not (a + len(v) < b and _word_char(text[a + len(v)])) for v in piece
            ):
                return False
            a = b
        return True


def _spellings(word: str) -> tuple[str, ...]:
    """
    The strings C{re.escape(word).replace("'", "'?")} matches: each
    apostrophe there or not.
    """
    spellings = [""]
    for part in word.split("'")[:-1]:
        spellings = [s + part + tail for s in spellings for tail in ("'", "")]
    return tuple(dict.fromkeys(s + word.rsplit("'", 1)[-1] for s in spellings))


def _opens(text: str, start: int, at: int) -> bool:
    """
    Whether an opener may start at C{start}: at the start of its text
    (C{at}) or after one of C{.!?} and one space (the openers' prefix).
    """
    return start == at or (start >= at + 2 and text[start - 1] == " " and text[start - 2] in ".!?")


# Words too common to make a good anchor: any literal piece of an entry is
# a correct anchor, a rare one only means fewer hits to check.
_COMMON = frozenset(
    """
    a about again am an and any anyone are at be been but by can could did do
    does down for from get go going had has have how i if in is it just me my
    need no not of on one or please should so still that the there this to
    up want was we were what when where which who why will with would you
    your
    """.split()
)


def _rarity(word: str) -> tuple:
    return (word in _COMMON, -len(word), word)


# In ASCII, \\w is [A-Za-z0-9_]: every other byte becomes a space.
_ASCII_WORDS_ONLY = bytes(c if c < 128 and _word_char(chr(c)) else 32 for c in range(256))
_NON_WORD = re.compile(r"\W")


def _anchor_key(spelling: str, hashtag: bool) -> tuple[str, int]:
    """
    What the automaton looks for in L{_words_only} of a text: the spelling
    with a boundary either side, or for a hashtag only after it (its word
    may follow word characters, "#acmedown"); and how far back from the last
    character of a hit the spelling starts in the text.
    """
    key = _words_only(spelling)
    if hashtag:
        key = key[1:]
    return key, len(key) - (not hashtag)


def _words_only(text: str) -> str:
    """
    C{text} with every non-word character made a space, between two more
    spaces: the same characters at the same places, one further on, so that
    C{" down "} in it is exactly C{down} with no word character either side.
    """
    if text.isascii():
        return " " + text.encode("ascii").translate(_ASCII_WORDS_ONLY).decode("ascii") + " "
    return " " + _NON_WORD.sub(" ", text) + " "


# The lists, by number, in the automaton's entries.
_CRISIS, _COMPLAINT, _PURCHASE, _OPENER, _TARGET, _EXCEPTION = range(6)


class _Lists:
    """
    All six word lists in one Aho-Corasick automaton, so that a post is
    read once for all of them: every hit of an entry's anchor is checked
    in place (L{_Entry.found}), and only an entry that cannot be anchored
    (all C{*}, or a word of apostrophes only) keeps a regex of its own.

    There are two automata, and a post is read by one: in text whose words
    are one space apart (nearly every post) an entry of several words is
    anchored on two neighbouring words at once ("is down", not "down" in
    every post that has it); where a blanked link or exception left two
    spaces together, by one word.
    """

    def __init__(self, lists: list[tuple[str, ...]]):
        by_word: dict[str, dict] = {}
        by_pair: dict[str, dict] = {}
        #: List number -> regexes of the entries that have no anchor.
        self.unanchored: list[list[re.Pattern]] = [[] for _ in lists]
        for number, entries in enumerate(lists):
            prefix = _OPENER_PREFIX if number == _OPENER else ""
            for entry in dict.fromkeys(entries):
                words = normalize(entry).split()
                e = _Entry(number, words)
                if e.anchor is None or any(p is not None and "" in p for p in e.pieces):
                    self.unanchored[number].append(compile_words([entry], prefix))
                    continue
                pair = e.pair()
                for spelling in e.pieces[e.anchor]:
                    key, back = _anchor_key(spelling, e.hashtag is not None)
                    by_word.setdefault(key, {}).setdefault((back, len(spelling), e.anchor), []).append(e)
                    if pair is None:
                        by_pair.setdefault(key, {}).setdefault((back, len(spelling), e.anchor), []).append(e)
                if pair is None:
                    continue
                for first in e.pieces[pair]:
                    for second in e.pieces[pair + 1]:
                        key = _words_only(f"{first} {second}")
                        by_pair.setdefault(key, {}).setdefault((len(key) - 1, len(first), pair), []).append(e)
        self.by_word = self._build(by_word)
        self.by_pair = self._build(by_pair)

    @staticmethod
    def _build(anchored: dict):
        if not anchored:
            return None
        automaton = _automaton.Automaton()
        for key, groups in anchored.items():
            automaton.add_word(key, tuple((back, size, i, tuple(es)) for (back, size, i), es in groups.items()))
        automaton.make_automaton()
        return automaton

    def found(self, text: str, opener: int = 0) -> set[int]:
        """
        The numbers of the lists that match C{text}; an opener must start at
        C{opener} or later.
        """
        found = set()
        automaton = self.by_pair if "  " not in text else self.by_word
        if automaton is not None:
            for last, groups in automaton.iter(_words_only(text)):
                for back, size, i, entries in groups:
                    start = last - back
                    end = start + size
                    for e in entries:
                        if e.list in found:
                            continue
                        if e.proven:
                            found.add(e.list)
                        elif e.list == _OPENER:
                            # Most hits of an opener are not where a sentence starts.
                            if (i or e.hashtag is not None or _opens(text, start, opener)) and e.found(
                                text, i, start, end, opener
                            ):
                                found.add(_OPENER)
                        elif e.found(text, i, start, end, None):
                            found.add(e.list)
        for number, patterns in enumerate(self.unanchored):
            if patterns and number not in found:
                subject = text[opener:] if number == _OPENER else text
                if any(p.search(subject) for p in patterns):
                    found.add(number)
        return found


_OPENER_PREFIX = r"(?:^|(?<=[.!?] ))"


def _words(entries: Optional[Iterable[str]], default: tuple) -> tuple:
    if entries is None:
        return default
    if isinstance(entries, str):
        raise TypeError(f"expected a list of words, not {entries!r}")
    return tuple(entries)


class Classifier:
    """
    Label posts from word lists compiled once into one automaton, so that
    labelling a post costs one pass over it whatever the number of lists and
    entries.  C{None} for a list means its
    default (the C{DEFAULT_*} constants); an empty list turns the rule off.
    """

    def __init__(
        self,
        crisis_words: Optional[Iterable[str]] = None,
        complaint_words: Optional[Iterable[str]] = None,
        purchase_intent_words: Optional[Iterable[str]] = None,
        *,
        question_openers: Optional[Iterable[str]] = None,
        complaint_targets: Optional[Iterable[str]] = None,
        exceptions: Optional[Iterable[str]] = None,
    ):
        self.crisis_words = _words(crisis_words, DEFAULT_CRISIS_WORDS)
        self.complaint_words = _words(complaint_words, DEFAULT_COMPLAINT_WORDS)
        self.purchase_intent_words = _words(purchase_intent_words, DEFAULT_PURCHASE_INTENT_WORDS)
        self.question_openers = _words(question_openers, DEFAULT_QUESTION_OPENERS)
        self.complaint_targets = _words(complaint_targets, DEFAULT_COMPLAINT_TARGETS)
        self.exceptions = _words(exceptions, DEFAULT_EXCEPTIONS)

        lists = [
            self.crisis_words,
            self.complaint_words,
            self.purchase_intent_words,
            self.question_openers,
            self.complaint_targets,
            self.exceptions,
        ]
        # The reference: one regex per list, every one searched (compiled
        # first: it refuses bad entries with the reasons it always gave).
        self._regexes = [compile_words(words, _OPENER_PREFIX if n == _OPENER else "") for n, words in enumerate(lists)]
        self._lists = _Lists(lists)

    def to_dict(self) -> dict[str, list[str]]:
        """
        The word lists, so that a remote node can build the same classifier.
        """
        return {
            "crisis_words": list(self.crisis_words),
            "complaint_words": list(self.complaint_words),
            "purchase_intent_words": list(self.purchase_intent_words),
            "question_openers": list(self.question_openers),
            "complaint_targets": list(self.complaint_targets),
            "exceptions": list(self.exceptions),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Classifier":
        return cls(**d)

    def labels(self, text: str, compound: float) -> tuple[str, ...]:
        """
        The labels of a post's plain text, in the order of
        L{monitor.model.LABELS}.  C{compound} is its VADER compound score.
        One automaton pass finds every list's entries; a post that holds an
        exception is read a second time, once the exceptions are blanked.
        """
        text = normalize(text)
        if "://" in text or "www." in text:
            text = _URL_RE.sub(" ", text)
        lists = self._lists
        opener = 0
        if text.startswith("@"):
            mentions = _LEADING_MENTIONS_RE.match(text)
            if mentions:
                opener = mentions.end()
        found = lists.found(text, opener)
        if _EXCEPTION in found:
            text = self._regexes[_EXCEPTION].sub(" | ", text)
            opener = 0
            if text.startswith("@"):
                mentions = _LEADING_MENTIONS_RE.match(text)
                if mentions:
                    opener = mentions.end()
            found = lists.found(text, opener)
        labels = []
        if _COMPLAINT in found or (
            compound <= COMPLAINT_COMPOUND
            and (_TARGET in found or ("@" in text and _MENTION_RE.search(text) is not None))
        ):
            labels.append("complaint")
        if _PURCHASE in found:
            labels.append("purchase_intent")
        if _OPENER in found or ("?" in text and _QUESTION_MARK_RE.search(text) is not None):
            labels.append("question")
        if _CRISIS in found:
            labels.append("crisis")
        return tuple(labels)

    def labels_by_every_regex(self, text: str, compound: float) -> tuple[str, ...]:
        """
        L{labels} by searching every list's regex in turn, as the rules were
        first written: what the automaton must never differ from (the tests
        compare the two).
        """
        crisis, complaint, purchase, opener, target, exception = self._regexes
        text = _URL_RE.sub(" ", normalize(text))
        if exception is not None:
            text = exception.sub(" | ", text)

        def search(pattern, subject=text):
            return pattern is not None and pattern.search(subject) is not None

        found = {
            "complaint": search(complaint)
            or (compound <= COMPLAINT_COMPOUND and (_MENTION_RE.search(text) is not None or search(target))),
            "purchase_intent": search(purchase),
            "question": _QUESTION_MARK_RE.search(text) is not None
            or search(opener, _LEADING_MENTIONS_RE.sub("", text)),
            "crisis": search(crisis),
        }
        return tuple(label for label in LABELS if found[label])
