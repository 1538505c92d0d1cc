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
    "outage", "outages", "#outage", "service disruption",
    "is down", "are down", "was down", "were down", "is * down", "are * down",
    "it's down", "still down", "been down", "went down", "goes down",
    "down again", "down for everyone", "down for anyone", "down for me",
    "down for hours", "site down", "server down", "servers down",
    "app down", "website down", "#down", "is offline", "went offline",
    # security
    "hack", "hacked", "hacker", "hackers", "#hacked", "breach", "breached",
    "data breach", "leak", "leaks", "leaked", "data leak", "ransomware",
    "phishing", "account compromised", "was compromised", "been compromised",
    "data stolen", "stolen data", "identity theft", "data loss",
    "lost all my data", "lost my data",
    # legal and money
    "lawsuit", "lawsuits", "sued", "suing", "class action", "scam", "scams",
    "scammed", "scammer", "scammers", "#scam", "fraud", "fraudulent",
    "boycott", "#boycott",
    # safety
    "recall", "recalled", "recalls", "caught fire", "exploded",
    "food poisoning", "contaminated", "injured",
)

DEFAULT_COMPLAINT_WORDS = (
    "doesn't work", "does not work", "don't work", "didn't work",
    "won't work", "never works", "not working", "isn't working",
    "stopped working", "broken", "still broken", "it broke", "worst",
    "refund", "money back", "still waiting", "no response", "no reply",
    "cancel my", "cancelling my", "canceling my", "cancelled my",
    "canceled my", "terrible service", "awful service", "horrible service",
    "poor service", "bad service", "never again", "fix this", "fix your",
    "please fix", "ripped off", "rip off", "rip-off", "ripoff",
    "waste of money", "waste of time", "unacceptable", "disappointed",
    "disappointing", "fed up", "sick of", "so frustrating", "frustrated",
    "on hold for", "charged twice", "double charged", "overcharged",
    "keeps crashing", "keeps freezing", "crashed", "useless", "sucks",
    "what a joke", "never arrived", "never received", "still hasn't arrived",
    "do not buy", "don't buy", "avoid this", "down again", "yet again",
    "#fail",
)

DEFAULT_PURCHASE_INTENT_WORDS = (
    "looking for", "in the market for", "shopping for", "recommend a",
    "recommend an", "recommend any", "recommend me", "recommend some",
    "recommend something", "you recommend", "any recommendations",
    "recommendations for", "any suggestions", "suggestions for",
    "suggest a", "suggest an", "alternative to", "alternatives to",
    "alternative for", "alternatives for", "should i buy", "should i get",
    "should i switch", "should i upgrade", "should i go with",
    "thinking of switching", "thinking about switching",
    "thinking of buying", "thinking about buying", "thinking of getting",
    "want to buy", "wanna buy", "want to switch", "planning to buy",
    "going to buy", "gonna buy", "about to buy", "where can i buy",
    "where to buy", "where can i get", "worth buying", "worth the money",
    "worth the price", "which is better", "which one is better",
    "which one should i", "what's the best", "what is the best",
    "best * to buy", "switching to", "switching from", "need a new",
    "how much is", "how much does", "take my money", "preorder", "pre-order",
)

DEFAULT_QUESTION_OPENERS = (
    "does anyone", "does anybody", "did anyone", "has anyone", "have you",
    "anyone know", "anybody know", "anyone else", "can anyone",
    "can anybody", "can someone", "could someone", "could anyone",
    "is it just me", "am i the only one", "is there", "are there", "is it",
    "how do", "how does", "how can", "how come", "what's the", "what is the",
    "why is", "why does", "why do", "why can't", "why won't", "where can",
    "where is", "where do", "which", "who knows", "when will", "when is",
    "should i", "can i", "do you",
)

#: Besides an @mention, what shows that a negative post is aimed at a brand.
#: Not a bare "your": "if you lose your keys" is no complaint.
DEFAULT_COMPLAINT_TARGETS = (
    "you guys", "you people", "your app", "your service", "your product",
    "your products", "your company", "your support", "your team",
    "your staff", "your store", "your website", "your site",
    "your customers", "your update", "your prices", "customer service",
    "customer support", "customer care", "support team", "help desk",
    "helpdesk",
)

DEFAULT_EXCEPTIONS = (
    # "down" that is not an outage
    "calm down", "slow down", "sit down", "settle down", "lie down",
    "upside down", "thumbs down", "feeling down", "feel down",
    "down payment", "down to earth", "boils down to", "comes down to",
    "came down to", "down to the wire", "down memory lane", "down the road",
    "down the street", "down the stairs", "down the hall", "down the line",
    "down the list", "down the rabbit hole", "#countdown", "#lockdown",
    "#touchdown", "#showdown", "#smackdown", "#throwdown", "#markdown",
    "#sundown", "#rundown",
    # words that only look like a crisis
    "life hack", "growth hack", "hack day", "hack week", "i recall",
    "if i recall", "don't recall", "can't recall", "cannot recall",
    "recall correctly", "total recall",
    # words that only look like a complaint
    "worst case", "at worst", "not the worst", "broken heart",
    "heart is broken", "broken record", "not disappointed",
    "never disappointed", "wasn't disappointed", "won't be disappointed",
    # a recommendation given is not one asked for
    "i recommend", "i'd recommend", "i would recommend", "highly recommend",
    "definitely recommend", "strongly recommend", "can recommend",
)

_APOSTROPHES = str.maketrans(
    {"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u2032": "'"}
)
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
    text = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(text.translate(_APOSTROPHES).split())


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


_WORD_RE = re.compile(r"\w+")

# Words too common to make a good anchor (see _WordList): any run of an
# entry is a correct anchor, a rare one only skips more searches.
_COMMON = frozenset(
    """
    a about again am an and any anyone are at be been but by can could did do
    does down for from get go going had has have how i if in is it just me my
    need no not of on one or please should so still that the there this to
    up want was we were what when where which who why will with would you
    your
    """.split()
)


def _rarity(run: str) -> tuple:
    return (run in _COMMON, -len(run), run)


# In ASCII, \w is [A-Za-z0-9_]: every other byte separates runs.
_ASCII_SEPARATORS = bytes(
    c if c < 128 and re.fullmatch(r"\w", chr(c)) else 32 for c in range(256)
)


def _runs(text: str) -> frozenset:
    """
    The runs of C{\\w} characters in C{text}, as C{_WORD_RE} finds them
    (for ASCII, a bytes translate and a split find them twice as fast).
    """
    if text.isascii():
        return frozenset(text.encode("ascii").translate(_ASCII_SEPARATORS).decode("ascii").split())
    return frozenset(_WORD_RE.findall(text))


class _WordList:
    """
    A compiled word list and what a text needs for it to match at all.

    Every match of an entry contains each plain word of the entry (one
    with no C{'}, which is optional, and not C{*}) whole, so each of that
    word's runs of C{\\w} characters is a whole C{\\w+} run of the text.
    One run per entry (the longest, as the rarest) is its anchor: a text
    whose C{\\w+} runs hold no anchor cannot match, and its regex search
    is skipped.  A hashtag entry (C{#down}) needs a C{#}; an entry with no
    plain word makes the list always search.
    """

    __slots__ = ("pattern", "anchors", "hashtags")

    def __init__(self, entries: Iterable[str], prefix: str = ""):
        entries = tuple(entries)
        self.pattern = compile_words(entries, prefix)
        hashtags = set()
        anchors: Optional[set] = set()
        for entry in entries:
            words = normalize(entry).split()
            if len(words) == 1 and words[0].startswith("#") and len(words[0]) > 1:
                # "#\w*down" matches only where "down" is in the text.
                hashtags.add(words[0][1:])
                continue
            runs = [run for w in words if w != "*" and "'" not in w for run in _WORD_RE.findall(w)]
            if not runs:
                anchors = None
                break
            anchors.add(min(runs, key=_rarity))
        self.anchors = None if anchors is None else frozenset(anchors)
        #: The texts after "#" of the hashtag entries, one of which must be
        #: in a text for one of them to match.
        self.hashtags = tuple(sorted(hashtags))

    def may_match(self, text: str, words: Optional[frozenset]) -> bool:
        """
        Whether C{text} could match: C{False} is sure, C{True} a maybe.
        C{words} are the C{\\w+} runs of C{text} or of a text it was cut
        from; C{None} means unknown (always a maybe).
        """
        if self.pattern is None:
            return False
        if words is None or self.anchors is None or not self.anchors.isdisjoint(words):
            return True
        return "#" in text and any(tag in text for tag in self.hashtags)

    def search(self, text: str, words: Optional[frozenset]) -> bool:
        """
        Whether the list matches C{text}, with no regex search where
        L{may_match} is sure it does not.
        """
        return self.may_match(text, words) and self.pattern.search(text) is not None


def _words(entries: Optional[Iterable[str]], default: tuple) -> tuple:
    if entries is None:
        return default
    if isinstance(entries, str):
        raise TypeError(f"expected a list of words, not {entries!r}")
    return tuple(entries)


class Classifier:
    """
    Label posts from word lists compiled once, so that labelling a post
    costs one pass to find its words and a regex search only for the lists
    that could match them.  C{None} for a list means its
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
        self.purchase_intent_words = _words(
            purchase_intent_words, DEFAULT_PURCHASE_INTENT_WORDS
        )
        self.question_openers = _words(
            question_openers, DEFAULT_QUESTION_OPENERS
        )
        self.complaint_targets = _words(
            complaint_targets, DEFAULT_COMPLAINT_TARGETS
        )
        self.exceptions = _words(exceptions, DEFAULT_EXCEPTIONS)

        self._crisis = _WordList(self.crisis_words)
        self._complaint = _WordList(self.complaint_words)
        self._purchase_intent = _WordList(self.purchase_intent_words)
        # An opener counts at the start of the post or of a sentence.
        self._opener = _WordList(self.question_openers, prefix=r"(?:^|(?<=[.!?] ))")
        self._target = _WordList(self.complaint_targets)
        self._exception = _WordList(self.exceptions)

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
        """
        return self._labels(text, compound, prefilter=True)

    def labels_by_every_regex(self, text: str, compound: float) -> tuple[str, ...]:
        """
        L{labels} without skipping a single regex search: what the skips
        must never change (the tests compare the two).
        """
        return self._labels(text, compound, prefilter=False)

    def _labels(self, text: str, compound: float, prefilter: bool) -> tuple[str, ...]:
        text = normalize(text)
        if not prefilter or "://" in text or "www." in text:
            text = _URL_RE.sub(" ", text)
        # The runs of the text before exceptions are blanked out: blanking
        # only removes runs, so these are a superset, which is safe.
        words = _runs(text) if prefilter else None
        if self._exception.may_match(text, words):
            text = self._exception.pattern.sub(" | ", text)
        found = {
            "complaint": self._is_complaint(text, compound, words),
            "purchase_intent": self._purchase_intent.search(text, words),
            "question": self._is_question(text, words),
            "crisis": self._crisis.search(text, words),
        }
        return tuple(label for label in LABELS if found[label])

    def _is_complaint(self, text: str, compound: float, words) -> bool:
        if self._complaint.search(text, words):
            return True
        return compound <= COMPLAINT_COMPOUND and (
            ((words is None or "@" in text) and _MENTION_RE.search(text) is not None)
            or self._target.search(text, words)
        )

    def _is_question(self, text: str, words) -> bool:
        if (words is None or "?" in text) and _QUESTION_MARK_RE.search(text):
            return True
        if words is None or text.startswith("@"):
            text = _LEADING_MENTIONS_RE.sub("", text)
        return self._opener.search(text, words)
